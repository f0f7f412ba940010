"""Where a trial ran: the ``placement`` user attribute every trial gets when a worker claims it
(host, engine, worker index, pid, GPU ids), read from how the worker was started.

The engine is what started the worker, told by the launcher through $SWEEPER_ENGINE: ``local``
(``sweeper run``, in-process or its ``--workers K`` processes; also the notebook API), ``worker``
(``sweeper worker`` by hand), ``slurm`` (``sweeper launch slurm``'s array job) or ``k8s``
(``sweeper launch k8s``'s Indexed Job). The worker index is the one the worker was given, else the
scheduler's array index ($SLURM_ARRAY_TASK_ID, $JOB_COMPLETION_INDEX) when present."""

from __future__ import annotations

import os
import socket
from typing import Any

ENGINE_ENV = "SWEEPER_ENGINE"
INDEX_ENV = "SWEEPER_WORKER_INDEX"  # set by the worker loop for the trials it claims (and its suspects' worker)
ENGINES = ("local", "worker", "slurm", "k8s")
ARRAY_INDEX_ENVS = ("SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX")  # the schedulers' own worker index


def engine() -> str:
    return os.environ.get(ENGINE_ENV) or "local"


def _int_env(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw.isdigit() else None


def worker_index(given: int | None = None) -> int:
    """``given`` (``--index``), else the scheduler's array index, else the loop's, else 0."""
    if given is not None:
        return given
    for name in (*ARRAY_INDEX_ENVS, INDEX_ENV):
        value = _int_env(name)
        if value is not None:
            return value
    return 0


def gpu_ids() -> list[str] | None:
    """The GPUs this process may see ($CUDA_VISIBLE_DEVICES), None when none are set or all hidden."""
    raw = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [g.strip() for g in (raw or "").split(",") if g.strip() and g.strip() != "-1"]
    return ids or None


def placement_record() -> dict[str, Any]:
    index = _int_env(INDEX_ENV)
    return {"host": socket.gethostname(), "engine": engine(),
            "worker": worker_index() if index is None else index, "pid": os.getpid(), "gpus": gpu_ids()}


def placement_text(record: dict[str, Any]) -> str:
    """One line for ``show --trial N``."""
    gpus = ",".join(str(g) for g in record.get("gpus") or ()) or "none"
    return (f"{record.get('engine', '?')} worker {record.get('worker', '?')} on {record.get('host', '?')} "
            f"(pid {record.get('pid', '?')}, GPUs {gpus})")
