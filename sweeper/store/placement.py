"""Where a trial ran: the ``placement`` user attribute every trial gets when a worker claims it
(host, engine, worker index, pid, GPU ids, and the cluster node when the engine names one), read
from how the worker was started.

The engine is what started the worker, told by the launcher through $SWEEPER_ENGINE: ``local``
(``sweeper run``, in-process or its ``--workers K`` processes; also the notebook API), ``worker``
(``sweeper worker`` by hand), ``slurm`` (``sweeper launch slurm``'s array job), ``k8s``
(``sweeper launch k8s``'s Indexed Job) or ``ray`` (``sweeper run --engine ray``'s Ray tasks, which
also give their Ray node id in $SWEEPER_NODE: several nodes may share one host). The worker index
is the one the worker was given, else the scheduler's array index ($SLURM_ARRAY_TASK_ID,
$JOB_COMPLETION_INDEX) when present."""

from __future__ import annotations

import os
import socket
from typing import Any

ENGINE_ENV = "SWEEPER_ENGINE"
INDEX_ENV = "SWEEPER_WORKER_INDEX"  # given to the worker a supervisor starts for suspects (worker_env)
NODE_ENV = "SWEEPER_NODE"  # the cluster's own id of the node a worker runs on (Ray's node id)
ARRAY_INDEX_ENVS = ("SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX")  # the schedulers' own worker index

_current: dict[str, Any] = {}  # this process's worker index and default engine (set_worker_index, set_default_engine)


def set_default_engine(name: str) -> None:
    """The engine when no launcher said one: ``worker`` for ``sweeper worker``, else ``local``."""
    _current["engine"] = name


def engine() -> str:
    return os.environ.get(ENGINE_ENV) or _current.get("engine", "local")


def _int_env(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw.isdigit() else None


def worker_index(given: int | None = None) -> int:
    """``given`` (``--index``), else the scheduler's array index, else the one a supervisor passed
    on ($SWEEPER_WORKER_INDEX), else 0."""
    if given is not None:
        return given
    for name in (*ARRAY_INDEX_ENVS, INDEX_ENV):
        value = _int_env(name)
        if value is not None:
            return value
    return 0


def set_worker_index(index: int) -> None:
    _current["worker"] = index


def current_index() -> int:
    return _current["worker"] if "worker" in _current else worker_index()


def worker_env() -> dict[str, str]:
    """What a worker this process starts (for suspects) needs to say it runs as this one."""
    return {ENGINE_ENV: engine(), INDEX_ENV: str(current_index())}


def gpu_ids() -> list[str] | None:
    """The GPUs this process may see ($CUDA_VISIBLE_DEVICES), None when none are set or all hidden."""
    raw = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [g.strip() for g in (raw or "").split(",") if g.strip() and g.strip() != "-1"]
    return ids or None


def placement_record() -> dict[str, Any]:
    record = {"host": socket.gethostname(), "engine": engine(), "worker": current_index(), "pid": os.getpid(),
              "gpus": gpu_ids()}
    if os.environ.get(NODE_ENV):
        record["node"] = os.environ[NODE_ENV]
    return record


def placement_text(record: dict[str, Any]) -> str:
    """One line for ``show --trial N``."""
    gpus = ",".join(str(g) for g in record.get("gpus") or ()) or "none"
    node = f"node {record['node']}, " if record.get("node") else ""
    return (f"{record.get('engine', '?')} worker {record.get('worker', '?')} on {record.get('host', '?')} "
            f"({node}pid {record.get('pid', '?')}, GPUs {gpus})")


def placement_label(record: Any) -> str | None:
    """A short label for tables and the report's plot: 'slurm 3 @ node017', 'ray 2 @ host node
    9f5b55ab' (a Ray node id's first 8 characters) (None: not recorded)."""
    if not isinstance(record, dict):
        return None
    node = f" node {str(record['node'])[:NODE_LABEL_CHARS]}" if record.get("node") else ""
    return f"{record.get('engine', '?')} {record.get('worker', '?')} @ {record.get('host', '?')}{node}"


NODE_LABEL_CHARS = 8  # a Ray node id is 56 hex digits; its first 8 tell a cluster's nodes apart
