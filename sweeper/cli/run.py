"""``run``, ``resume`` and ``worker``: drive the worker loop, in-process or as K processes."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from sweeper.cli import drive
from sweeper.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_MAX_FAILURES,
    EXIT_OK,
    EXIT_UNFINISHED,
    add_storage,
)
from sweeper.config.spec import DEFAULT_STORAGE, SweepSpec, load_spec
from sweeper.errors import MaxFailuresReached, SweeperError
from sweeper.store.placement import set_default_engine, worker_index
from sweeper.store.progress import Progress, progress
from sweeper.store.storage import make_storage
from sweeper.store.studies import load
from sweeper.worker import journeys, loop, supervise


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run a sweep file until its budget is met")
    p.add_argument("file", help="sweep definition (YAML)")
    add_storage(p, default=None)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a sweep-file setting, e.g. --set training.epochs=1 --set data.limit=500")
    _add_run_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("resume", help="continue an interrupted study to its budget")
    p.add_argument("study")
    add_storage(p)
    p.add_argument("--retry-failed", action="store_true", help="also run failed trials' params again")
    p.add_argument("--trials", type=int, metavar="N", help="raise the study's budget to N trials")
    _add_run_options(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("worker", help="join a running study (from another shell or machine)")
    p.add_argument("study")
    add_storage(p)
    p.add_argument("--index", type=int, default=None,
                   help="this worker's index (default: $SLURM_ARRAY_TASK_ID or $JOB_COMPLETION_INDEX, else 0)")
    p.add_argument("--gpu", type=int, default=None, help="pin this worker to one GPU (sets CUDA_VISIBLE_DEVICES)")
    p.add_argument("--max-failures", type=int, default=None)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--suspects", action="store_true", help=argparse.SUPPRESS)  # started by a supervisor
    p.set_defaults(func=cmd_worker)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes on this host (default: 1 per GPU slot, else 1); --engine ray: Ray workers")
    p.add_argument("--gpus", default=None, help="GPUs to use: all (default), none, or a list like 0,1")
    p.add_argument("--trials-per-gpu", type=int, default=None, metavar="K",
                   help="pack K trials on each GPU, each capped at 90%%/K of its memory (default 1)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: worker processes on this host (default); ray: --workers N Ray tasks on a Ray cluster")
    p.add_argument("--address", default=None, help="--engine ray: the cluster, auto, HOST:PORT or "
                   "ray://HOST:10001 (default: start a local Ray for this run)")
    p.add_argument("--gpus-per-worker", type=float, default=None, metavar="G",
                   help="--engine ray: GPUs per worker (default 0); a share like 0.5 puts two workers on one GPU")
    p.add_argument("--cpus-per-worker", type=float, default=None, metavar="C",
                   help="--engine ray: CPUs per worker (default 1)")
    p.add_argument("--max-failures", type=int, default=None, help="stop once this many trials failed")
    p.add_argument("--reports", default="reports", help="folder for the report (default reports/)")
    p.add_argument("--no-report", action="store_true", help="do not write the HTML report at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# --------------------------------------------------------------------------- commands
def cmd_run(args: argparse.Namespace) -> int:
    spec = load_spec(args.file, args.set)
    url = args.storage or spec.storage
    cluster = _ray_cluster(args)  # before the study exists: a cluster that cannot serve creates nothing
    with _closing(cluster):
        return _execute(journeys.open_run(spec, url, _say), spec, url, args, cluster)


def cmd_resume(args: argparse.Namespace) -> int:
    cluster = _ray_cluster(args)
    with _closing(cluster):
        return _resume(args, cluster)


def _resume(args: argparse.Namespace, cluster: Any) -> int:
    study, spec, mended = journeys.open_resume(args.study, args.storage, args.trials, args.retry_failed, _say)
    if not args.quiet:
        print(mended.text(spec.name), file=sys.stderr)
    stopped = progress(study, spec).stopped
    if stopped:  # said whatever --quiet: resume runs nothing, and the user should know why
        budget = "" if spec.method == "grid" else "raise its budget with --trials N, or "
        print(f"sweeper: {spec.name} {stopped} (its stop rule); nothing to run: to go on, {budget}change "
              "or remove 'stop' in the sweep file and run it", file=sys.stderr)
    return _execute(study, spec, args.storage, args, cluster)


def cmd_worker(args: argparse.Namespace) -> int:
    if args.index is not None and args.index < 0:
        raise SweeperError(f"--index: {args.index} must be >= 0")
    set_default_engine("worker")  # unless a launcher (run --workers, slurm, k8s) said which in $SWEEPER_ENGINE
    index = worker_index(args.index)
    if args.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(args.gpu)  # before TensorFlow starts
    if args.suspects:
        supervise.die_with_supervisor()
    study, spec = load(args.study, make_storage(args.storage, must_exist=True))
    _install_sigint()
    if args.suspects:
        loop.run_suspects_here(study, spec, loop.for_spec(spec))
        return EXIT_OK
    say = None if args.quiet else _line_reporter(spec)
    prog = journeys.work_here(study, spec, args.storage, index, args.max_failures, on_trial=say)
    if not args.quiet:
        print(f"worker done: {prog.finished}/{prog.budget or '?'} finished"
              + (f"; {prog.stopped}" if prog.stopped else ""), file=sys.stderr)
    return EXIT_OK


def _say(line: str) -> None:
    """A one-time fact of the study (its warm start), said whatever --quiet."""
    print(line, file=sys.stderr)


# --------------------------------------------------------------------------- execution
def _execute(study: Any, spec: SweepSpec, url: str, args: argparse.Namespace, cluster: Any = None) -> int:
    from sweeper.train.devices import detect_gpus, plan_workers, select_gpus

    deadline = time.monotonic() + spec.timeout if spec.timeout else None
    if cluster is not None:
        _say_unfused(spec)
        _install_sigint()
        try:
            prog, stopped = drive.run_ray(study, spec, url, args, deadline, cluster)
        except KeyboardInterrupt:
            return _interrupted(spec, url)
        return _finish(study, spec, prog, args, stopped)
    if args.workers is not None and args.workers < 1:
        raise SweeperError(f"--workers: {args.workers} must be >= 1")
    gpus = select_gpus(args.gpus, detect_gpus()) if not spec.trial_function else []
    per_gpu = 1 if args.trials_per_gpu is None else args.trials_per_gpu
    placements = plan_workers(gpus, per_gpu, args.workers, os.cpu_count() or 1)
    _say_unfused(spec)
    if len(placements) == 1 and args.workers is None:  # in this process; --workers K: supervised processes
        os.environ.update(placements[0].env())
        bar = drive.ProgressBar(spec, progress(study, spec), args.quiet)
        _install_sigint()
        stopped = None
        try:
            prog = journeys.work_here(study, spec, url, 0, args.max_failures, deadline, bar.update)
        except KeyboardInterrupt:
            bar.close()
            return _interrupted(spec, url)
        except MaxFailuresReached as exc:
            stopped, prog = str(exc), progress(study, spec)
        finally:
            bar.close()
    else:
        prog, stopped = drive.run_processes(study, spec, url, args, deadline, placements)
    return _finish(study, spec, prog, args, stopped)


def _interrupted(spec: SweepSpec, url: str) -> int:
    print(f"sweeper: interrupted; the running trial(s) were queued again. Continue with: "
          f"sweeper resume {spec.name} --storage {url}", file=sys.stderr)
    return EXIT_INTERRUPTED


RAY_ONLY = ("address", "gpus_per_worker", "cpus_per_worker")


def _ray_cluster(args: argparse.Namespace) -> Any:
    """``--engine ray``: its options checked, Ray connected (or started) and the cluster sized up
    (sweeper/worker/ray_workers.py); None for the local engine, which refuses Ray's options."""
    if args.engine != "ray":
        for name in RAY_ONLY:
            if getattr(args, name) is not None:
                raise SweeperError(f"--{name.replace('_', '-')}: only with --engine ray")
        return None
    if args.gpus is not None:
        raise SweeperError("--gpus: not with --engine ray, where Ray assigns each worker its GPUs; "
                           "ask for them with --gpus-per-worker G")
    if args.trials_per_gpu is not None:
        raise SweeperError("--trials-per-gpu: not with --engine ray; a share of a GPU per worker, "
                           "--gpus-per-worker 0.5, puts two workers on one GPU")
    if args.workers is None:
        raise SweeperError("--engine ray needs --workers N: how many workers to start on the cluster")
    from sweeper.worker import ray_workers

    request = ray_workers.RayRequest(args.address, args.workers, args.gpus_per_worker or 0.0,
                                     1.0 if args.cpus_per_worker is None else args.cpus_per_worker)
    cluster, note = ray_workers.connect(request)
    if note:
        print(f"sweeper: ray: {note}", file=sys.stderr)
    return cluster


