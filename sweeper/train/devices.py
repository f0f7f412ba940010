"""GPU placement for worker processes: which GPU each worker gets and how much of it.

Decided in the parent without importing TensorFlow (``nvidia-smi``), applied in each worker
through its environment before TensorFlow starts (``CUDA_VISIBLE_DEVICES``), then configured
in ``configure_worker_devices`` (memory growth, or a hard per-process memory limit when several
trials share one GPU).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from sweeper.errors import SweeperError

MEMORY_ENV = "SWEEPER_GPU_MEMORY_MB"
THREADS_ENV = "SWEEPER_THREADS"


@dataclass(frozen=True)
class GpuInfo:
    index: int
    memory_mb: int


def detect_gpus() -> list[GpuInfo]:
    """GPUs visible to this process, from nvidia-smi (empty when there is none)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return parse_nvidia_smi(out)


def parse_nvidia_smi(text: str) -> list[GpuInfo]:
    gpus = []
    for line in text.strip().splitlines():
        index, _, memory = line.partition(",")
        if index.strip().isdigit() and memory.strip().isdigit():
            gpus.append(GpuInfo(int(index), int(memory)))
    return gpus


def select_gpus(arg: str | None, available: list[GpuInfo]) -> list[GpuInfo]:
    """``--gpus``: 'all' (default when GPUs exist), 'none', or a list like '0,1'."""
    if arg in (None, "all", "auto"):
        return list(available)
    if arg == "none":
        return []
    by_index = {g.index: g for g in available}
    chosen = []
    for part in arg.split(","):
        if not part.strip().isdigit():
            raise SweeperError(f"--gpus: {arg!r} is not 'all', 'none' or a list like 0,1")
        idx = int(part)
        if idx not in by_index:
            have = ",".join(str(g.index) for g in available) or "none"
            raise SweeperError(f"--gpus: GPU {idx} does not exist (GPUs here: {have})")
        chosen.append(by_index[idx])
    return chosen


@dataclass(frozen=True)
class Placement:
    """One worker process: its GPU (None = CPU), its memory cap, its CPU threads."""

    gpu: int | None
    memory_limit_mb: int | None
    threads: int | None

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(self.gpu)
        elif self.threads is not None:
            env["CUDA_VISIBLE_DEVICES"] = ""  # CPU workers never grab a GPU by accident
        if self.memory_limit_mb is not None:
            env[MEMORY_ENV] = str(self.memory_limit_mb)
        if self.threads is not None:
            env[THREADS_ENV] = str(self.threads)
        return env


def plan_workers(gpus: list[GpuInfo], trials_per_gpu: int, workers: int | None, cpu_count: int) -> list[Placement]:
    """One worker per GPU slot by default (``trials_per_gpu`` slots per GPU, each capped at
    its share of the GPU's memory); on CPU, ``workers`` processes splitting the cores."""
    if trials_per_gpu < 1:
        raise SweeperError(f"--trials-per-gpu: {trials_per_gpu} must be >= 1")
    if gpus:
        slots = []
        for g in gpus:
            cap = memory_share_mb(g.memory_mb, 1 / trials_per_gpu) if trials_per_gpu > 1 else None
            slots += [Placement(g.index, cap, None) for _ in range(trials_per_gpu)]
        if workers is not None and workers != len(slots):
            raise SweeperError(f"--workers {workers} does not match {len(gpus)} GPU(s) x --trials-per-gpu "
                               f"{trials_per_gpu} = {len(slots)}; leave --workers out with GPUs")
        return slots
    n = workers or 1
    threads = max(1, cpu_count // n) if n > 1 else None
    return [Placement(None, None, threads) for _ in range(n)]


def memory_share_mb(memory_mb: int, share: float) -> int:
    """The memory cap of a worker given ``share`` of a GPU (``--trials-per-gpu K``: 1/K; a Ray
    worker's fractional ``--gpus-per-worker``), 10 % left for the CUDA context and fragmentation."""
    return int(memory_mb * 0.9 * share)


def configure_worker_devices(tf: Any) -> None:
    """In a worker, given the imported ``tensorflow`` module: memory growth on each GPU, or the
    per-process cap when trials share a GPU; CPU threads when CPU workers share the cores."""
    limit = os.environ.get(MEMORY_ENV)
    for gpu in tf.config.list_physical_devices("GPU"):
        if limit:
            tf.config.set_logical_device_configuration(gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=int(limit))])
        else:
            tf.config.experimental.set_memory_growth(gpu, True)
    threads = os.environ.get(THREADS_ENV)
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
