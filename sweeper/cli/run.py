"""``run``, ``resume`` and ``worker``: drive the worker loop, in-process or as K processes."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from sweeper.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_MAX_FAILURES,
    EXIT_OK,
    EXIT_UNFINISHED,
    add_storage,
)
from sweeper.config.spec import DEFAULT_STORAGE, SweepSpec, load_spec
from sweeper.errors import MaxFailuresReached, SweeperError
from sweeper.store.placement import ENGINE_ENV, engine, set_default_engine, worker_index
from sweeper.store.progress import Progress, progress
from sweeper.store.storage import make_storage
from sweeper.store.studies import load
from sweeper.store.trials import reap_dead_trials
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
                   help="worker processes on this host (default: 1 per GPU slot, else 1)")
    p.add_argument("--gpus", default=None, help="GPUs to use: all (default), none, or a list like 0,1")
    p.add_argument("--trials-per-gpu", type=int, default=1, metavar="K",
                   help="pack K trials on each GPU, each capped at 90%%/K of its memory (default 1)")
    p.add_argument("--max-failures", type=int, default=None, help="stop once this many trials failed")
    p.add_argument("--reports", default="reports", help="folder for the report (default reports/)")
    p.add_argument("--no-report", action="store_true", help="do not write the HTML report at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# --------------------------------------------------------------------------- commands
def cmd_run(args: argparse.Namespace) -> int:
    spec = load_spec(args.file, args.set)
    url = args.storage or spec.storage
    return _execute(journeys.open_run(spec, url, _say), spec, url, args)


def cmd_resume(args: argparse.Namespace) -> int:
    study, spec, mended = journeys.open_resume(args.study, args.storage, args.trials, args.retry_failed, _say)
    if not args.quiet:
        print(mended.text(spec.name), file=sys.stderr)
    stopped = progress(study, spec).stopped
    if stopped:  # said whatever --quiet: resume runs nothing, and the user should know why
        budget = "" if spec.method == "grid" else "raise its budget with --trials N, or "
        print(f"sweeper: {spec.name} {stopped} (its stop rule); nothing to run: to go on, {budget}change "
              "or remove 'stop' in the sweep file and run it", file=sys.stderr)
    return _execute(study, spec, args.storage, args)


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
def _execute(study: Any, spec: SweepSpec, url: str, args: argparse.Namespace) -> int:
    from sweeper.train.devices import detect_gpus, plan_workers, select_gpus

    deadline = time.monotonic() + spec.timeout if spec.timeout else None
    if args.workers is not None and args.workers < 1:
        raise SweeperError(f"--workers: {args.workers} must be >= 1")
    gpus = select_gpus(args.gpus, detect_gpus()) if not spec.trial_function else []
    placements = plan_workers(gpus, args.trials_per_gpu, args.workers, os.cpu_count() or 1)
    _say_unfused(spec)
    if len(placements) == 1 and args.workers is None:  # in this process; --workers K: supervised processes
        os.environ.update(placements[0].env())
        bar = _ProgressBar(spec, progress(study, spec), args.quiet)
        _install_sigint()
        stopped = None
        try:
            prog = journeys.work_here(study, spec, url, 0, args.max_failures, deadline, bar.update)
        except KeyboardInterrupt:
            bar.close()
            print(f"sweeper: interrupted; the running trial(s) were queued again. Continue with: "
                  f"sweeper resume {spec.name} --storage {url}", file=sys.stderr)
            return EXIT_INTERRUPTED
        except MaxFailuresReached as exc:
            stopped, prog = str(exc), progress(study, spec)
        finally:
            bar.close()
    else:
        prog, stopped = _run_workers(study, spec, url, args, deadline, placements)
    return _finish(study, spec, prog, args, stopped)


def _say_unfused(spec: SweepSpec) -> None:
    """A sweep file that asks for fused packs it cannot have hears why, once, and runs unfused."""
    if spec.compute.fuse == "off":
        return
    from sweeper.train.pack_trial import fuse_reason

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


def _run_workers(study: Any, spec: SweepSpec, url: str, args: argparse.Namespace, deadline: float | None,
                 placements: list[Any]) -> tuple[Progress, str | None]:
    """K local worker processes share the store through Optuna's gRPC storage proxy, served from
    this process: one writer to the SQLite file, so no 'database is locked' (optuna#820).
    Returns the progress and, when --max-failures stopped a worker, why (the others are stopped)."""
    from sweeper.store import optuna_internals as oi
    from sweeper.store.storage import parse_url

    storage = oi.storage_of(study)
    if parse_url(url).has_server:
        worker_url = url  # a real server (or a proxy) already serialises writers
        server = None
    else:
        port = _free_port()
        server = oi.grpc_server(storage, "127.0.0.1", port)
        server.start()
        worker_url = f"grpc://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "sweeper", "worker", spec.name, "--storage", worker_url, "--quiet"]
    if args.max_failures is not None:
        cmd += ["--max-failures", str(args.max_failures)]
    def start(slot: int, index: int) -> subprocess.Popen[bytes]:
        env = {**os.environ, **placements[slot].env(), ENGINE_ENV: engine()}  # placement: local, unless told
        return subprocess.Popen(cmd + ["--index", str(index)], env=env)

    procs = [start(i, i) for i in range(len(placements))]
    restarts, stopping = 0, False
    bar = _ProgressBar(spec, progress(study, spec), args.quiet)
    try:
        while True:
            time.sleep(0.5)
            if all(p.poll() is not None for p in procs) and not any(_died(p) for p in procs):
                break
            prog = progress(study, spec)
            bar.update(prog)
            too_many = any(p.returncode == EXIT_MAX_FAILURES for p in procs)
            if too_many or (deadline is not None and time.monotonic() > deadline):
                stopping = True
                for p in procs:
                    if p.poll() is None:
                        p.send_signal(signal.SIGINT)  # each re-queues its running trial and exits
                deadline = None
            for slot, p in enumerate(procs):
                if _died(p) and not stopping and not prog.done and restarts < MAX_RESTARTS_PER_WORKER * len(procs):
                    # A worker killed mid-trial (OOM killer, os._exit in a fit): its trial is failed and
                    # queued again (or failed for good after max_worker_deaths), and a new worker goes on.
                    reap_dead_trials(study)
                    restarts += 1
                    print(f"sweeper: worker {slot} exited with {p.returncode}; starting another", file=sys.stderr)
                    procs[slot] = start(slot, slot + len(procs) * restarts)
            if all(p.poll() is not None for p in procs):
                break  # every worker ended (done, stopped, or died past the restart budget)
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise
    finally:
        bar.close()
        if server is not None:
            server.stop(grace=1).wait()
    reap_dead_trials(study)
    crashed = [p.returncode for p in procs if p.returncode not in (EXIT_OK, EXIT_INTERRUPTED, EXIT_MAX_FAILURES)]
    if crashed:
        print(f"sweeper: {len(crashed)} worker(s) exited with errors {crashed}", file=sys.stderr)
    prog = progress(study, spec)
    stopped = None
    if any(p.returncode == EXIT_MAX_FAILURES for p in procs):
        stopped = f"stopped: {prog.failed} trials failed (--max-failures {args.max_failures}); " \
                  f"see 'sweeper show {spec.name}' for the reasons"
    return prog, stopped


MAX_RESTARTS_PER_WORKER = 10  # a worker that dies over and over means something else is wrong


def _died(p: subprocess.Popen[bytes]) -> bool:
    """Ended other than by finishing, Ctrl-C or --max-failures (killed, crashed)."""
    return p.poll() is not None and p.returncode not in (EXIT_OK, EXIT_INTERRUPTED, EXIT_MAX_FAILURES)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


class _ProgressBar:
    """tqdm bar: finished trials / budget, ETA, best so far, failures."""

    def __init__(self, spec: SweepSpec, prog: Progress, quiet: bool) -> None:
        self.spec = spec
        self.bar = None
        if not quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=prog.budget, initial=prog.finished, unit="trial", desc=spec.name,
                            dynamic_ncols=True, file=sys.stderr)
            self._postfix(prog)

    def _postfix(self, prog: Progress) -> None:
        if self.bar is not None:
            best = "-" if prog.best is None else f"{prog.best:.4f}"
            self.bar.set_postfix_str(f"best {self.spec.metric} {best}; {prog.counts()}")

    def update(self, prog: Progress) -> None:
        if self.bar is not None:
            self.bar.n = prog.finished
            self._postfix(prog)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


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
