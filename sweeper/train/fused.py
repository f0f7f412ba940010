"""Fused training (HFTA, Wang et al., MLSys 2021): K configurations of the notebook MLP sharing a
graph structure and batch size train as one model with stacked (K, in, out) kernels applied by
batched matmuls, so K trials cost about one wider fit instead of K small ones.

Each member keeps what makes it its own trial: the initial weights ``set_random_seed(seed)`` and
``build_mlp`` give; each epoch's order of its rows (of ``x`` or its ``train_indices``) from the same
seeded ``tf.data`` shuffle as a standalone fit; its optimizer (adam, rmsprop, sgd with momentum,
radam: the Keras/sweeper update rules, op for op, on stacked variables) with its own state, steps
and learning rate; its dropout rate, L2, epochs and batch norm statistics. With dropout 0 a member
trains as ``fit_config`` trains it, up to float rounding (tests/test_fused.py); dropout noise comes
from the member's seed and step count. A member is frozen after its last epoch, when
``should_stop`` says so, or when its loss is not finite; once half a pack is frozen the rest is
re-packed smaller (one retrace).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from sweeper.train.runtime import tensorflow

# The options a member may give each optimizer, with Keras's (and sweeper's RAdam) defaults.
OPTIONS: dict[str, dict[str, float]] = {
    "adam": {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    "rmsprop": {"rho": 0.9, "momentum": 0.0, "epsilon": 1e-7},
    "sgd": {"momentum": 0.0, "nesterov": 0.0},
    "radam": {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
}
DEFAULT_LR = {"adam": 0.001, "rmsprop": 0.001, "sgd": 0.01, "radam": 0.001}
KINDS = tuple(OPTIONS)
MODEL_KEYS = ("units", "batchnorm", "dropout", "activation", "kernel_initializer", "l2")
# Keras 3's epoch iterator opens a pass over a sized dataset when an epoch ends and another when
# the next begins, so a fit's epoch e trains on shuffle pass 2e: fused members do the same.
KERAS_PASSES_PER_EPOCH = 2
StopHook = Callable[[int, int, dict[str, float]], bool]  # (member index, epoch, logs) -> freeze it?


@dataclass(frozen=True)
class MLPStructure:
    """What all members of a pack share: ``build_mlp``'s structural arguments."""

    units: int = 64
    batchnorm: bool = False
    activation: str = "relu"
    kernel_initializer: str = "glorot_uniform"


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
    train_indices: np.ndarray | None = None  # rows of x it trains on (default: all)
    val_indices: np.ndarray | None = None  # rows of x it is scored on (instead of shared validation)


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


def keras_model(structure: MLPStructure, member: FusedMember, input_shape: Sequence[int],
                n_classes: int) -> Any:
    """The standalone Keras model ``member`` stands for (set a result's weights into it to predict)."""
    from sweeper.train.models.mlp import build_mlp

    meta = {"X_shape_": (None, *input_shape), "n_classes_": n_classes}
    return build_mlp(meta, units=structure.units, batchnorm=structure.batchnorm, dropout=member.dropout,
                     activation=structure.activation, kernel_initializer=structure.kernel_initializer, l2=member.l2)


Key = tuple[MLPStructure, int]  # what members of one pack share: structure and batch size


def member_from_params(params: dict[str, Any], seed: int) -> tuple[Key, FusedMember] | None:
    """A trial's full routed params -> (pack key: structure and batch size, member), or None when
    they hold anything a pack does not implement or cannot vary per member."""
    name = str(params.get("optimizer", "adam")).lower()
    model = {k[7:]: v for k, v in params.items() if k.startswith("model__")}
    opt = {k[11:]: float(v) for k, v in params.items() if k.startswith("optimizer__")}
    rest = {k for k in params if not k.startswith(("model__", "optimizer__"))} - {"optimizer", "epochs",
                                                                                "batch_size"}
    lr, batch = float(opt.pop("learning_rate", DEFAULT_LR.get(name, 0.0))), int(params.get("batch_size") or 32)
    if name not in OPTIONS or rest or set(model) - set(MODEL_KEYS) or set(opt) - set(OPTIONS[name]) or batch < 1:
        return None
    dropout, l2 = float(model.pop("dropout", 0.0)), float(model.pop("l2", 0.0))
    return (MLPStructure(**model), batch), FusedMember(seed, int(params.get("epochs", 1)), lr, name, opt, dropout, l2)


