"""Fused training (HFTA, Wang et al., MLSys 2021): K configurations of the notebook MLP or of the
Fashion CNN sharing a graph structure and batch size train as one model with stacked (K, ...)
weights and optimizer states: one traced step trains all K and one update applies their
optimizers, so K trials cost about one wider fit instead of K small ones. On a CPU each member
runs its own layers' ops inside that step; under XLA and on a GPU the forward is batched (dense
layers as batched matmuls, convolutions grouped). The stacked model is in pack.py, the choice of
K in sizing.py.

Each member keeps what makes it its own trial: the initial weights ``set_random_seed(seed)`` and
``build_mlp`` / ``build_cnn`` give; each epoch's order of its rows (of ``x`` or its ``train_indices``)
from the same seeded ``tf.data`` shuffle as a standalone fit (under ``seeding: scikeras``, Keras's
one order for every epoch); its optimizer (adam, rmsprop, sgd with momentum, radam: the
Keras/sweeper update rules, op for op, on stacked variables) with its own state, steps and
learning rate; its dropout rate and masks (its Dropout layers' seeds and its step count), L2,
epochs and batch norm statistics. On a CPU a member's weights after every step are those of
``fit_config`` on the same configuration, bit for bit (sweeper's RAdam: within float rounding;
tests/train/test_fused.py). A member is frozen after its last epoch, when ``should_stop`` says so, or
when its loss is not finite; once few enough are left the rest is re-packed smaller (one
retrace).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from sweeper.train.fused.init import initial_weights
from sweeper.train.fused.optim import OPTIONS
from sweeper.train.fused.pack import Pack, traced_size
from sweeper.train.fused.sizing import eval_rows
from sweeper.train.fused import structure as fused_structure
from sweeper.train.fused.structure import CNNStructure, MLPStructure, Structure
from sweeper.train.keras_mirror import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_LEARNING_RATES,
    KERAS_PASSES_PER_EPOCH,
    keras_batch_order,
)
from sweeper.train.runtime import (
    flush_now_and_then,
    set_random_seed_keeping_kernels,
    tensorflow,
)

DEFAULT_LR = DEFAULT_LEARNING_RATES  # Keras's (keras_mirror.OPTIMIZER_DEFAULTS)
MODEL_KEYS = ("units", "batchnorm", "dropout", "activation", "kernel_initializer", "l2")
# Each family's model__ keys (its builder's default dropout is read from the builder).
FAMILIES: dict[str, tuple[str, ...]] = {"mlp": MODEL_KEYS, "cnn": MODEL_KEYS + ("filters",)}
# A fit's epoch e trains on shuffle pass KERAS_PASSES_PER_EPOCH * e (keras_mirror): fused members do the same.
StopHook = Callable[[int, int, dict[str, float]], bool]  # (member index, epoch, logs) -> freeze it?


@dataclass
class FusedMember:
    """One configuration of a pack. ``optimizer_options`` takes keys of ``OPTIONS[optimizer]``
    (``nesterov`` as 0/1); the index arrays select rows of the ``x`` given to ``fit_fused``."""

    seed: int
    epochs: int
    learning_rate: float = 0.001
    optimizer: str = "adam"
    optimizer_options: dict[str, float] = field(default_factory=dict)
    dropout: float = 0.0
    l2: float = 0.0
    keras_order: bool = False  # rows in Keras's own order each epoch (seeding: scikeras), not reshuffled
    train_indices: np.ndarray | None = None  # rows of x it trains on (default: all)
    val_indices: np.ndarray | None = None  # rows of x it is scored on (instead of shared validation)
    # Set by fit_fused: the seeds of its standalone model's Dropout layers, in order.
    dropout_seeds: tuple[int, ...] = ()


@dataclass
class FusedResult:
    """One member's fit: Keras-style history (loss, accuracy, val_loss, val_accuracy per epoch run)
    and its final weights, in the order of ``keras_model(...).get_weights()``."""

    history: dict[str, list[float]]
    weights: list[np.ndarray]
    epochs_run: int
    stopped_early: bool = False  # frozen by should_stop before its last epoch
    error: str | None = None  # its loss stopped being finite (it was frozen there)
    orders: list[np.ndarray] = field(default_factory=list)  # each epoch's rows of x, with record_orders
    fit_time: float = 0.0  # wall time of the whole pack


Key = tuple[Structure, int]  # what members of one pack share: structure and batch size


def member_from_params(params: dict[str, Any], seed: int, model: str = "mlp") -> tuple[Key, FusedMember] | None:
    """A trial's full routed params -> (pack key: structure and batch size, member), or None when
    they hold anything a pack does not implement or cannot vary per member. ``model`` is the
    sweep's model family (``spec.model``): "mlp" or "cnn" are fused, any other gives None."""
    if model not in FAMILIES:
        return None
    keys, default_dropout = FAMILIES[model], fused_structure.default_dropout(model)
    name = str(params.get("optimizer", "adam")).lower()
    args = {k[7:]: v for k, v in params.items() if k.startswith("model__")}
    opt = {k[11:]: float(v) for k, v in params.items() if k.startswith("optimizer__")}
    rest = {k for k in params if not k.startswith(("model__", "optimizer__"))} - {"optimizer", "epochs",
                                                                                "batch_size"}
    lr = float(opt.pop("learning_rate", DEFAULT_LR.get(name, 0.0)))
    batch = int(params.get("batch_size") or DEFAULT_BATCH_SIZE)
    if name not in OPTIONS or rest or set(args) - set(keys) or set(opt) - set(OPTIONS[name]) or batch < 1:
        return None
    dropout, l2 = float(args.pop("dropout", default_dropout)), float(args.pop("l2", 0.0))
    structure = CNNStructure(**args) if model == "cnn" else MLPStructure(**args)
    return (structure, batch), FusedMember(seed, int(params.get("epochs", 1)), lr, name, opt, dropout, l2)


