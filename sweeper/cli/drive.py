"""Watching a run's workers to the end, whichever engine started them: local ``sweeper worker``
processes (``run --workers K``) or Ray tasks (``run --engine ray``, sweeper/worker/ray_workers.py,
which answers the same calls). The store is served to them from this process when it has no server
of its own; the progress bar, a dead worker replaced, all stopped at the timeout, at
--max-failures or on Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator

from sweeper.cli.common import EXIT_INTERRUPTED, EXIT_MAX_FAILURES, EXIT_OK
from sweeper.config.spec import SweepSpec
from sweeper.store.placement import ENGINE_ENV, engine
from sweeper.store.progress import Progress, progress
from sweeper.store.trials import reap_dead_trials


def run_processes(study: Any, spec: SweepSpec, url: str, args: argparse.Namespace, deadline: float | None,
                  placements: list[Any]) -> tuple[Progress, str | None]:
    """K local worker processes, through the store this process serves them."""
    with _served(study, url, "127.0.0.1") as worker_url:
        cmd = [sys.executable, "-m", "sweeper", "worker", spec.name, "--storage", worker_url, "--quiet"]
        if args.max_failures is not None:
            cmd += ["--max-failures", str(args.max_failures)]
        return _drive(study, spec, args, deadline, _Processes(cmd, placements))


def run_ray(study: Any, spec: SweepSpec, url: str, args: argparse.Namespace, deadline: float | None,
            cluster: Any) -> tuple[Progress, str | None]:
    """--engine ray: N Ray tasks, through the store this host serves them where it has no server."""
    with _served(study, url, cluster.store_host()) as worker_url:
        return _drive(study, spec, args, deadline, cluster.start(spec.name, worker_url, args.max_failures))


@contextmanager
def _served(study: Any, url: str, host: str) -> Iterator[str]:
    """The URL workers reach the store by: a server's own, or Optuna's gRPC storage proxy served
    from this process on ``host``: one writer to the SQLite file, so no 'database is locked'
    (optuna#820)."""
    from sweeper.store import optuna_internals as oi
    from sweeper.store.storage import parse_url

    if parse_url(url).has_server:
        yield url  # a real server (or a proxy) already serialises writers
        return
    port = _free_port(host)
    server = oi.grpc_server(oi.storage_of(study), host, port)
    server.start()
    try:
        yield f"grpc://{host}:{port}"
    finally:
        server.stop(grace=1).wait()


class _Processes:
    """--workers K: ``sweeper worker`` processes on this host, one per placement."""

    def __init__(self, cmd: list[str], placements: list[Any]) -> None:
        self.cmd, self.placements = cmd, placements
        self.procs = [self._start(i, i) for i in range(len(placements))]

    def _start(self, slot: int, index: int) -> subprocess.Popen[bytes]:
        env = {**os.environ, **self.placements[slot].env(), ENGINE_ENV: engine()}  # placement: local, unless told
        return subprocess.Popen(self.cmd + ["--index", str(index)], env=env)

    def __len__(self) -> int:
        return len(self.procs)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def codes(self) -> list[int | None]:
        return [p.poll() for p in self.procs]

    def why(self, slot: int) -> str:
        return f"exited with {self.procs[slot].returncode}"

    def restart(self, slot: int, index: int) -> None:
        self.procs[slot] = self._start(slot, index)

    def interrupt(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)  # each re-queues its running trial and exits

    def wait(self) -> None:
        for p in self.procs:
            p.wait()

    def reap(self, study: Any) -> None:
        reap_dead_trials(study)


def _drive(study: Any, spec: SweepSpec, args: argparse.Namespace, deadline: float | None,
           pool: Any) -> tuple[Progress, str | None]:
    """Watch the workers (``_Processes`` or ray_workers.RayWorkers) to the end: the progress bar,
    a worker that died replaced (its trial re-queued first), all stopped at the timeout, at
    --max-failures or on Ctrl-C. Returns the progress and, when --max-failures stopped a worker,
    why (the others are stopped)."""
    restarts, stopping = 0, False
    bar = ProgressBar(spec, progress(study, spec), args.quiet)
    try:
        while True:
            pool.sleep(0.5)
            codes = pool.codes()
            if None not in codes and not any(_died(c) for c in codes):
                break
            prog = progress(study, spec)
            bar.update(prog)
            too_many = EXIT_MAX_FAILURES in codes
            if too_many or (deadline is not None and time.monotonic() > deadline):
                stopping = True
                pool.interrupt()
                deadline = None
            for slot, code in enumerate(codes):
                if _died(code) and not stopping and not prog.done and restarts < MAX_RESTARTS_PER_WORKER * len(pool):
                    # A worker killed mid-trial (OOM killer, os._exit in a fit): its trial is failed and
                    # queued again (or failed for good after max_worker_deaths), and a new worker goes on.
                    pool.reap(study)
                    restarts += 1
                    print(f"sweeper: worker {slot} {pool.why(slot)}; starting another", file=sys.stderr)
                    pool.restart(slot, slot + len(pool) * restarts)
            if None not in pool.codes():
                break  # every worker ended (done, stopped, or died past the restart budget)
    except KeyboardInterrupt:
        pool.interrupt()
        pool.wait()
        pool.reap(study)  # a worker that had to be killed: its trials queued again too
        raise
    finally:
        bar.close()
    pool.reap(study)
    codes = pool.codes()
    crashed = [c for c in codes if c not in (EXIT_OK, EXIT_INTERRUPTED, EXIT_MAX_FAILURES)]
    if crashed:
        print(f"sweeper: {len(crashed)} worker(s) exited with errors {crashed}", file=sys.stderr)
    prog = progress(study, spec)
    stopped = None
    if EXIT_MAX_FAILURES in codes:
        stopped = f"stopped: {prog.failed} trials failed (--max-failures {args.max_failures}); " \
                  f"see 'sweeper show {spec.name}' for the reasons"
    return prog, stopped


MAX_RESTARTS_PER_WORKER = 10  # a worker that dies over and over means something else is wrong


def _died(code: int | None) -> bool:
    """Ended other than by finishing, Ctrl-C or --max-failures (killed, crashed)."""
    return code is not None and code not in (EXIT_OK, EXIT_INTERRUPTED, EXIT_MAX_FAILURES)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- UI
class ProgressBar:
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