def _layout(structure: MLPStructure) -> tuple[list[int], set[int], int]:
    """Positions in the Keras weight list of hidden kernels and BN moving statistics; its length."""
    kernels, moving, i = [], set(), 0
    for _ in range(3):
        kernels.append(i)
        i += 2
        if structure.batchnorm:
            moving |= {i + 2, i + 3}
            i += 4
        i += structure.activation == "prelu"
    return kernels, moving, i + 2


def _rules(tf: Any) -> dict[str, Callable[..., tuple[Any, Any, Any]]]:
    """Update rules on stacked variables: (w, m, v, g, hyper, t) -> new (w, m, v). The same ops, in
    the same order and with the same float32 constants, as the optimizers' ``update_step``."""

    def adam(w: Any, m: Any, v: Any, g: Any, h: dict[str, Any], t: Any) -> tuple[Any, Any, Any]:
        alpha = h["lr"] * tf.sqrt(1 - tf.pow(h["b2"], t)) / (1 - tf.pow(h["b1"], t))
        m, v = m + (g - m) * h["omb1"], v + (tf.square(g) - v) * h["omb2"]
        return w - (m * alpha) / (tf.sqrt(v) + h["eps"]), m, v

    def rmsprop(w: Any, m: Any, v: Any, g: Any, h: dict[str, Any], t: Any) -> tuple[Any, Any, Any]:
        v = h["rho"] * v + h["omrho"] * tf.square(g)
        m = h["mom"] * m + (h["lr"] * g) / tf.sqrt(v + h["eps"])  # momentum 0: m is the increment
        return w - m, m, v

    def sgd(w: Any, m: Any, v: Any, g: Any, h: dict[str, Any], t: Any) -> tuple[Any, Any, Any]:
        m = m * h["mom"] - g * h["lr"]
        return tf.where(h["nesterov"] > 0, w + (m * h["mom"] - g * h["lr"]), w + m), m, v

    def radam(w: Any, m: Any, v: Any, g: Any, h: dict[str, Any], t: Any) -> tuple[Any, Any, Any]:
        b1p, b2p = tf.pow(h["b1"], t), tf.pow(h["b2"], t)
        m, v = m + (g - m) * h["omb1"], v + (tf.square(g) - v) * h["omb2"]
        m_hat = m / (1 - b1p)
        rho_t = h["rho_inf"] - 2.0 * t * b2p / (1.0 - b2p)
        r_sq = ((rho_t - 4.0) * (rho_t - 2.0) * h["rho_inf"]) / (h["rho_den"] * rho_t)
        adaptive = (m_hat * tf.sqrt(tf.maximum(r_sq, 0.0))) / (tf.sqrt(v / (1 - b2p)) + h["eps"])
        return w - h["lr"] * tf.where(rho_t > 4.0, adaptive, m_hat), m, v

    return {"adam": adam, "rmsprop": rmsprop, "sgd": sgd, "radam": radam}


def _hyper(members: Sequence[FusedMember]) -> dict[str, np.ndarray]:
    """Per-member optimizer constants, as float32 vectors, computed as the optimizers compute them."""
    rows = []
    for member in members:
        kind = member.optimizer.lower()
        if kind not in OPTIONS or set(member.optimizer_options) - set(OPTIONS[kind]):
            raise ValueError(f"{member.optimizer} {member.optimizer_options} is not fused: {OPTIONS}")
        o = {**OPTIONS[kind], **member.optimizer_options}
        b1, b2, rho = o.get("beta_1", 0.9), o.get("beta_2", 0.999), o.get("rho", 0.9)
        rho_inf = 2.0 / (1.0 - b2) - 1.0
        if kind == "radam":  # sweeper's RAdam takes 1 - beta and rho_inf in float32
            b1, b2 = np.float32(b1), np.float32(b2)
            rho_inf = np.float32(2.0) / (np.float32(1.0) - b2) - np.float32(1.0)
        rows.append({"lr": member.learning_rate, "b1": b1, "omb1": 1 - b1, "b2": b2, "omb2": 1 - b2,
                     "eps": o.get("epsilon", 1e-7), "rho": rho, "omrho": 1 - rho, "mom": o.get("momentum", 0.0),
                     "nesterov": o.get("nesterov", 0.0), "rho_inf": rho_inf,
                     "rho_den": (rho_inf - 4.0) * (rho_inf - 2.0), "kind": KINDS.index(kind)})
    return {k: np.asarray([float(r[k]) for r in rows], np.float32) for k in rows[0]}