@contextmanager
def _closing(cluster: Any) -> Iterator[None]:
    """A Ray this run connected to is let go (a local one stopped) however the run ends."""
    try:
        yield
    finally:
        if cluster is not None:
            cluster.close()


def _say_unfused(spec: SweepSpec) -> None:
    """A sweep file that asks for fused packs it cannot have hears why, once, and runs unfused."""
    if spec.compute.fuse == "off":
        return
    from sweeper.train.fused.trials import fuse_reason

    reason = fuse_reason(spec)
    if reason is not None:
        print(f"sweeper: compute.fuse: trials train one at a time ({reason})", file=sys.stderr)


def _finish(study: Any, spec: SweepSpec, prog: Progress, args: argparse.Namespace, stopped: str | None) -> int:
    """Summary line, the report, and the exit code (README: "Exit codes")."""
    best = "n/a" if prog.best is None else f"{prog.best:.4f}"
    print(f"{spec.name}: {prog.text()}; best {spec.metric} {best}")  # the words of show, ls, report, serve
    if not args.no_report and prog.complete + prog.warm:
        from sweeper.report import write_report

        path = write_report(study, spec, args.reports)
        print(f"report: {path}")
    if stopped:
        print(f"sweeper: {stopped}", file=sys.stderr)
        return EXIT_MAX_FAILURES
    if not prog.complete + prog.warm:
        print(f"sweeper: no trial completed; see the reasons with: sweeper show {spec.name}", file=sys.stderr)
        return EXIT_UNFINISHED
    if not prog.done and spec.timeout is None:
        print(f"sweeper: the study is not finished; continue with: sweeper resume {spec.name}", file=sys.stderr)
        return EXIT_UNFINISHED
    return EXIT_OK


# --------------------------------------------------------------------------- UI
def _install_sigint() -> None:
    """First Ctrl-C: stop after re-queueing the running trial. Second: exit at once."""
    if threading.current_thread() is not threading.main_thread():
        return
    pressed = {"n": 0}

    def handler(signum: int, frame: Any) -> None:
        pressed["n"] += 1
        if pressed["n"] > 1:
            os._exit(130)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)


def _line_reporter(spec: SweepSpec) -> Any:
    said: dict[str, int] = {}

    def say(prog: Progress) -> None:
        if said.get("finished") == prog.finished:
            return  # a trial started: one line per finished trial is enough
        said["finished"] = prog.finished
        best = "-" if prog.best is None else f"{prog.best:.4f}"
        print(f"[{spec.name}] {prog.text()}; best {best}", file=sys.stderr)

    return say


__all__ = ["register", "DEFAULT_STORAGE"]