_ORDERS: dict[tuple[int, int], np.ndarray] = {}  # (rows, seed) -> Keras's order (the folds of a sweep share a few)
MAX_ORDERS = 256


def _keras_order(n: int, seed: int) -> np.ndarray:
    """``keras_batch_order(n, seed)``, made once per (n, seed) in a process (about 20 ms each);
    it leaves every generator seeded with ``seed``, as making it does."""
    if (n, seed) not in _ORDERS:
        while len(_ORDERS) >= MAX_ORDERS:
            _ORDERS.pop(next(iter(_ORDERS)))
        _ORDERS[(n, seed)] = keras_batch_order(n, seed, set_random_seed_keeping_kernels)
    else:
        set_random_seed_keeping_kernels(seed)
    return _ORDERS[(n, seed)]


def _padded(rows: Sequence[np.ndarray | None], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Row lists -> (len(rows), width) indices and 0/1 mask (None: all padding)."""
    idx, mask = np.zeros((len(rows), width), np.int32), np.zeros((len(rows), width), np.float32)
    for s, r in enumerate(rows):
        if r is not None:
            idx[s, :len(r)], mask[s, :len(r)] = r, 1.0
    return idx, mask


def _validate(pack: Pack, slots: list[int], members: list[FusedMember], batch: int,
              live: set[int]) -> dict[str, np.ndarray]:
    """Per slot val_loss (mean cross-entropy + L2) and val_accuracy, in chunks of ``batch`` rows;
    of the ``live`` members only where each member has its own rows (the rest: no rows, not run)."""
    if "xv" in pack.data:
        n = int(pack.data["xv"].shape[0])
        chunks = [tuple(a[0] for a in _padded([np.arange(a, min(a + batch, n))], batch)) for a in range(0, n, batch)]
    elif members[slots[0]].val_indices is not None:
        rows = [np.asarray(members[i].val_indices if i in live else [], np.int32) for i in slots]
        chunks = [_padded([r[a:a + batch] for r in rows], batch) for a in range(0, max(map(len, rows)), batch)]
    else:
        return {}
    sums = sum(np.stack([o.numpy() for o in pack.eval(idx, mask)]) for idx, mask in chunks)
    n = np.maximum(sums[2], 1)
    return {"val_loss": sums[0] / n + pack.reg().numpy()[:pack.n], "val_accuracy": sums[1] / n}


def _repack(pack: Pack, live: int) -> bool:
    """Whether to re-pack the ``live`` members still training. With each member on its own ops,
    once they fit a traced size a quarter of the pack's: a frozen slot costs only its share of
    the stacked update (about a twelfth of a member), a new trace as much as several epochs of a
    16-member pack. Batched (every slot computed in full), once half the slots are free."""
    if pack.own_layers:
        return traced_size(live, True) <= pack.k // 4
    return live <= pack.n // 2


def _take_weights(pack: Pack, slots: list[int], members: list[int], results: list[FusedResult]) -> None:
    """Copy the weights of ``members`` (indices, in ``slots``) out of the pack into their results."""
    picked = pack.state([slots.index(i) for i in members])["w"]
    for n, i in enumerate(members):
        results[i].weights = [a[n] for a in picked]


def fit_fused(members: list[FusedMember], x: np.ndarray, y: np.ndarray,
              validation: tuple[np.ndarray, np.ndarray] | None, *, structure: Structure, batch_size: int,
              should_stop: StopHook | None = None, val_batch_size: int = 1024, n_classes: int | None = None,
              record_orders: bool = False, jit_compile: bool = False, conv: str | None = None,
              capacity: int | None = None) -> list[FusedResult]:
    """Train ``members`` (one structure, one batch size) together on ``x, y`` (labels 0..n_classes-1)
    and score every epoch on ``validation``, shared by all, or, when every member has ``val_indices``
    (then ``validation`` is None), on its own rows of ``x``. ``should_stop(i, epoch, logs)`` is
    called after each epoch member ``i`` trains (to report and prune); True freezes it there.
    ``conv`` (CNNs): "loop" (one conv per member, the default on CPU) or "grouped" (one grouped
    conv, the default with a GPU; on CPU it needs ``jit_compile``). ``capacity``: the most members
    a pack of this sweep holds (its steps are traced for that many, so its packs share them)."""
    tf = tensorflow()
    if not members:
        return []
    own_val = [m.val_indices is not None for m in members]
    if any(own_val) and (not all(own_val) or validation is not None):
        raise ValueError("validate on shared data or on every member's own val_indices, not both")
    n_classes = int(n_classes or int(np.max(y)) + 1)
    t0 = time.perf_counter()
    inits, shufflers, members = [], [], list(members)
    flush_now_and_then()  # once per pack: its members are seeded keeping the cache
    for j, m in enumerate(members):  # what fit_config draws, in the same order
        weights, dropout_seeds = initial_weights(structure, m, x.shape[1:], n_classes)  # seeds every generator
        inits.append(weights)
        # Keras's Dropout draws step s's mask from its seed generator's [seed, s]: the same masks
        # (keras_mirror.DROPOUT_SEEDS).
        members[j] = replace(m, dropout_seeds=dropout_seeds)
        n = len(x if m.train_indices is None else m.train_indices)
        if m.keras_order:  # seeded again after the build, as fit_config does under seeding: scikeras
            order = _keras_order(n, m.seed)
            shufflers.append(tf.data.Dataset.from_tensors(order).repeat())
            continue
        seed = int(np.random.randint(0, 2**31 - 1))
        # Its seeded shuffle, made now: it reads the global seed (the member's) when it is made.
        shufflers.append(tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True)
                         .batch(n).repeat())
    # One repeating iterator over every member's passes: the same passes as a new iterator per
    # pass (tests/train/test_fused.py), where making one costs about 30 ms and deleting 64 took 2 s.
    passes = iter(tf.data.Dataset.zip(tuple(shufflers)))
    state = {"w": [np.stack(ws).astype(np.float32) for ws in zip(*inits)]}
    conv = conv or ("grouped" if tf.config.list_physical_devices("GPU") else "loop")
    rows = (lambda a: a) if isinstance(structure, CNNStructure) else (lambda a: a.reshape(len(a), -1))
    data = {"x": tf.constant(rows(x), tf.float32), "y": tf.constant(y, tf.int32)}
    if validation is not None:
        xv, yv = np.asarray(validation[0]), np.asarray(validation[1])
        data.update(xv=tf.constant(rows(xv), tf.float32), yv=tf.constant(yv, tf.int32))
    slots = list(range(len(members)))  # the member in each slot of the pack
    pack = Pack(structure, members, state, data, jit_compile, conv, capacity)
    # Validation chunks small enough that K members' activations stay within EVAL_BYTES.
    val_batch = eval_rows(structure, x.shape[1:], len(members), val_batch_size)
    results = [FusedResult({}, [], 0) for _ in members]
    live = {i for i in slots if members[i].epochs > 0}
    for epoch in range(max(m.epochs for m in members)):
        if not live:
            break
        if _repack(pack, len(live)):  # re-pack the members still training
            _take_weights(pack, slots, [i for i in slots if i not in live], results)
            keep = [s for s, i in enumerate(slots) if i in live]
            slots = [slots[s] for s in keep]
            pack = Pack(structure, [members[i] for i in slots], pack.state(keep), data, jit_compile, conv,
                        kinds=pack.kinds)
        orders: list[np.ndarray | None] = [None] * len(slots)
        perms, *_ = [next(passes) for _ in range(KERAS_PASSES_PER_EPOCH)]  # every member's, frozen ones' unused
        for s, i in enumerate(slots):
            if i in live:
                perm = perms[i].numpy()
                orders[s] = np.asarray(perm if (rows := members[i].train_indices) is None else rows[perm], np.int32)
                if record_orders:
                    results[i].orders.append(orders[s])
        steps = max(math.ceil(len(r) / batch_size) for r in orders if r is not None)
        idx, mask = _padded(orders, steps * batch_size)
        sums = np.zeros((3, len(slots)))
        for step in range(steps):
            cols = slice(step * batch_size, (step + 1) * batch_size)
            sums += np.stack([o.numpy() for o in pack.train(idx[:, cols], mask[:, cols], mask[:, cols].max(1) > 0)])
        logs = {"loss": sums[0] / np.maximum(sums[2], 1), "accuracy": sums[1] / np.maximum(sums[2], 1),
                **_validate(pack, slots, members, val_batch, live)}
        for s, i in enumerate(slots):
            if i not in live:
                continue
            r, member_logs = results[i], {k: float(v[s]) for k, v in logs.items()}
            for k, value in member_logs.items():
                r.history.setdefault(k, []).append(value)
            r.epochs_run = epoch + 1
            done = epoch + 1 >= members[i].epochs
            if not math.isfinite(member_logs["loss"]):
                r.error, done = f"loss became NaN at epoch {epoch + 1}: training stopped", True
            elif should_stop is not None and should_stop(i, epoch, member_logs) and not done:
                r.stopped_early = done = True
            if done:  # frozen: its slot's variables stop changing
                live.discard(i)
    _take_weights(pack, slots, slots, results)
    return [replace(r, fit_time=time.perf_counter() - t0) for r in results]