class _Pack:
    """The stacked variables of the members in its slots, and their traced train and eval steps."""

    def __init__(self, structure: MLPStructure, members: list[FusedMember], state: dict[str, Any],
                 data: dict[str, Any], jit_compile: bool) -> None:
        tf = self.tf = tensorflow()
        self.structure, self.members, self.data, self.k = structure, members, data, len(members)
        self.kernels, self.moving, count = _layout(structure)
        if count != len(state["w"]):
            raise ValueError("the standalone model's weights do not match the fused MLP's layout")
        self.w = [tf.Variable(a) for a in state["w"]]
        self.trainable = [j for j in range(len(self.w)) if j not in self.moving]
        zeros = [np.zeros_like(state["w"][j]) for j in self.trainable]  # a new pack's optimizer slots
        self.m, self.v = ([tf.Variable(a) for a in state.get(key, zeros)] for key in ("m", "v"))
        self.t = tf.Variable(state.get("t", np.zeros(self.k, np.float32)))  # each member's optimizer steps
        hyper = _hyper(members)
        self.h = {k: tf.constant(v) for k, v in hyper.items()}
        self.kinds = sorted({KINDS[int(c)] for c in hyper["kind"]})
        self.rules, self.rates = _rules(tf), [m.dropout for m in members]
        self.l2 = tf.constant([m.l2 for m in members], tf.float32)
        self.dseed = tf.constant([m.seed * 1000003 % 2**31 for m in members], tf.int64)
        # Closures, not bound methods: TF counts traces of one method across packs as retracing.
        self.train = tf.function(lambda idx, mask, update: self._train(idx, mask, update), jit_compile=jit_compile)
        self.eval = tf.function(lambda idx, mask: self._eval(idx, mask), jit_compile=jit_compile)

    def state(self, keep: Sequence[int]) -> dict[str, Any]:
        """The variables of slots ``keep``, as NumPy arrays (to re-pack, or a member's weights)."""
        out = {key: [v.numpy()[list(keep)] for v in getattr(self, key)] for key in ("w", "m", "v")}
        return {**out, "t": self.t.numpy()[list(keep)]}

    def _b(self, vec: Any, rank: int) -> Any:
        return self.tf.reshape(vec, [self.k] + [1] * (rank - 1))

    def _dense(self, h: Any, j: int) -> Any:
        """(B, in) shared rows or (K, B, in) per-member rows -> (K, B, out)."""
        tf = self.tf
        out = tf.einsum("bi,kio->kbo", h, self.w[j]) if h.shape.rank == 2 else tf.linalg.matmul(h, self.w[j])
        return out + self.w[j + 1][:, None, :]

    def _forward(self, h: Any, mask: Any = None) -> tuple[Any, list[tuple[int, Any]]]:
        """Logits (K, B, classes); given a ``mask`` (training): masked batch norm, dropout, moving stats."""
        tf, s, w, moving, j = self.tf, self.structure, self.w, [], 0
        for layer in range(3):
            h, j = self._dense(h, j), j + 2
            if s.batchnorm:  # Keras's BatchNormalization(momentum=0.9), epsilon 1e-3
                gamma, beta, mean, var = (w[j + n][:, None, :] for n in range(4))
                if mask is not None:
                    m3 = mask[:, :, None]
                    count = tf.maximum(tf.reduce_sum(m3, 1, keepdims=True), 1.0)
                    mean = tf.reduce_sum(h * m3, 1, keepdims=True) / count
                    var = tf.reduce_sum(tf.square(h - tf.stop_gradient(mean)) * m3, 1, keepdims=True) / count
                    moving += [(j + 2, w[j + 2] * 0.9 + mean[:, 0] * (1.0 - 0.9)),
                               (j + 3, w[j + 3] * 0.9 + var[:, 0] * (1.0 - 0.9))]
                h, j = tf.nn.batch_normalization(h, mean, var, beta, gamma, 1e-3), j + 4
            if s.activation == "prelu":
                h, j = tf.nn.relu(h) - w[j][:, None, :] * tf.nn.relu(-h), j + 1
            elif s.activation == "leaky_relu":
                h = tf.nn.leaky_relu(h, alpha=0.1)
            else:
                import keras

                h = keras.activations.get(s.activation)(h)
            if mask is not None and any(self.rates):
                h = h * tf.stack([self._keep(k, tf.shape(h)[1:], layer) for k in range(self.k)])
        return self._dense(h, j), moving

    def _keep(self, k: int, shape: Any, layer: int) -> Any:
        """Member ``k``'s dropout multiplier (0 or 1 / (1 - rate)), from its seed and step count."""
        tf, rate = self.tf, self.rates[k]
        if not rate:
            return tf.ones(shape)
        seed = tf.stack([self.dseed[k], tf.cast(self.t[k], tf.int64) * 3 + layer])
        return tf.cast(tf.random.stateless_uniform(shape, seed=seed) >= rate, tf.float32) / (1.0 - rate)

    def reg(self) -> Any:
        """Each member's L2 penalty (Keras's L2 on the hidden kernels: l2 * sum(w ** 2))."""
        if not any(m.l2 for m in self.members):
            return self.tf.zeros([self.k])
        return self.l2 * self.tf.add_n([self.tf.reduce_sum(self.tf.square(self.w[j]), [1, 2]) for j in self.kernels])

    def _train(self, idx: Any, mask: Any, update: Any) -> tuple[Any, Any, Any]:
        """One step of the members whose ``update`` is set, on rows ``x[idx]`` where ``mask`` is 1.
        Returns per member: loss x rows (Keras's loss: batch mean + L2), correct rows, rows."""
        tf = self.tf
        x, y = tf.gather(self.data["x"], idx), tf.gather(self.data["y"], idx)
        with tf.GradientTape() as tape:
            logits, moving = self._forward(x, mask)
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            n = tf.reduce_sum(mask, 1)
            loss = tf.reduce_sum(ce * mask, 1) / tf.maximum(n, 1.0) + self.reg()
            total = tf.reduce_sum(loss)  # member k's part of the gradient is its own loss's
        grads = tape.gradient(total, [self.w[j] for j in self.trainable])
        t = self.t + 1.0
        for j, g, m, v in zip(self.trainable, grads, self.m, self.v):
            h = {key: self._b(val, len(g.shape)) for key, val in self.h.items()}
            new: tuple[Any, ...] = ()
            for kind in self.kinds:
                out = self.rules[kind](self.w[j], m, v, g, h, self._b(t, len(g.shape)))
                new = tuple(tf.where(h["kind"] == KINDS.index(kind), a, b) for a, b in zip(out, new)) if new else out
            for var, value in zip((self.w[j], m, v), new):
                var.assign(tf.where(self._b(update, len(g.shape)), value, var))
        for j, value in moving:
            self.w[j].assign(tf.where(update[:, None], value, self.w[j]))
        self.t.assign(tf.where(update, t, self.t))
        hit = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32)
        return loss * n, tf.reduce_sum(hit * mask, 1), n

    def _eval(self, idx: Any, mask: Any) -> tuple[Any, Any, Any]:
        """Per member CE sum, correct rows, rows: of shared validation if ``idx`` is (B,), else of x."""
        tf, shared = self.tf, idx.shape.rank == 1
        x, y = (self.data["xv"], self.data["yv"]) if shared else (self.data["x"], self.data["y"])
        logits, _ = self._forward(tf.gather(x, idx))
        y = tf.gather(y, idx)
        if shared:
            y, mask = (tf.broadcast_to(a, [self.k, tf.shape(a)[0]]) for a in (y, mask))
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        hit = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32)
        return tf.reduce_sum(ce * mask, 1), tf.reduce_sum(hit * mask, 1), tf.reduce_sum(mask, 1)


