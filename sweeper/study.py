"""Optuna studies for sweeps: storages, samplers, creation, and the trial bookkeeping every
worker shares (who owns a running trial, which trials are finished, re-queueing dead ones).

The study storage is the one source of truth: resume, workers, show, export and reports read it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from sweeper import names, space
from sweeper.errors import StudyError
from sweeper.spec import SweepSpec, spec_from_dict

SPEC_ATTR = "sweeper:spec"
OWNER_ATTR = "sweeper:owner"
RETRY_OF_ATTR = "retry_of"  # on a queued re-run: the number of the failed trial it replaces
RETRY_REASON_ATTR = "retry_reason"
ERROR_ATTR = "error"
DUPLICATE_OF_ATTR = "duplicate_of"  # a sampler's repeat of a completed point: its result, not a re-run
METRICS_ATTR = "metrics"
HEARTBEAT_S = 10
HOST = socket.gethostname()


def make_storage(url: str, heartbeat: int | None = HEARTBEAT_S, must_exist: bool = False) -> BaseStorage:
    """A storage for a URL: sqlite:/// or postgresql:// (Optuna RDB, with heartbeats), grpc://host:port
    (Optuna's GrpcStorageProxy, how local workers share one SQLite file), journal:///path."""
    if url.startswith("grpc://"):
        host, _, port = url[len("grpc://"):].rstrip("/").rpartition(":")
        proxy = optuna.storages.GrpcStorageProxy(host=host or "127.0.0.1", port=int(port))
        try:
            proxy.wait_server_ready(timeout=30)
        except Exception:
            raise StudyError(f"storage {url}: no storage server answers there") from None
        return proxy
    if url.startswith("journal://"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url[len("journal://"):]))
    if url.startswith("sqlite:///") and must_exist:
        path = url[len("sqlite:///"):]
        if path and path != ":memory:" and not Path(path).exists():
            raise StudyError(f"storage {url}: no such file (run a sweep first, or pass --storage)")
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 60}}
    try:
        rdb = optuna.storages.RDBStorage(
            _with_driver(url),
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat,
            grace_period=3 * heartbeat if heartbeat else None,
            heartbeat_stale_trial_callback=requeue,
        )
    except ImportError as exc:  # Optuna re-raises the driver's ModuleNotFoundError as ImportError
        missing = getattr(exc, "name", None) or getattr(exc.__cause__, "name", None) or "a database driver"
        raise StudyError(f"storage {url}: missing driver ({missing}); pip install psycopg2-binary") from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StudyError(f"storage {url}: cannot open ({first})") from None
    db = rdb.engine.url.database
    if rdb.engine.name == "sqlite" and db not in (None, "", ":memory:") and os.access(db, os.W_OK):
        _serialize_sqlite_transactions(rdb.engine)  # (a read-only file has no updates to race)
    return optuna.storages.get_storage(rdb)


def _with_driver(url: str) -> str:
    """``postgresql://`` names no driver, and SQLAlchemy >= 2.1 then wants psycopg (3), which sweeper
    does not install: use psycopg2 (a dependency) when psycopg is absent."""
    import importlib.util

    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres") and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return f"postgresql+psycopg2://{rest}"
    return url


def _serialize_sqlite_transactions(engine: Any) -> None:
    """Every transaction on a SQLite store starts with BEGIN IMMEDIATE (SQLAlchemy's pysqlite
    recipe). pysqlite otherwise begins a transaction only at the first write, so Optuna's
    read-check-write state updates (no FOR UPDATE in SQLite) race between connections: two
    clients both moved one WAITING trial to RUNNING, two reapers both failed and re-queued one
    dead trial. With the write lock taken first, the second one sees the first one's update."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # let the BEGIN below be the only one

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections pooled while Optuna created the tables predate the hooks


def make_sampler(spec: SweepSpec, salt: int = 0) -> optuna.samplers.BaseSampler:
    """The Optuna sampler for the sweep's method. ``salt`` varies the seed on restarts and across
    workers, so a seeded sampler never replays the params it proposed before (optuna#3255)."""
    seed = (spec.seed + 1_000_003 * salt) % (2**32)
    if spec.method == "grid":
        # Grid: every point is queued in the study once (ensure_grid_queued) and claimed
        # atomically, so the sampler is never consulted. Optuna's GridSampler picks points itself
        # and repeats them under parallel workers (optuna#2039, #4627), so it is not used.
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.method == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, **{"warn_independent_sampling": False, **spec.sampler})
    cls = getattr(optuna.samplers, names.SAMPLERS[spec.method])
    return cls(seed=seed, **spec.sampler)


def make_pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    """No pruning unless the sweep file asks for it: a grid must score every point in full."""
    from sweeper.training import optuna_pruner

    return optuna_pruner(spec.pruner)


