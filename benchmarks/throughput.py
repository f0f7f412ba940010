"""Orchestration throughput: trials per second with a no-op objective, sweeper vs bare Optuna.

Nothing is trained: sweeper runs ``trial_function: benchmarks._common:noop_trial`` and bare
Optuna an objective that suggests the same two parameters and returns a float, both with a
random sampler (method random), so the figures are the cost of the loop and its storage.
Each pair runs on the same storage set-up, in this order (bare first):

  * 1 worker, SQLite file: bare ``study.optimize`` on ``sqlite:///...`` (Optuna's default cached
    RDBStorage), then sweeper's ``loop.work`` in this process on ``sweeper.store.storage.make_storage``
    (the storage ``sweeper run`` uses: RDB with 10 s heartbeats and a failed-trial callback).
    A reference row runs bare ``study.optimize`` on ``make_storage`` too, to separate the cost of
    that storage configuration from the cost of sweeper's loop.
  * K workers (default 8), Optuna's gRPC storage proxy in front of one SQLite file, served from
    this process by ``make_server(storage, '127.0.0.1', port, ThreadPoolExecutor(max_workers=1))``
    as ``sweeper run --workers K`` does: bare = K spawned processes each running
    ``study.optimize`` through ``GrpcStorageProxy`` (their share of the trials); sweeper = K
    ``python -m sweeper worker STUDY --storage grpc://... --quiet --index i`` processes on a study
    made by ``sweeper.store.studies.create_or_load`` (they share its budget).
  * Reference, bare only: JournalStorage(JournalFileBackend), 1 process and K processes.

trials/s = completed trials / seconds from the first trial's start to the last trial's end
(stored timestamps), so process start-up is left out; "wall s" includes it. "SQL/trial" and
"commits/trial" count the SQL statements and transactions the SQLite engine ran (in this
process: the 1-worker runs, and the gRPC server for the K-worker runs) per completed trial.

Goal: sweeper keeps >= 75% of bare Optuna's throughput on the same storage (ratio >= 0.75).

Run from the repository root:
    .venv/bin/python benchmarks/throughput.py                        # 300 / 400 trials, 1 / 8 workers
    .venv/bin/python benchmarks/throughput.py --trials-1 100 --trials-k 160 --workers 4
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as common  # noqa: E402
from sweeper.config.spec import SweepSpec  # noqa: E402

PARAMS = {
    "optimizer__learning_rate": {"low": 1e-4, "high": 1e-1, "log": True},
    "model__dropout": {"low": 0.0, "high": 0.5},
}


@dataclass
class Row:
    setup: str
    workers: int
    trials: int
    span_s: float
    wall_s: float
    sql: int | None = None
    commits: int | None = None
    pair: str = ""  # rows with the same pair are compared (sweeper vs bare)

    @property
    def rate(self) -> float:
        return self.trials / self.span_s if self.span_s > 0 else float("nan")


def sweep_spec(name: str, trials: int) -> SweepSpec:
    return common.make_spec(name=name, method="random", trials=trials, params=PARAMS,
                            trial_function=common.NOOP_TRIAL)


def objective(trial: Any) -> float:
    lr = trial.suggest_float("optimizer__learning_rate", 1e-4, 1e-1, log=True)
    trial.suggest_float("model__dropout", 0.0, 0.5)
    return lr


def count_sql(storage: Any) -> Callable[[], tuple[int | None, int | None]]:
    """Count the SQL statements and commits an RDB-backed storage makes from now on."""
    from sqlalchemy import event

    engine = getattr(getattr(storage, "_backend", storage), "engine", None)
    if engine is None:
        return lambda: (None, None)
    seen = {"sql": 0, "commit": 0}

    def on_execute(*_: Any) -> None:
        seen["sql"] += 1

    def on_commit(*_: Any) -> None:
        seen["commit"] += 1

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)
    return lambda: (seen["sql"], seen["commit"])


def finished(study: Any) -> tuple[int, float]:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return len(trials), common.trial_span_s(trials)


# --------------------------------------------------------------------------- 1 worker
def bare_one(setup: str, storage: Any, n: int, pair: str = "") -> Row:
    import optuna

    study = optuna.create_study(study_name="bare", storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    sql = count_sql(study._storage)
    t0 = time.perf_counter()
    study.optimize(objective, n_trials=n)
    wall = time.perf_counter() - t0
    return Row(setup, 1, *finished(study), wall, *sql(), pair)


def sweeper_one(url: str, n: int) -> Row:
    from sweeper.worker import loop
    from sweeper.search.strategy import strategy_for
    from sweeper.store.storage import make_storage
    from sweeper.store.studies import create_or_load
    from sweeper.store.trials import worker_salt
    spec = sweep_spec("sweeper-1", n)
    study = create_or_load(spec, make_storage(url))
    study.sampler = strategy_for(spec).sampler(worker_salt(study, 0))
    sql = count_sql(study._storage)
    t0 = time.perf_counter()
    loop.work(study, spec, loop.for_spec(spec))
    wall = time.perf_counter() - t0
    return Row("sweeper, sqlite (make_storage)", 1, *finished(study), wall, *sql(), "sqlite-1")


# --------------------------------------------------------------------------- K workers
def _bare_grpc_worker(port: int, n: int, seed: int) -> None:
    import optuna

    common.quiet_optuna()
    proxy = optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=port)
    proxy.wait_server_ready(timeout=60)
    study = optuna.load_study(study_name="bare", storage=proxy, sampler=optuna.samplers.RandomSampler(seed=seed))
    study.optimize(objective, n_trials=n)


def _bare_journal_worker(path: str, n: int, seed: int) -> None:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    common.quiet_optuna()
    storage = optuna.storages.JournalStorage(JournalFileBackend(path))
    study = optuna.load_study(study_name="bare", storage=storage, sampler=optuna.samplers.RandomSampler(seed=seed))
    study.optimize(objective, n_trials=n)


def _spawn(target: Callable[..., None], first: Any, n: int, k: int) -> float:
    """K spawned processes sharing n trials; returns the wall time until all exited."""
    ctx = mp.get_context("spawn")  # fresh interpreters, as sweeper's workers are (no fork under gRPC)
    shares = [n // k + (1 if i < n % k else 0) for i in range(k)]
    t0 = time.perf_counter()
    procs = [ctx.Process(target=target, args=(first, shares[i], i)) for i in range(k)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode for p in procs):
        raise RuntimeError(f"a worker failed: exit codes {[p.exitcode for p in procs]}")
    return time.perf_counter() - t0


def _serve(storage: Any) -> tuple[Any, int]:
    from optuna.storages._grpc.server import make_server

    port = common.free_port()
    server = make_server(storage, "127.0.0.1", port, ThreadPoolExecutor(max_workers=1))
    server.start()
    return server, port


def bare_grpc(url: str, n: int, k: int) -> Row:
    import optuna

    storage = optuna.storages.get_storage(url)  # cached RDBStorage, as Optuna's docs advise for the proxy
    study = optuna.create_study(study_name="bare", storage=storage)
    sql = count_sql(storage)
    server, port = _serve(storage)
    try:
        wall = _spawn(_bare_grpc_worker, port, n, k)
    finally:
        server.stop(grace=1).wait()
    return Row("bare optuna, grpc proxy -> sqlite", k, *finished(study), wall, *sql(), "grpc-k")


def sweeper_grpc(url: str, n: int, k: int) -> Row:
    from sweeper.store.storage import make_storage
    from sweeper.store.studies import create_or_load

    spec = sweep_spec("sweeper-k", n)
    study = create_or_load(spec, make_storage(url))
    sql = count_sql(study._storage)
    server, port = _serve(study._storage)
    cmd = [sys.executable, "-m", "sweeper", "worker", spec.name, "--storage", f"grpc://127.0.0.1:{port}", "--quiet"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(common.ROOT), os.environ.get("PYTHONPATH")]))}
    env.setdefault("TF_NUM_INTEROP_THREADS", "1")
    try:
        t0 = time.perf_counter()
        procs = [subprocess.Popen([*cmd, "--index", str(i)], cwd=common.ROOT, env=env) for i in range(k)]
        codes = [p.wait() for p in procs]
        wall = time.perf_counter() - t0
    finally:
        server.stop(grace=1).wait()
    if any(codes):
        raise RuntimeError(f"a sweeper worker failed: exit codes {codes}")
    return Row("sweeper, grpc proxy -> sqlite", k, *finished(study), wall, *sql(), "grpc-k")


def bare_journal(path: str, n: int, k: int) -> Row:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(path))
    study = optuna.create_study(study_name="bare", storage=storage)
    if k == 1:
        t0 = time.perf_counter()
        _bare_journal_worker(path, n, 0)
        wall = time.perf_counter() - t0
    else:
        wall = _spawn(_bare_journal_worker, path, n, k)
    return Row("bare optuna, journal file (reference)", k, *finished(study), wall)


# --------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials-1", type=int, default=300, help="trials of the 1-worker runs (default 300)")
    ap.add_argument("--trials-k", type=int, default=400, help="trials of the K-worker runs (default 400)")
    ap.add_argument("--workers", type=int, default=8, help="K (default 8)")
    ap.add_argument("--skip-journal", action="store_true")
    args = ap.parse_args()
    common.quiet_optuna()
    load0 = os.getloadavg()[0]
    from sweeper.store.storage import make_storage

    n1, nk, k = args.trials_1, args.trials_k, args.workers
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="sweeper-throughput-") as d:
        make_storage(common.sqlite_url(d, "warm-up"))  # imports and schema code paths, untimed
        steps: list[tuple[str, Callable[[], Row]]] = [
            ("bare 1 sqlite", lambda: bare_one("bare optuna, sqlite", common.sqlite_url(d, "b1"), n1, "sqlite-1")),
            ("sweeper 1 sqlite", lambda: sweeper_one(common.sqlite_url(d, "s1"), n1)),
            ("bare 1 make_storage", lambda: bare_one("bare optuna, sqlite (make_storage, ref)",
                                                     make_storage(common.sqlite_url(d, "b1m")), n1)),
            (f"bare {k} grpc", lambda: bare_grpc(common.sqlite_url(d, "bk"), nk, k)),
            (f"sweeper {k} grpc", lambda: sweeper_grpc(common.sqlite_url(d, "sk"), nk, k)),
        ]
        if not args.skip_journal:
            steps += [
                ("bare 1 journal", lambda: bare_journal(str(Path(d) / "j1.log"), n1, 1)),
                (f"bare {k} journal", lambda: bare_journal(str(Path(d) / "jk.log"), nk, k)),
            ]
        for label, step in steps:
            print(f"running: {label} ...", flush=True)
            row = step()
            print(f"  {row.trials} trials in {row.span_s:.2f}s ({row.rate:.1f}/s), wall {row.wall_s:.2f}s", flush=True)
            rows.append(row)

    bare_rate = {r.pair: r.rate for r in rows if r.pair and r.setup.startswith("bare")}
    table = []
    for r in rows:
        ratio = "-"
        if r.pair and r.setup.startswith("sweeper") and r.pair in bare_rate:
            ratio = f"{r.rate / bare_rate[r.pair]:.2f}"
        sql = "-" if r.sql is None else f"{r.sql / max(r.trials, 1):.1f}"
        commits = "-" if r.commits is None else f"{r.commits / max(r.trials, 1):.1f}"
        table.append([r.setup, r.workers, r.trials, r.span_s, r.wall_s, r.rate, sql, commits, ratio])
    common.print_table(
        "throughput: no-op trials, random sampler, 2 params (order: top to bottom; goal sweeper/bare >= 0.75)",
        ["setup", "workers", "trials", "seconds", "wall s", "trials/s", "SQL/trial", "commits/trial", "sweeper/bare"],
        table,
    )
    print(common.load_note(load0))


if __name__ == "__main__":
    main()
