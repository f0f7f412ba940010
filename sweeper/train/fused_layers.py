"""The stacked model behind fused training (sweeper/train/fused.py): K members' weights as
``(K, ...)`` variables, their forward pass (on a CPU each member on its own layers' ops; under XLA
or on a GPU batched: dense layers as batched matmuls, convolutions grouped), their optimizers'
update rules on the stacked variables, and the traced train and eval steps. The layers, their
settings and the weight order are read from the family's template model (fused_structure.py);
what it assumes about Keras's ops is in keras_mirror.py (``LAYER_OPS``: the member ops below).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sweeper.train.fused_structure import Block, CNNStructure, Structure, layout
from sweeper.train.keras_mirror import (
    OPTIMIZER_DEFAULTS,
    batch_normalization,
    batchnorm_moments,
    batchnorm_moving,
    correct_rows,
    dropout_scale,
    dropout_seed,
    keras_dropout,
)
from sweeper.train.keras_mirror import optimizer_constants as hyper
from sweeper.train.keras_mirror import update_rules as rules
from sweeper.train.runtime import NOT_INLINED, tensorflow

# The options a member may give each optimizer, with Keras's (and sweeper's RAdam) defaults.
OPTIONS: dict[str, dict[str, float]] = OPTIMIZER_DEFAULTS
KINDS = tuple(OPTIONS)
CONV_MODES = ("loop", "grouped")


# Traced steps by pack shape (least recently used first), and the Pack attributes they take as
# arguments rather than baking in.
_STEPS: dict[tuple[Any, ...], tuple[Any, Any]] = {}
MAX_STEPS = 16
_TENSORS = ("w", "m", "v", "t", "h", "l2", "rate", "scale", "dseed", "data")


class Pack:
    """The stacked variables of the members in its slots, and their traced train and eval steps.
    Activations are (K, B, ...) tensors; shared validation rows enter as (B, ...)."""

    def __init__(self, structure: Structure, members: list[Any], state: dict[str, Any],
                 data: dict[str, Any], jit_compile: bool, conv: str = "loop") -> None:
        tf = self.tf = tensorflow()
        if conv not in CONV_MODES:
            raise ValueError(f"conv must be one of {CONV_MODES}, not {conv!r}")
        self.structure, self.data, self.k, self.conv = structure, data, len(members), conv
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
        self.rules = rules(tf)
        self.l2 = tf.constant([m.l2 for m in members], tf.float32)
        self.has_l2 = any(m.l2 for m in members)
        self.rate = tf.constant([m.dropout for m in members], tf.float32)
        # Dropout's scale as TensorFlow's stateless_dropout computes it from a Python rate.
        self.scale = tf.constant([dropout_scale(m.dropout) for m in members], tf.float32)
        self.has_dropout = any(m.dropout for m in members)
        drops = sum(b.dropout for b in self.blocks)  # (K, dropout layers): each layer's Keras seed
        self.dseed = tf.constant([list(m.dropout_seeds) or [0] * drops for m in members], tf.int64)
        # "loop" without XLA: each member runs its Keras layers' ops on its own rows, with a
        # standalone fit's shapes, so its weights equal that fit's bit for bit; XLA (and GPUs)
        # need static shapes: batched.
        self.own_layers = conv == "loop" and not jit_compile
        self.train, self.eval = self._steps(jit_compile)

    def _steps(self, jit_compile: bool) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """The traced train and eval steps, shared by every pack of the same shape: its variables
        and constants are arguments, so the next pack of K members of this structure (the usual
        case in a sweep) runs without tracing again. Only Python-level facts are in the key."""
        key = (self.structure, self.k, tuple(self.kinds), self.conv, self.own_layers, jit_compile,
               self.has_dropout, self.has_l2)
        if key not in _STEPS:
            proto = copy.copy(self)  # the Python-level facts; the tensors come with each call
            for name in _TENSORS:
                setattr(proto, name, None)

            def bind(tensors: dict[str, Any]) -> Pack:
                view = copy.copy(proto)
                view.__dict__.update(tensors)
                return view

            train, evaluate = (Pack._train_own, Pack._eval_own) if self.own_layers else (Pack._train, Pack._eval)
            # No autograph: the steps' Python loops run over members and layers, never over
            # tensors, and converting them took about 40 % of the tracing time.
            options = {"jit_compile": jit_compile, "autograph": False}
            _STEPS[key] = (
                self.tf.function(lambda tensors, idx, mask, update: train(bind(tensors), idx, mask, update), **options),
                self.tf.function(lambda tensors, idx, mask: evaluate(bind(tensors), idx, mask), **options))
            while len(_STEPS) > MAX_STEPS:
                _STEPS.pop(next(iter(_STEPS)))
        _STEPS[key] = _STEPS.pop(key)  # most recently used last
        train_step, eval_step = _STEPS[key]
        tensors = {name: getattr(self, name) for name in _TENSORS}
        return (lambda idx, mask, update: train_step(tensors, idx, mask, update),
                lambda idx, mask: eval_step(tensors, idx, mask))

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

    def _pool(self, h: Any, size: int) -> Any:
        """Keras's MaxPooling2D(2) ('valid') on (K, B, H, W, C)."""
        tf, (rows, cols, c) = self.tf, h.shape[2:]
        y = tf.nn.max_pool2d(tf.reshape(h, [-1, rows, cols, c]), size, size, "VALID")
        return tf.reshape(y, [self.k, -1, rows // size, cols // size, c])

    def _batchnorm(self, h: Any, block: Block, mask: Any, moving: list[tuple[int, Any]]) -> Any:
        """Keras's BatchNormalization (the template's momentum and epsilon) per member: over its
        rows (and pixels) where ``mask`` is 1 in training, with its moving statistics otherwise."""
        tf, w, rank, j, momentum = self.tf, self.w, len(h.shape), block.bn, block.bn_momentum
        gamma, beta, mean, var = (self._c(w[j + n], rank) for n in range(4))
        if mask is not None:
            axes = list(range(1, rank - 1))
            m = tf.reshape(mask, [self.k, -1] + [1] * (rank - 2))
            pixels = float(np.prod(h.shape[2:-1])) if rank > 3 else 1.0
            count = tf.maximum(tf.reduce_sum(m, axes, keepdims=True) * pixels, 1.0)
            mean = tf.reduce_sum(h * m, axes, keepdims=True) / count
            var = tf.reduce_sum(tf.square(h - tf.stop_gradient(mean)) * m, axes, keepdims=True) / count
            flat = [tf.reshape(a, [self.k, -1]) for a in (mean, var)]
            moving += [(j + 2, batchnorm_moving(w[j + 2], flat[0], momentum)),
                       (j + 3, batchnorm_moving(w[j + 3], flat[1], momentum))]
        return batch_normalization(tf, h, mean, var, beta, gamma, block.bn_epsilon)

    def _activate(self, h: Any, block: Block) -> Any:
        tf, name = self.tf, self.structure.activation
        if block.prelu is not None:  # alpha: (K, *features), one per unit (and pixel)
            return tf.nn.relu(h) - self.w[block.prelu][:, None] * tf.nn.relu(-h)
        if name == "leaky_relu":
            return tf.nn.leaky_relu(h, alpha=block.slope)
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
                h = self._batchnorm(h, block, mask, moving)
            h = self._activate(h, block)
            if block.dropout and mask is not None and self.has_dropout:
                h = h * tf.stack([self._keep(k, tf.shape(h)[1:], drop) for k in range(self.k)])
            drop += block.dropout
            if block.pool:
                h = self._pool(h, block.pool_size)
        return self._dense(h, self.out, False), moving

    def _keep(self, k: int, shape: Any, layer: int) -> Any:
        """Member ``k``'s dropout multiplier (0 or its scale) at dropout layer ``layer``: the mask
        ``stateless_dropout`` draws for Keras's Dropout at this step (seed [layer seed, steps so
        far]). Its rows come first in the step's (B, ...) window, and the draw for fewer rows is a
        prefix of the draw for B. Rate 0 keeps every unit, at scale 1."""
        tf, seed = self.tf, dropout_seed(self.tf, self.dseed[k, layer], self.t[k])
        return tf.cast(tf.random.stateless_uniform(shape, seed=seed) >= self.rate[k], tf.float32) * self.scale[k]

    def reg(self) -> Any:
        """Each member's L2 penalty (Keras's L2 on the hidden kernels: l2 * sum(w ** 2))."""
        tf = self.tf
        if not self.has_l2:
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
        self._apply(tape.gradient(total, [self.w[j] for j in self.trainable]), moving, update)
        hit = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32)
        return loss * n, tf.reduce_sum(hit * mask, 1), n

    def _apply(self, grads: list[Any], moving: list[tuple[int, Any]], update: Any) -> None:
        """The optimizer steps of the members whose ``update`` is set, and their new moving statistics."""
        tf = self.tf
        t = self.t + 1.0
        # beta ** step one member at a time: on 8 or more values at once Eigen's vectorized pow
        # rounds differently from the scalar pow of a standalone optimizer step.
        powers = {f"{b}p": tf.stack([tf.pow(beta, s) for beta, s in zip(tf.unstack(self.h[b]), tf.unstack(t))])
                  for b in ("b1", "b2")} if {"adam", "radam"} & set(self.kinds) else {}
        # Each kind writes only the slots of its own members being updated.
        slots = {kind: update & tf.equal(self.h["kind"], float(KINDS.index(kind))) for kind in self.kinds}
        for j, g, m, v in zip(self.trainable, grads, self.m, self.v):
            rank = len(g.shape)
            h = {key: self._b(val, rank) for key, val in {**self.h, **powers}.items()}
            for kind, mine in slots.items():
                on = self._b(mine, rank)
                self.rules[kind](self.w[j], m, v, g, h, self._b(t, rank),
                                 lambda var, value, on=on: var.assign(tf.where(on, value, var)))
        for j, value in moving:
            self.w[j].assign(tf.where(update[:, None], value, self.w[j]))
        self.t.assign(tf.where(update, t, self.t))

    def _eval(self, idx: Any, mask: Any) -> tuple[Any, Any, Any]:
        """Per member CE sum, correct rows, rows: of shared validation if ``idx`` is (B,), else of x."""
        tf, shared = self.tf, idx.shape.rank == 1
        x, y = (self.data["xv"], self.data["yv"]) if shared else (self.data["x"], self.data["y"])
        logits, _ = self.forward(tf.gather(x, idx))
        y = tf.gather(y, idx)
        if shared:
            y, mask = (tf.broadcast_to(a, [self.k, tf.shape(a)[0]]) for a in (y, mask))
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        return tf.reduce_sum(ce * mask, 1), correct_rows(tf, logits, y, mask, 1), tf.reduce_sum(mask, 1)

    # ------------------------------------------------------- each member on its own (loop mode)
    def _forward_own(self, w: list[Any], h: Any, training: bool,
                     dropout: tuple[Any, ...] = ()) -> tuple[Any, dict[int, Any]]:
        """One member's logits on its rows ``h`` (only those: a partial batch stays partial), with
        its variables ``w``: the ops, shapes and constants its Keras layers run (Dense, Conv2D,
        BatchNormalization, the activations, Dropout, MaxPooling2D), so its forward and backward
        pass are those of the same model fitted alone. ``dropout`` (training): its Dropout layers'
        seeds, optimizer steps, rate and scale. In training, also its batch norm layers' new moving
        statistics, by weight position."""
        import keras

        tf, ops = self.tf, keras.ops
        moving: dict[int, Any] = {}
        drop = 0  # dropout layers passed
        for block in self.blocks:
            if block.kind == "conv":
                h = ops.conv(h, w[block.kernel], strides=1, padding="same")
                h = ops.add(h, ops.reshape(w[block.kernel + 1], (1, 1, 1, -1)))
            else:
                if len(h.shape) > 2:  # Flatten
                    h = ops.reshape(h, (-1, int(np.prod(h.shape[1:]))))
                h = ops.add(ops.matmul(h, w[block.kernel]), w[block.kernel + 1])
            if block.bn is not None:  # BatchNormalization with the template's momentum and epsilon
                gamma, beta, mean, var = w[block.bn:block.bn + 4]
                if training:
                    batch_mean, batch_var = batchnorm_moments(tf, h)
                    moving[block.bn + 2] = batchnorm_moving(mean, batch_mean, block.bn_momentum)
                    moving[block.bn + 3] = batchnorm_moving(var, batch_var, block.bn_momentum)
                    mean, var = batch_mean, batch_var
                h = batch_normalization(tf, h, mean, var, beta, gamma, block.bn_epsilon)
            h = self._activate_own(h, w, block)
            if block.dropout and training and self.has_dropout:
                # Keras's Dropout at its seed generator's state [seed, steps so far], with the
                # rate a tensor of the pack. A member without dropout has rate 0 and scale 1: h
                # itself, bit for bit.
                dseed, t, rate, scale = dropout
                h = keras_dropout(tf, h, dseed[drop], t, rate, scale)
            drop += block.dropout
            if block.pool:
                h = ops.max_pool(h, pool_size=block.pool_size, strides=block.pool_size, padding="valid")
        return ops.add(ops.matmul(h, w[self.out]), w[self.out + 1]), moving

    def _activate_own(self, h: Any, w: list[Any], block: Block) -> Any:
        import keras

        if block.prelu is not None:  # PReLU: relu(x) + (-alpha * relu(-x))
            return keras.activations.relu(h) + -w[block.prelu] * keras.activations.relu(-h)
        if block.slope is not None:  # LeakyReLU(negative_slope=the template's)
            return keras.activations.leaky_relu(h, negative_slope=block.slope)
        return keras.activations.get(self.structure.activation)(h)

    def _loss_own(self, w: list[Any], logits: Any, y: Any, l2: Any) -> Any:
        """Keras's ``compute_loss`` for one member with variables ``w``: sparse cross-entropy summed
        over its rows and divided by their count (sum_over_batch_size), plus its kernels' L2
        penalties if any. One op per member: over all members' rows at once it rounded
        differently (row offsets)."""
        tf = self.tf
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(y, tf.int64), logits=logits)
        loss = tf.math.divide_no_nan(tf.reduce_sum(ce), tf.cast(tf.size(ce), tf.float32))
        if self.has_l2:  # a member without L2 adds zeros: its loss and gradient stay the same
            penalties = (l2 * tf.reduce_sum(tf.square(w[b.kernel])) for b in self.blocks)
            loss = tf.reduce_sum(tf.stack([loss, *penalties]))
        return loss

    def _own_rows(self, idx: Any, mask: Any) -> list[Any]:
        """Each member's real rows of a padded (K, B) window; one list entry, the shared rows,
        for a (B,) window."""
        tf = self.tf
        counts = tf.unstack(tf.cast(tf.reshape(tf.reduce_sum(mask, -1), [-1]), tf.int32))
        if idx.shape.rank == 1:
            return [idx[:counts[0]]]
        return [idx[k, :n] for k, n in enumerate(counts)]

    def _member_fn(self, training: bool) -> Callable[..., Any]:
        """One member's step as a nested traced function of its variables and rows, traced once
        and called for every member, so a pack's step traces one member's ops instead of K copies
        (16 MLP members: the train step's first call, tracing included, 1.0 s, where tracing alone
        took 2.5 s before). In training it returns its loss, correct rows, gradients (taken with a
        tape inside, as Keras takes them: the graph gradients of the call itself sum a tensor's
        gradient parts in another order) and new moving statistics; in inference its
        cross-entropy sum, correct rows and rows. The ops are those of ``_forward_own`` /
        ``_loss_own``."""
        tf, trainable = self.tf, self.trainable

        def member(ws: list[Any], x: Any, y: Any, dseed: Any, t: Any, rate: Any, scale: Any, l2: Any) -> Any:
            if not training:
                logits, _ = self._forward_own(ws, x, training=False)
                ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
                return tf.reduce_sum(ce), correct_rows(tf, logits, y), tf.cast(tf.size(y), tf.float32)
            with tf.GradientTape() as tape:
                tape.watch([ws[j] for j in trainable])
                logits, moving = self._forward_own(ws, x, training=True, dropout=(dseed, t, rate, scale))
                loss = self._loss_own(ws, logits, y, l2)
            grads = tape.gradient(loss, [ws[j] for j in trainable])
            return (loss, correct_rows(tf, logits, y), *grads, *(moving[j] for j in sorted(moving)))

        # Not inlined: TensorFlow then optimizes the one body once, not K inlined copies when a
        # pack's step is first run (16 MLP members: 1.0 s instead of 2.0 s; 64: grappler took
        # 7 s and more); the steps run as fast.
        return tf.function(member, autograph=False, experimental_attributes=dict(NOT_INLINED))

    def _member_args(self, k: int) -> list[Any]:
        """Member ``k``'s per-member tensors, in ``_member_fn``'s order."""
        return [self.dseed[k], self.t[k], self.rate[k], self.scale[k], self.l2[k]]

    def _train_own(self, idx: Any, mask: Any, update: Any) -> tuple[Any, Any, Any]:
        """``_train`` with each member on its own ops (``_member_fn``)."""
        tf = self.tf
        member = self._member_fn(training=True)
        rows = self._own_rows(idx, mask)
        xs, ys = ([tf.gather(self.data[key], r) for r in rows] for key in ("x", "y"))
        per = [tf.unstack(w, self.k) for w in self.w]
        outs = [member([p[k] for p in per], xs[k], y, *self._member_args(k)) for k, y in enumerate(ys)]
        losses, hits, *rest = (tf.stack(parts) for parts in zip(*outs))  # (K, ...) each
        grads, moving = rest[:len(self.trainable)], rest[len(self.trainable):]
        positions = sorted(b.bn + n for b in self.blocks if b.bn is not None for n in (2, 3))
        self._apply(grads, list(zip(positions, moving)), update)
        n = tf.reduce_sum(mask, 1)
        return losses * n, hits, n

    def _eval_own(self, idx: Any, mask: Any) -> tuple[Any, Any, Any]:
        """``_eval`` with each member on its own ops (inference mode)."""
        tf, shared = self.tf, idx.shape.rank == 1
        x_all, y_all = (self.data["xv"], self.data["yv"]) if shared else (self.data["x"], self.data["y"])
        member = self._member_fn(training=False)
        per = [tf.unstack(w, self.k) for w in self.w]
        rows = self._own_rows(idx, mask)
        xs, ys = [tf.gather(x_all, r) for r in rows], [tf.gather(y_all, r) for r in rows]
        out = [member([p[k] for p in per], *((xs[0], ys[0]) if shared else (xs[k], ys[k])),  # shared: gathered once
                      *self._member_args(k)) for k in range(self.k)]
        return tuple(tf.stack(v) for v in zip(*out))

