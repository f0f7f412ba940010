"""The stacked model behind fused training (sweeper/train/fused.py): K members' weights as
``(K, ...)`` variables, their forward pass (dense layers as batched matmuls, convolutions one per
member or grouped), their optimizers' update rules on the stacked variables, and the traced train
and eval steps. Layer order and weight order are those of ``build_mlp`` / ``build_cnn``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
KINDS = tuple(OPTIONS)
CONV_MODES = ("loop", "grouped")


@dataclass(frozen=True)
class MLPStructure:
    """What all members of a pack share: ``build_mlp``'s structural arguments."""

    units: int = 64
    batchnorm: bool = False
    activation: str = "relu"
    kernel_initializer: str = "glorot_uniform"


@dataclass(frozen=True)
class CNNStructure:
    """``build_cnn``'s structural arguments: Conv(filters) -> pool -> Conv(2 filters) -> pool ->
    Dense(units) -> dropout -> softmax."""

    filters: int = 32
    units: int = 128
    batchnorm: bool = False
    activation: str = "relu"
    kernel_initializer: str = "glorot_uniform"


Structure = MLPStructure | CNNStructure


@dataclass(frozen=True)
class Block:
    """One hidden block: conv or dense [+ BN] + activation [+ dropout] [+ 2x2 max pool]; the
    positions of its weights in the Keras weight list."""

    kind: str  # "conv" or "dense"
    kernel: int  # its kernel; the bias follows
    bn: int | None  # gamma; beta, moving mean and moving variance follow
    prelu: int | None  # PReLU's alpha
    dropout: bool
    pool: bool


def layout(structure: Structure) -> tuple[list[Block], int, int]:
    """The hidden blocks, the output kernel's position and the weight count."""
    kinds = ["conv", "conv", "dense"] if isinstance(structure, CNNStructure) else ["dense"] * 3
    blocks, i = [], 0
    for kind in kinds:
        kernel, i = i, i + 2
        bn = i if structure.batchnorm else None
        i += 4 if structure.batchnorm else 0
        prelu = i if structure.activation == "prelu" else None
        i += prelu is not None
        blocks.append(Block(kind, kernel, bn, prelu, dropout=kind == "dense", pool=kind == "conv"))
    return blocks, i, i + 2


def rules(tf: Any) -> dict[str, Callable[..., tuple[Any, Any, Any]]]:
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


def hyper(members: Sequence[Any]) -> dict[str, np.ndarray]:
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


