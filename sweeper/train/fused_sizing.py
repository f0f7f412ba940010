"""How many members to fuse into one pack (``pack_size``), from the model's size and the device.

A member costs memory (its weights, gradients and two optimizer slots; its activations for one
batch) and work per step (multiply-adds of its forward and backward pass, and its optimizer's
element-wise update). On a GPU, K is what fits in a share of its memory. On a CPU the cores are
the limit: a pack wider than the work the cores can do in one step gains nothing and loses cache,
so K is capped by a work budget per core, measured with benchmarks/fusion.py on a 2-core machine
(the notebook MLP at batch 1024 was fastest at K=16, the Fashion CNN at batch 128 at K=2-4).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

from sweeper.train.fused_layers import CNNStructure, Structure

MAX_PACK = 64
FLOAT_BYTES = 4
ACTIVATION_COPIES = 4  # per layer output kept for the backward pass: pre-BN, post-BN, post-activation, gradient
MEMORY_SHARE = 0.5  # of the device memory: the rest for the framework, workspaces, fragmentation, data
CPU_MEMORY_SHARE = 0.25  # of the machine's RAM, when no memory is given: workers and data share it
# Work one CPU core does per fused step before a wider pack stops paying (multiply-adds x 6 for
# forward + backward, plus OPTIMIZER_WORK per weight): benchmarks/fusion.py, 2 cores.
CPU_WORK_PER_CORE = 2.5e9
OPTIMIZER_WORK = 200.0  # an element-wise update is memory-bound: per weight, about 200 flops of matmul time
EVAL_BYTES = 512 * 2**20  # one validation chunk's activations, all members together


@dataclass(frozen=True)
class MemberCost:
    """Per member: weights; activations and multiply-adds per image (forward)."""

    params: int
    activations: int
    macs: int


def member_cost(structure: Structure, input_shape: Sequence[int], n_classes: int) -> MemberCost:
    """Weights, activation floats and multiply-adds of ``build_mlp`` / ``build_cnn`` per image."""
    per_unit = 2 + (4 if structure.batchnorm else 0)  # bias (and the kernel's column), BN's four
    params = activations = macs = 0
    if isinstance(structure, CNNStructure):
        rows, cols, channels = (list(input_shape) + [1, 1])[:3]
        for f in (structure.filters, structure.filters * 2):
            pixels = rows * cols
            params += 9 * channels * f + (per_unit - 1) * f + (pixels * f if structure.activation == "prelu" else 0)
            macs += pixels * 9 * channels * f
            activations += pixels * f
            rows, cols, channels = rows // 2, cols // 2, f
        width = rows * cols * channels
        widths = [structure.units]
    else:
        width, widths = math.prod(input_shape), [structure.units * m for m in (1, 2, 4)]
    for out in [*widths, n_classes]:
        params += width * out + (per_unit - 1) * out + (out if structure.activation == "prelu" else 0)
        macs += width * out
        activations += out
        width = out
    return MemberCost(params, activations + math.prod(input_shape), macs)


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
    GPU's, or the RAM given / a quarter of the machine's on CPU) and, on a CPU, no more than its
    cores' work budget per step. ``gpu`` None: whether this process sees a GPU."""
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
        work = 6.0 * cost.macs * batch_size + OPTIMIZER_WORK * cost.params
        k = min(k, int(CPU_WORK_PER_CORE * _cpu_threads() // work))
    return max(1, min(MAX_PACK, k))


def eval_rows(structure: Structure, input_shape: Sequence[int], k: int, val_batch_size: int) -> int:
    """Rows per validation chunk: ``val_batch_size``, fewer when K members' activations (two live
    copies per layer) would pass ``EVAL_BYTES``."""
    per_row = 2 * FLOAT_BYTES * k * member_cost(structure, input_shape, 10).activations
    return max(1, min(val_batch_size, EVAL_BYTES // per_row))
