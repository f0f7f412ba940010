"""How many members to fuse into one pack (``pack_size``), from the model's size and the device.

A member costs memory: its weights, gradients and two optimizer slots, and its activations for
one batch. On a GPU, K is what fits in a share of its memory. On a CPU a pack is also capped by
the rows one fused step carries (K x batch size, per core): benchmarks/fusion.py on a 2-core
machine found the notebook MLP at batch 1024 at its best from K=16 (2.1-2.3x the unfused
trials/hour; K=32 and 64 no better within the noise, for 2-4x the memory: each step gathers and
moves K x 1024 rows), and the Fashion CNN at batch 64 still gaining up to K=64 (1.5-1.9x).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

from sweeper.train.fused.structure import CNNStructure, Structure

MAX_PACK = 64
FLOAT_BYTES = 4
ACTIVATION_COPIES = 4  # per layer output kept for the backward pass: pre-BN, post-BN, post-activation, gradient
MEMORY_SHARE = 0.5  # of the device memory: the rest for the framework, workspaces, fragmentation, data
CPU_MEMORY_SHARE = 0.25  # of the machine's RAM, when no memory is given: workers and data share it
CPU_ROWS_PER_CORE = 8192  # K x batch per fused step and core, beyond which CPU throughput fell (see above)
EVAL_BYTES = 512 * 2**20  # one validation chunk's activations, all members together


@dataclass(frozen=True)
class MemberCost:
    """Per member: weights; activation floats per image (its input and every layer's output)."""

    params: int
    activations: int


def member_cost(structure: Structure, input_shape: Sequence[int], n_classes: int) -> MemberCost:
    """Weights and activation floats per image of ``build_mlp`` / ``build_cnn``."""
    per_unit = 2 + (4 if structure.batchnorm else 0)  # bias (and the kernel's column), BN's four
    params = activations = 0
    if isinstance(structure, CNNStructure):
        rows, cols, channels = (list(input_shape) + [1, 1])[:3]
        for f in (structure.filters, structure.filters * 2):
            pixels = rows * cols
            params += 9 * channels * f + (per_unit - 1) * f + (pixels * f if structure.activation == "prelu" else 0)
            activations += pixels * f
            rows, cols, channels = rows // 2, cols // 2, f
        width = rows * cols * channels
        widths = [structure.units]
    else:
        width, widths = math.prod(input_shape), [structure.units * m for m in (1, 2, 4)]
    for out in [*widths, n_classes]:
        params += width * out + (per_unit - 1) * out + (out if structure.activation == "prelu" else 0)
        activations += out
        width = out
    return MemberCost(params, activations + math.prod(input_shape))


def _visible_gpu_memory() -> int | None:
    """Bytes of the first GPU this process may use (its per-process cap when trials share it), or
    None: what sweeper/train/devices.py set up, read without importing TensorFlow."""
    from sweeper.train.devices import MEMORY_ENV, detect_gpus

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = detect_gpus()
    if visible is not None:
        allowed = {int(p) for p in visible.split(",") if p.strip().isdigit()}
        gpus = [g for g in gpus if g.index in allowed]
    if not gpus:
        return None
    cap = os.environ.get(MEMORY_ENV)
    return int(cap if cap and cap.isdigit() else gpus[0].memory_mb) * 2**20


def _cpu_threads() -> int:
    from sweeper.train.devices import THREADS_ENV

    threads = os.environ.get(THREADS_ENV, "")
    return int(threads) if threads.isdigit() else (os.cpu_count() or 1)


def pack_size(structure: Structure, batch_size: int, input_shape: Sequence[int], n_classes: int, *,
              device_memory_bytes: int | None = None, gpu: bool | None = None) -> int:
    """Members per pack (1..64): as many as fit in ``MEMORY_SHARE`` of the device memory (a visible
    GPU's, or the RAM given / a quarter of the machine's on CPU) and, on a CPU, no more than
    ``CPU_ROWS_PER_CORE`` rows per step and core. ``gpu`` None: whether this process sees a GPU."""
    cost = member_cost(structure, input_shape, n_classes)
    if gpu is None or (gpu and device_memory_bytes is None):
        found = _visible_gpu_memory()
        gpu = found is not None if gpu is None else gpu
        device_memory_bytes = device_memory_bytes or found
    if device_memory_bytes is None:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        device_memory_bytes = int(pages * (CPU_MEMORY_SHARE / MEMORY_SHARE))
    per_member = FLOAT_BYTES * (4 * cost.params + batch_size * cost.activations * ACTIVATION_COPIES)
    k = int(MEMORY_SHARE * device_memory_bytes // per_member)
    if not gpu:
        k = min(k, CPU_ROWS_PER_CORE * _cpu_threads() // batch_size)
    return max(1, min(MAX_PACK, k))


def eval_rows(structure: Structure, input_shape: Sequence[int], k: int, val_batch_size: int) -> int:
    """Rows per validation chunk: ``val_batch_size``, fewer when K members' activations (two live
    copies per layer) would pass ``EVAL_BYTES``."""
    per_row = 2 * FLOAT_BYTES * k * member_cost(structure, input_shape, 10).activations
    return max(1, min(val_batch_size, EVAL_BYTES // per_row))