@contextlib.contextmanager
def study_lock(storage: BaseStorage, name: str) -> Iterator[None]:
    """Serialise study creation and grid queueing between processes (two `run`/`resume` at
    once would otherwise queue points twice): a PostgreSQL advisory lock, or a file lock next
    to a SQLite file. Other storages are written by one process (the gRPC proxy's owner)."""
    backend = getattr(storage, "_backend", storage)
    engine = getattr(backend, "engine", None)
    if engine is None:
        yield
        return
    if engine.name == "postgresql":
        import zlib

        from sqlalchemy import text

        key = zlib.crc32(f"sweeper:{name}".encode())
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    database = engine.url.database
    if engine.name == "sqlite" and database and database != ":memory:":
        import fcntl

        with open(f"{database}.sweeper-lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return
    yield


def create_or_load(spec: SweepSpec, storage: BaseStorage) -> optuna.Study:
    """Create the study for a sweep (grid points queued once), or load it when the same sweep
    already exists. A different sweep under the same name is refused, nothing changed."""
    with study_lock(storage, spec.name):
        return _create_or_load(spec, storage)


def _create_or_load(spec: SweepSpec, storage: BaseStorage) -> optuna.Study:
    direction = spec.direction
    try:
        study = optuna.load_study(study_name=spec.name, storage=storage, sampler=make_sampler(spec),
                                  pruner=make_pruner(spec))
    except KeyError:
        study = optuna.create_study(
            study_name=spec.name, storage=storage, direction=direction, sampler=make_sampler(spec),
            pruner=make_pruner(spec),
        )
        study.set_user_attr(SPEC_ATTR, spec.raw)
    else:
        stored = study.user_attrs.get(SPEC_ATTR)
        if stored is None:
            raise StudyError(f"study {spec.name!r} exists but was not made by sweeper")
        if json.dumps(stored, sort_keys=True, default=str) != json.dumps(spec.raw, sort_keys=True, default=str):
            raise StudyError(
                f"study {spec.name!r} already exists with a different definition; "
                "change 'name' in the sweep file, or 'sweeper resume' it"
            )
    ensure_grid_queued(study, spec)
    return study


def load(name: str, storage: BaseStorage, salt: int = 0) -> tuple[optuna.Study, SweepSpec]:
    """Load a sweeper study and the sweep definition stored with it."""
    try:
        storage.get_study_id_from_name(name)  # one query, not a scan of every study's trials
    except KeyError:
        try:
            names = sorted(s.study_name for s in storage.get_all_studies())
        except Exception:
            names = []
        raise StudyError(f"no study named {name!r} in this store (studies: {', '.join(names) or 'none'})") from None
    except Exception as exc:
        raise StudyError(f"cannot read the store ({str(exc).splitlines()[0]})") from None
    study = optuna.load_study(study_name=name, storage=storage, pruner=optuna.pruners.NopPruner())
    raw = study.user_attrs.get(SPEC_ATTR)
    if raw is None:
        raise StudyError(f"study {name!r} was not made by sweeper (no sweep definition stored)")
    spec = spec_from_dict(raw, source=f"study {name}")
    study.sampler = make_sampler(spec, salt)
    study.pruner = make_pruner(spec)
    return study, spec


# --------------------------------------------------------------------------- bookkeeping
def trial_point(t: FrozenTrial) -> dict[str, Any] | None:
    """The searched params of a trial, also for a WAITING one (its queued fixed params)."""
    if t.params:
        return dict(t.params)
    fixed = t.system_attrs.get("fixed_params")
    return dict(fixed) if fixed else None


def requeued_numbers(trials: list[FrozenTrial]) -> set[int]:
    """Failed trials that were queued again (dead worker, Ctrl-C, --retry-failed). Derived from
    the re-runs themselves: a finished trial's own attributes can no longer be written."""
    return {int(t.user_attrs[RETRY_OF_ATTR]) for t in trials if RETRY_OF_ATTR in t.user_attrs}


def is_finished(t: FrozenTrial, requeued: set[int]) -> bool:
    """Counts toward the budget: completed, pruned, or failed for its own reason (not re-queued)."""
    if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return t.state == TrialState.FAIL and t.number not in requeued


@dataclass
class Progress:
    finished: int
    complete: int
    pruned: int
    failed: int
    running: int
    waiting: int
    budget: int | None
    best: float | None

    @property
    def done(self) -> bool:
        return self.budget is not None and self.finished >= self.budget


def progress(study: optuna.Study, spec: SweepSpec) -> Progress:
    trials = study.get_trials(deepcopy=False)
    requeued = requeued_numbers(trials)
    by = {s: 0 for s in TrialState}
    finished = 0
    points: set[str] = set()
    for t in trials:
        by[t.state] += 1
        if is_finished(t, requeued):
            if spec.method == "grid":
                points.add(space.params_key(trial_point(t) or {}))
            finished += 1
    if spec.method == "grid":
        finished = len(points)  # each grid point counts once, however it ended
    values = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    best = (max(values) if spec.direction == "maximize" else min(values)) if values else None
    failed = sum(1 for t in trials if t.state == TrialState.FAIL and t.number not in requeued)
    return Progress(
        finished, by[TrialState.COMPLETE], by[TrialState.PRUNED], failed,
        by[TrialState.RUNNING], by[TrialState.WAITING], spec.budget, best,
    )


def ensure_grid_queued(study: optuna.Study, spec: SweepSpec) -> int:
    """Queue every grid point that no trial covers yet; returns how many were queued.
    Idempotent, so a crash while queueing is mended by the next run or resume."""
    if spec.method != "grid":
        return 0
    covered = set()
    trials = study.get_trials(deepcopy=False)
    requeued = requeued_numbers(trials)
    for t in trials:
        if t.state == TrialState.FAIL and t.number in requeued:
            continue
        point = trial_point(t)
        if point:
            covered.add(space.params_key(point))
    queued = 0
    for point in space.grid_points(spec)[: spec.budget]:
        if space.params_key(point) not in covered:
            study.enqueue_trial(point)
            queued += 1
    return queued


def requeue(study: optuna.Study, trial: FrozenTrial, reason: str | None = None) -> None:
    """Queue a failed trial's params again (dead worker, Ctrl-C, --retry-failed).
    Also Optuna's ``failed_trial_callback`` for heartbeat-stale trials of RDB storages."""
    reason = reason or trial.user_attrs.get(ERROR_ATTR) or "worker stopped sending heartbeats"
    point = trial_point(trial)
    if point and set(point) >= set(_searched_names(study)):
        study.enqueue_trial(point, user_attrs={RETRY_OF_ATTR: trial.number, RETRY_REASON_ATTR: reason})


def _searched_names(study: optuna.Study) -> list[str]:
    raw = study.user_attrs.get(SPEC_ATTR) or {}
    from sweeper.spec import canonical_key

    return [canonical_key(k) for k in (raw.get("params") or {})]


_owner: dict[str, Any] = {}


def owner_record() -> dict[str, Any]:
    """This process, as stored on the trials it runs (kept per pid: a forked child is not its parent)."""
    import psutil

    if _owner.get("pid") != os.getpid():
        me = psutil.Process()
        _owner.update(host=HOST, pid=me.pid, started=me.create_time())
    return dict(_owner)


def _owner_alive(owner: dict[str, Any]) -> bool:
    import psutil

    try:
        proc = psutil.Process(int(owner["pid"]))
        # A recycled pid belongs to a process started later than the owner.
        return abs(proc.create_time() - float(owner["started"])) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, ValueError):
        return False