class Pack:
    """The stacked variables of the members in its slots, and their traced train and eval steps.
    Activations are (K, B, ...) tensors; shared validation rows enter as (B, ...)."""

    def __init__(self, structure: Structure, members: list[Any], state: dict[str, Any],
                 data: dict[str, Any], jit_compile: bool, conv: str = "loop") -> None:
        tf = self.tf = tensorflow()
        if conv not in CONV_MODES:
            raise ValueError(f"conv must be one of {CONV_MODES}, not {conv!r}")
        self.structure, self.members, self.data, self.k, self.conv = structure, members, data, len(members), conv
        self.blocks, self.out, count = layout(structure)
        if count != len(state["w"]):
            raise ValueError(f"the standalone model's weights do not match the fused {type(structure).__name__}")
        self.w = [tf.Variable(a) for a in state["w"]]
        self.moving = {j for b in self.blocks if b.bn is not None for j in (b.bn + 2, b.bn + 3)}
        self.trainable = [j for j in range(len(self.w)) if j not in self.moving]
        zeros = [np.zeros_like(state["w"][j]) for j in self.trainable]  # a new pack's optimizer slots
        self.m, self.v = ([tf.Variable(a) for a in state.get(key, zeros)] for key in ("m", "v"))
        self.t = tf.Variable(state.get("t", np.zeros(self.k, np.float32)))  # each member's optimizer steps
        h = hyper(members)
        self.h = {k: tf.constant(v) for k, v in h.items()}
        self.kinds = sorted({KINDS[int(c)] for c in h["kind"]})
        self.rules, self.rates = rules(tf), [m.dropout for m in members]
        self.l2 = tf.constant([m.l2 for m in members], tf.float32)
        drops = sum(b.dropout for b in self.blocks)  # (K, dropout layers): each layer's Keras seed
        self.dseed = tf.constant([list(m.dropout_seeds) or [0] * drops for m in members], tf.int64)
        # Closures, not bound methods: TF counts traces of one method across packs as retracing.
        # No autograph: the steps' Python loops run over members and layers, never over tensors,
        # and converting them took about 40 % of the tracing time (6 of 16 s over four traces).
        self.train = tf.function(lambda idx, mask, update: self._train(idx, mask, update), jit_compile=jit_compile,
                                 autograph=False)
        self.eval = tf.function(lambda idx, mask: self._eval(idx, mask), jit_compile=jit_compile, autograph=False)

    def state(self, keep: Sequence[int]) -> dict[str, Any]:
        """The variables of slots ``keep``, as NumPy arrays (to re-pack, or a member's weights)."""
        out = {key: [v.numpy()[list(keep)] for v in getattr(self, key)] for key in ("w", "m", "v")}
        return {**out, "t": self.t.numpy()[list(keep)]}

    def _b(self, vec: Any, rank: int) -> Any:
        """(K,) -> (K, 1, ..., 1) of ``rank`` dimensions."""
        return self.tf.reshape(vec, [self.k] + [1] * (rank - 1))

    def _c(self, vec: Any, rank: int) -> Any:
        """(K, C) per-channel weights -> (K, 1, ..., 1, C), against (K, B, ..., C) activations."""
        return self.tf.reshape(vec, [self.k] + [1] * (rank - 2) + [vec.shape[-1]])

    def _dense(self, h: Any, j: int, shared: bool) -> Any:
        """(B, in) shared rows or (K, B, in) per-member rows -> (K, B, out)."""
        tf = self.tf
        out = tf.einsum("bi,kio->kbo", h, self.w[j]) if shared else tf.linalg.matmul(h, self.w[j])
        return out + self.w[j + 1][:, None, :]

    def _conv(self, h: Any, j: int, shared: bool) -> Any:
        """(B, H, W, C) shared or (K, B, H, W, C) per-member images -> (K, B, H, W, F), 'same'
        padding. "loop": one conv per member (on CPU the fastest: TF has no grouped-conv gradient
        there, and a grouped forward ran 2.4x slower than K convs); "grouped": the members stacked
        along channels, one grouped conv (cuDNN's; on CPU only under XLA)."""
        tf, kernel = self.tf, self.w[j]
        if self.conv == "loop":
            xs = [h] * self.k if shared else tf.unstack(h, self.k)
            out = tf.stack([tf.nn.conv2d(x, kernel[k], 1, "SAME") for k, x in enumerate(xs)])
        else:
            _, _, c, f = kernel.shape[1:]
            stacked = tf.reshape(tf.transpose(kernel, [1, 2, 3, 0, 4]), [3, 3, c, self.k * f])
            rows, cols = h.shape[-3:-1]
            if not shared:  # (K, B, H, W, C) -> (B, H, W, K*C): member k's channels are group k
                h = tf.reshape(tf.transpose(h, [1, 2, 3, 0, 4]), [-1, rows, cols, self.k * c])
            y = tf.reshape(tf.nn.conv2d(h, stacked, 1, "SAME"), [-1, rows, cols, self.k, f])
            out = tf.transpose(y, [3, 0, 1, 2, 4])
        return out + self._c(self.w[j + 1], 5)

    def _pool(self, h: Any) -> Any:
        """Keras's MaxPooling2D(2) ('valid') on (K, B, H, W, C)."""
        tf, (rows, cols, c) = self.tf, h.shape[2:]
        y = tf.nn.max_pool2d(tf.reshape(h, [-1, rows, cols, c]), 2, 2, "VALID")
        return tf.reshape(y, [self.k, -1, rows // 2, cols // 2, c])

    def _batchnorm(self, h: Any, j: int, mask: Any, moving: list[tuple[int, Any]]) -> Any:
        """Keras's BatchNormalization(momentum=0.9, epsilon=1e-3) per member: over its rows (and
        pixels) where ``mask`` is 1 in training, with its moving statistics otherwise."""
        tf, w, rank = self.tf, self.w, len(h.shape)
        gamma, beta, mean, var = (self._c(w[j + n], rank) for n in range(4))
        if mask is not None:
            axes = list(range(1, rank - 1))
            m = tf.reshape(mask, [self.k, -1] + [1] * (rank - 2))
            pixels = float(np.prod(h.shape[2:-1])) if rank > 3 else 1.0
            count = tf.maximum(tf.reduce_sum(m, axes, keepdims=True) * pixels, 1.0)
            mean = tf.reduce_sum(h * m, axes, keepdims=True) / count
            var = tf.reduce_sum(tf.square(h - tf.stop_gradient(mean)) * m, axes, keepdims=True) / count
            flat = [tf.reshape(a, [self.k, -1]) for a in (mean, var)]
            moving += [(j + 2, w[j + 2] * 0.9 + flat[0] * (1.0 - 0.9)), (j + 3, w[j + 3] * 0.9 + flat[1] * (1.0 - 0.9))]
        return tf.nn.batch_normalization(h, mean, var, beta, gamma, 1e-3)

    def _activate(self, h: Any, block: Block) -> Any:
        tf, name = self.tf, self.structure.activation
        if block.prelu is not None:  # alpha: (K, *features), one per unit (and pixel)
            return tf.nn.relu(h) - self.w[block.prelu][:, None] * tf.nn.relu(-h)
        if name == "leaky_relu":
            return tf.nn.leaky_relu(h, alpha=0.1)
        import keras

        return keras.activations.get(name)(h)

    def forward(self, h: Any, mask: Any = None) -> tuple[Any, list[tuple[int, Any]]]:
        """Logits (K, B, classes) of (B, ...) shared or (K, B, ...) per-member inputs; given a
        ``mask`` (training): masked batch norm, dropout, and the new moving statistics."""
        tf, moving = self.tf, []
        shared = len(h.shape) == (4 if isinstance(self.structure, CNNStructure) else 2)
        drop = 0  # dropout layers passed
        for block in self.blocks:
            if block.kind == "dense" and len(h.shape) > 3:  # Flatten: (K, B, H, W, C) -> (K, B, H*W*C)
                h = tf.reshape(h, [self.k, -1, int(np.prod(h.shape[2:]))])
            h = (self._conv if block.kind == "conv" else self._dense)(h, block.kernel, shared)
            shared = False
            if block.bn is not None:
                h = self._batchnorm(h, block.bn, mask, moving)
            h = self._activate(h, block)
            if block.dropout and mask is not None and any(self.rates):
                h = h * tf.stack([self._keep(k, tf.shape(h)[1:], drop) for k in range(self.k)])
            drop += block.dropout
            if block.pool:
                h = self._pool(h)
        return self._dense(h, self.out, False), moving

    def _keep(self, k: int, shape: Any, layer: int) -> Any:
        """Member ``k``'s dropout multiplier (0 or 1 / (1 - rate)) at dropout layer ``layer``: the
        mask ``stateless_dropout`` draws for Keras's Dropout at this step (seed [layer seed, steps
        so far]). Its rows come first in the step's (B, ...) window, and the draw for fewer rows is
        a prefix of the draw for B (a partial last batch gets Keras's mask too)."""
        tf, rate = self.tf, self.rates[k]
        if not rate:
            return tf.ones(shape)
        seed = tf.stack([self.dseed[k, layer], tf.cast(self.t[k], tf.int64)])
        return tf.cast(tf.random.stateless_uniform(shape, seed=seed) >= rate, tf.float32) / (1.0 - rate)

    def reg(self) -> Any:
        """Each member's L2 penalty (Keras's L2 on the hidden kernels: l2 * sum(w ** 2))."""
        tf = self.tf
        if not any(m.l2 for m in self.members):
            return tf.zeros([self.k])
        sums = [tf.reduce_sum(tf.square(self.w[b.kernel]), list(range(1, len(self.w[b.kernel].shape))))
                for b in self.blocks]
        return self.l2 * tf.add_n(sums)

    def _train(self, idx: Any, mask: Any, update: Any) -> tuple[Any, Any, Any]:
        """One step of the members whose ``update`` is set, on rows ``x[idx]`` where ``mask`` is 1.
        Returns per member: loss x rows (Keras's loss: batch mean + L2), correct rows, rows."""
        tf = self.tf
        x, y = tf.gather(self.data["x"], idx), tf.gather(self.data["y"], idx)
        with tf.GradientTape() as tape:
            logits, moving = self.forward(x, mask)
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
        logits, _ = self.forward(tf.gather(x, idx))
        y = tf.gather(y, idx)
        if shared:
            y, mask = (tf.broadcast_to(a, [self.k, tf.shape(a)[0]]) for a in (y, mask))
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        hit = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32)
        return tf.reduce_sum(ce * mask, 1), tf.reduce_sum(hit * mask, 1), tf.reduce_sum(mask, 1)