def _padded(rows: Sequence[np.ndarray | None], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Row lists -> (len(rows), width) indices and 0/1 mask (None: all padding)."""
    idx, mask = np.zeros((len(rows), width), np.int32), np.zeros((len(rows), width), np.float32)
    for s, r in enumerate(rows):
        if r is not None:
            idx[s, :len(r)], mask[s, :len(r)] = r, 1.0
    return idx, mask


def _validate(pack: _Pack, slots: list[int], members: list[FusedMember], batch: int) -> dict[str, np.ndarray]:
    """Per slot val_loss (mean cross-entropy + L2) and val_accuracy, in chunks of ``batch`` rows."""
    if "xv" in pack.data:
        n = int(pack.data["xv"].shape[0])
        chunks = [tuple(a[0] for a in _padded([np.arange(a, min(a + batch, n))], batch)) for a in range(0, n, batch)]
    elif members[slots[0]].val_indices is not None:
        rows = [np.asarray(members[i].val_indices, np.int32) for i in slots]
        chunks = [_padded([r[a:a + batch] for r in rows], batch) for a in range(0, max(map(len, rows)), batch)]
    else:
        return {}
    sums = sum(np.stack([o.numpy() for o in pack.eval(idx, mask)]) for idx, mask in chunks)
    n = np.maximum(sums[2], 1)
    return {"val_loss": sums[0] / n + pack.reg().numpy(), "val_accuracy": sums[1] / n}


def _take_weights(pack: _Pack, slots: list[int], members: list[int], results: list[FusedResult]) -> None:
    """Copy the weights of ``members`` (indices, in ``slots``) out of the pack into their results."""
    picked = pack.state([slots.index(i) for i in members])["w"]
    for n, i in enumerate(members):
        results[i].weights = [a[n] for a in picked]


def fit_fused(members: list[FusedMember], x: np.ndarray, y: np.ndarray,
              validation: tuple[np.ndarray, np.ndarray] | None, *, structure: MLPStructure, batch_size: int,
              should_stop: StopHook | None = None, val_batch_size: int = 1024, n_classes: int | None = None,
              record_orders: bool = False, jit_compile: bool = False) -> list[FusedResult]:
    """Train ``members`` (one structure, one batch size) together on ``x, y`` (labels 0..n_classes-1)
    and score every epoch on ``validation``, shared by all, or, when every member has ``val_indices``
    (then ``validation`` is None), on its own rows of ``x``. ``should_stop(i, epoch, logs)`` is
    called after each epoch member ``i`` trains (to report and prune); True freezes it there."""
    import keras

    tf = tensorflow()
    if not members:
        return []
    own_val = [m.val_indices is not None for m in members]
    if any(own_val) and (not all(own_val) or validation is not None):
        raise ValueError("validate on shared data or on every member's own val_indices, not both")
    n_classes = int(n_classes or int(np.max(y)) + 1)
    t0 = time.perf_counter()
    inits, shufflers = [], []
    for m in members:  # what fit_config draws, in the same order
        keras.utils.set_random_seed(m.seed)
        inits.append(keras_model(structure, m, x.shape[1:], n_classes).get_weights())
        n, seed = len(x if m.train_indices is None else m.train_indices), int(np.random.randint(0, 2**31 - 1))
        shufflers.append(tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True).batch(n))
    state = {"w": [np.stack(ws).astype(np.float32) for ws in zip(*inits)]}
    data = {"x": tf.constant(x.reshape(len(x), -1), tf.float32), "y": tf.constant(y, tf.int32)}
    if validation is not None:
        xv, yv = np.asarray(validation[0]), np.asarray(validation[1])
        data.update(xv=tf.constant(xv.reshape(len(xv), -1), tf.float32), yv=tf.constant(yv, tf.int32))
    slots = list(range(len(members)))  # the member in each slot of the pack
    pack = _Pack(structure, members, state, data, jit_compile)
    results = [FusedResult({}, [], 0) for _ in members]
    live = {i for i in slots if members[i].epochs > 0}
    for epoch in range(max(m.epochs for m in members)):
        if not live:
            break
        if len(live) <= len(slots) // 2:  # re-pack the members still training
            _take_weights(pack, slots, [i for i in slots if i not in live], results)
            keep = [s for s, i in enumerate(slots) if i in live]
            slots = [slots[s] for s in keep]
            pack = _Pack(structure, [members[i] for i in slots], pack.state(keep), data, jit_compile)
        orders: list[np.ndarray | None] = [None] * len(slots)
        for s, i in enumerate(slots):
            if i in live:
                this_epoch, *_ = [iter(shufflers[i]) for _ in range(KERAS_PASSES_PER_EPOCH)]
                perm = next(this_epoch).numpy()
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
                **_validate(pack, slots, members, val_batch_size)}
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