def reap_dead_trials(study: optuna.Study, orphan_after_s: float = 120.0) -> int:
    """Fail and re-queue RUNNING trials whose worker is gone: at once for workers of this host
    (their pid is dead), through Optuna heartbeats for other hosts (RDB storages)."""
    import warnings

    from optuna.storages import fail_stale_trials

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        fail_stale_trials(study)  # calls `requeue` through the storage's failed_trial_callback
    reaped = 0
    now = time.time()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.system_attrs.get(OWNER_ATTR)
        if owner is None:
            # Owned within milliseconds of being claimed; older than this means its worker died then.
            started = t.datetime_start.timestamp() if t.datetime_start else now
            if now - started < orphan_after_s:
                continue
            reason = "worker died before recording itself"
        elif owner.get("host") != HOST or _owner_alive(owner):
            continue
        else:
            reason = f"worker pid {owner.get('pid')} on {HOST} died while running this trial"
        try:
            # The reason goes on while the trial is still RUNNING; then one reaper wins the FAIL.
            study._storage.set_trial_user_attr(t._trial_id, ERROR_ATTR, reason)
            if not study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker reaped it (or it finished) first
        requeue(study, study._storage.get_trial(t._trial_id), reason)
        reaped += 1
    return reaped


def retry_failed(study: optuna.Study) -> int:
    """``resume --retry-failed``: queue again every failed point (that did not complete since)."""
    trials = study.get_trials(deepcopy=False)
    requeued = requeued_numbers(trials)
    done = {space.params_key(t.params) for t in trials if t.state == TrialState.COMPLETE}
    n = 0
    for t in trials:
        if t.state != TrialState.FAIL or t.number in requeued or space.params_key(t.params) in done:
            continue
        requeue(study, t, t.user_attrs.get(ERROR_ATTR, "failed"))
        done.add(space.params_key(t.params))
        n += 1
    return n


def completed_twin(study: optuna.Study, searched: dict[str, Any], number: int) -> FrozenTrial | None:
    """The first completed trial (other than ``number``) with exactly these searched params.

    On a discrete space a sampler proposes points it has tried before (TPE does, often); the
    trial seed depends on the params only, so training again would reproduce the stored result.
    """
    key = space.params_key(searched)
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.number != number and t.value is not None and not t.user_attrs.get(DUPLICATE_OF_ATTR) \
                and space.params_key(t.params) == key:
            return t
    return None


def claim_waiting(study: optuna.Study) -> optuna.Trial | None:
    """Atomically take a queued trial: the storage's WAITING->RUNNING update succeeds for one
    worker only, so no queued grid point runs twice (optuna#2039, #4627, #5489)."""
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, t._trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def worker_salt(study: optuna.Study, index: int) -> int:
    """0 for the first worker of a fresh study (reproducible), different after any restart."""
    return len(study.get_trials(deepcopy=False)) * 1_009 + index
