"""The stacked model behind fused training (fit.py): K members' weights and optimizer slots as
``(K, ...)`` variables, and their traced train and eval steps: the forward (forward.py: on a CPU
each member on its own layers' ops; under XLA or on a GPU batched: dense layers as batched
matmuls, convolutions grouped), the loss, and each member's update rule (optim/) on the stacked
variables. The layers, their settings and the weight order are read from the family's template
model (structure.py); the ops are in ops/, one module per kind of layer.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sweeper.train.fused import optim
from sweeper.train.fused.forward import Batched, Member, forward
from sweeper.train.fused.ops import loss, per_member
from sweeper.train.fused.ops.conv import CONV_MODES
from sweeper.train.fused.structure import CNNStructure, Structure, layout
from sweeper.train.keras_mirror import correct_rows, dropout_scale
from sweeper.train.runtime import NOT_INLINED, tensorflow

# Traced steps by pack shape (least recently used first), and the Pack attributes they take as
# arguments rather than baking in.
_STEPS: dict[tuple[Any, ...], tuple[Any, Any]] = {}
MAX_STEPS = 16
_TENSORS = ("w", "m", "v", "t", "h", "l2", "rate", "scale", "dseed", "data")


def traced_size(n: int, own_layers: bool, capacity: int | None = None) -> int:
    """The slots a pack of ``n`` members traces its steps for. With each member on its own ops:
    ``capacity`` (the most a pack of the sweep holds), so a sweep's packs share one traced step,
    else ``n`` rounded up to a power of two (re-packs). A trace costs 1.5 to 3 s, as much as 50
    to 100 member-epochs of the notebook MLP; a padding slot costs only its share of the stacked
    update (its member step is skipped), about a twelfth of a member. Batched steps compute
    every slot in full: there, exactly ``n``."""
    if not own_layers:
        return n
    if capacity and n <= capacity:
        return capacity
    return 1 << (n - 1).bit_length() if n > 1 else n


def _padded(members: list[Any], state: dict[str, Any], k: int) -> tuple[list[Any], dict[str, Any]]:
    """``members`` and their stacked ``state`` padded to ``k`` slots with copies of the first
    member (the same optimizer kind: padding adds no update rule to the step)."""
    pad = k - len(members)
    if not pad:
        return members, state
    def grow(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a, np.repeat(a[:1], pad, axis=0)])

    out = {key: [grow(a) for a in arrays] for key, arrays in state.items() if key in ("w", "m", "v")}
    if "t" in state:
        out["t"] = grow(state["t"])
    return members + [members[0]] * pad, out


class Pack:
    """The stacked variables of the members in its slots, and their traced train and eval steps.
    Activations are (K, B, ...) tensors; shared validation rows enter as (B, ...)."""

    def __init__(self, structure: Structure, members: list[Any], state: dict[str, Any],
                 data: dict[str, Any], jit_compile: bool, conv: str = "loop", capacity: int | None = None,
                 kinds: Sequence[str] = ()) -> None:
        tf = self.tf = tensorflow()
        if conv not in CONV_MODES:
            raise ValueError(f"conv must be one of {CONV_MODES}, not {conv!r}")
        # "loop" without XLA: each member runs its Keras layers' ops on its own rows, with a
        # standalone fit's shapes, so its weights equal that fit's bit for bit; XLA (and GPUs)
        # need static shapes: batched.
        self.own_layers = conv == "loop" and not jit_compile
        self.n = len(members)  # the members; slots n..k-1 pad the pack to its traced size
        self.k = traced_size(self.n, self.own_layers, capacity)
        members, state = _padded(members, state, self.k)
        self.structure, self.data, self.conv = structure, data, conv
        self.blocks, self.out, count = layout(structure)
        if count != len(state["w"]):
            raise ValueError(f"the standalone model's weights do not match the fused {type(structure).__name__}")
        self.w = [tf.Variable(a) for a in state["w"]]
        self.moving = {j for b in self.blocks if b.bn is not None for j in (b.bn + 2, b.bn + 3)}
        self.trainable = [j for j in range(len(self.w)) if j not in self.moving]
        zeros = [np.zeros_like(state["w"][j]) for j in self.trainable]  # a new pack's optimizer slots
        self.m, self.v = ([tf.Variable(a) for a in state.get(key, zeros)] for key in ("m", "v"))
        self.t = tf.Variable(state.get("t", np.zeros(self.k, np.float32)))  # each member's optimizer steps
        h = optim.constants(members)
        self.h = {k: tf.constant(v) for k, v in h.items()}
        # The update rules traced: its members' and ``kinds`` (a re-pack keeps its pack's, whose
        # steps are then more often traced already).
        self.kinds = sorted({optim.KINDS[int(c)] for c in h["kind"]} | set(kinds))
        self.l2 = tf.constant([m.l2 for m in members], tf.float32)
        self.has_l2 = any(m.l2 for m in members)
        self.rate = tf.constant([m.dropout for m in members], tf.float32)
        # Dropout's scale as TensorFlow's stateless_dropout computes it from a Python rate.
        self.scale = tf.constant([dropout_scale(m.dropout) for m in members], tf.float32)
        self.has_dropout = any(m.dropout for m in members)
        drops = sum(b.dropout for b in self.blocks)  # (K, dropout layers): each layer's Keras seed
        self.dseed = tf.constant([list(m.dropout_seeds) or [0] * drops for m in members], tf.int64)
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
        n, pad = self.n, self.k - self.n

        def rows(a: np.ndarray) -> np.ndarray:  # a (n, ...) per-member window -> (k, ...): padding is no rows
            return np.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)) if pad and a.ndim > 1 else a

        def train_n(idx: np.ndarray, mask: np.ndarray, update: np.ndarray) -> list[Any]:
            return [o[:n] for o in train_step(tensors, rows(idx), rows(mask), np.pad(update, (0, pad)))]

        def eval_n(idx: np.ndarray, mask: np.ndarray) -> list[Any]:
            return [o[:n] for o in eval_step(tensors, rows(idx), rows(mask))]

        return train_n, eval_n

    def state(self, keep: Sequence[int]) -> dict[str, Any]:
        """The variables of members ``keep``, as NumPy arrays (to re-pack, or a member's weights)."""
        out = {key: [v.numpy()[list(keep)] for v in getattr(self, key)] for key in ("w", "m", "v")}
        return {**out, "t": self.t.numpy()[list(keep)]}

    def forward(self, h: Any, mask: Any = None) -> tuple[Any, dict[int, Any]]:
        """Logits (K, B, classes) of (B, ...) shared or (K, B, ...) per-member inputs; given a
        ``mask`` (training): masked batch norm, dropout, and the new moving statistics."""
        shared = len(h.shape) == (4 if isinstance(self.structure, CNNStructure) else 2)
        layers = Batched(self.tf, self.w, self.k, self.conv, self.structure.activation, shared, mask,
                         mask is not None and self.has_dropout, (self.dseed, self.t, self.rate, self.scale))
        return forward(self.blocks, self.out, layers, h)

    def reg(self) -> Any:
        """Each member's L2 penalty (Keras's L2 on the hidden kernels: l2 * sum(w ** 2))."""
        return loss.penalties(self.tf, [self.w[b.kernel] for b in self.blocks], self.l2, self.k, self.has_l2)

    def _train(self, idx: Any, mask: Any, update: Any) -> tuple[Any, Any, Any]:
        """One step of the members whose ``update`` is set, on rows ``x[idx]`` where ``mask`` is 1.
        Returns per member: loss x rows (Keras's loss: batch mean + L2), correct rows, rows."""
        tf = self.tf
        x, y = tf.gather(self.data["x"], idx), tf.gather(self.data["y"], idx)
        with tf.GradientTape() as tape:
            logits, moving = self.forward(x, mask)
            losses, n = loss.batched(tf, logits, y, mask, self.reg())
            total = tf.reduce_sum(losses)  # member k's part of the gradient is its own loss's
        self._apply(tape.gradient(total, [self.w[j] for j in self.trainable]), moving, update)
        hit = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32)
        return losses * n, tf.reduce_sum(hit * mask, 1), n

    def _apply(self, grads: list[Any], moving: dict[int, Any], update: Any) -> None:
        """The optimizer steps of the members whose ``update`` is set, and their new moving statistics."""
        tf = self.tf
        t = self.t + 1.0
        powers = optim.powers(tf, self.h, t) if {"adam", "radam"} & set(self.kinds) else {}
        # Each kind writes only the slots of its own members being updated.
        slots = {kind: update & tf.equal(self.h["kind"], float(optim.KINDS.index(kind))) for kind in self.kinds}
        for j, g, m, v in zip(self.trainable, grads, self.m, self.v):
            rank = len(g.shape)
            h = {key: per_member(tf, val, self.k, rank) for key, val in {**self.h, **powers}.items()}
            for kind, mine in slots.items():
                on = per_member(tf, mine, self.k, rank)
                optim.RULES[kind](tf, self.w[j], m, v, g, h, per_member(tf, t, self.k, rank),
                                  lambda var, value, on=on: var.assign(tf.where(on, value, var)))
        for j, value in moving.items():
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
    def _each_member(self, step: Callable[..., tuple[Any, ...]], idle: Callable[[list[Any]], tuple[Any, ...]],
                     shapes: list[Any], idx: Any, mask: Any, x_all: Any, y_all: Any) -> list[Any]:
        """``step(weights, x, y, k)`` of every member on its own rows of a padded (K, B) window
        (a (B,) window: the shared rows), as (K, ...) stacks of what it returns (float32 tensors
        of ``shapes``, a member's weights' or scalars' ``[]``). The members run in a
        ``while_loop`` whose body is traced once, so tracing a pack's steps costs about the same
        for 2 members or 64 (unrolled, 16 BN-MLP members took 3 to 4 s). A member without rows
        (frozen, padding, its rows run out) returns ``idle(weights)`` instead (nothing runs on an
        empty batch, which TensorFlow's CPU convolutions refuse): its step is never applied."""
        tf = self.tf
        counts = tf.broadcast_to(tf.cast(tf.reduce_sum(mask, -1), tf.int32), [self.k])
        shared = idx.shape.rank == 1
        if shared:
            rows = idx[:counts[0]]
            x_shared, y_shared = tf.gather(x_all, rows), tf.gather(y_all, rows)

        def run(k: Any) -> tuple[Any, ...]:
            ws = [w[k] for w in self.w]
            if shared:
                x, y = x_shared, y_shared
            else:
                rows = idx[k, :counts[k]]
                x, y = tf.gather(x_all, rows), tf.gather(y_all, rows)
            return tf.cond(counts[k] > 0, lambda: step(ws, x, y, k), lambda: idle(ws))

        arrays = [tf.TensorArray(tf.float32, size=self.k, element_shape=shape) for shape in shapes]

        def body(k: Any, arrays: list[Any]) -> tuple[Any, list[Any]]:
            return k + 1, [a.write(k, o) for a, o in zip(arrays, run(k))]

        _, arrays = tf.while_loop(lambda k, _: k < self.k, body, (tf.constant(0), arrays))
        return [a.stack() for a in arrays]

    def _had_rows(self, mask: Any) -> Any:
        """(K,) 1.0 where a member had rows in this window, else 0.0 (see ``_each_member``)."""
        tf = self.tf
        rows = tf.reduce_sum(mask, -1)
        return tf.cast(tf.broadcast_to(rows, [self.k]) > 0, tf.float32)

    def _member_fn(self, training: bool) -> Callable[..., Any]:
        """One member's step as a nested traced function of its variables and rows, traced once
        and called for every member, so a pack's step traces one member's ops instead of K copies
        (16 MLP members: the train step's first call, tracing included, 1.0 s, where tracing alone
        took 2.5 s before). In training it returns its loss, correct rows, gradients (taken with a
        tape inside, as Keras takes them: the graph gradients of the call itself sum a tensor's
        gradient parts in another order) and new moving statistics; in inference its
        cross-entropy sum, correct rows and rows. Its forward runs the ``Member`` layers."""
        tf, trainable, activation, drops = self.tf, self.trainable, self.structure.activation, self.has_dropout

        def member(ws: list[Any], x: Any, y: Any, dseed: Any, t: Any, rate: Any, scale: Any, l2: Any) -> Any:
            if not training:
                logits, _ = forward(self.blocks, self.out, Member(tf, ws, activation, False, drops), x)
                ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
                return tf.reduce_sum(ce), correct_rows(tf, logits, y), tf.cast(tf.size(y), tf.float32)
            with tf.GradientTape() as tape:
                tape.watch([ws[j] for j in trainable])
                layers = Member(tf, ws, activation, True, drops, (dseed, t, rate, scale))
                logits, moving = forward(self.blocks, self.out, layers, x)
                member_loss = loss.member(tf, logits, y, [ws[b.kernel] for b in self.blocks], l2, self.has_l2)
            grads = tape.gradient(member_loss, [ws[j] for j in trainable])
            return (member_loss, correct_rows(tf, logits, y), *grads, *(moving[j] for j in sorted(moving)))

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
        positions = sorted(b.bn + n for b in self.blocks if b.bn is not None for n in (2, 3))
        losses, hits, *rest = self._each_member(
            lambda ws, x, y, k: member(ws, x, y, *self._member_args(k)),
            lambda ws: (tf.constant(0.0), tf.constant(0.0), *(tf.zeros_like(ws[j]) for j in self.trainable),
                        *(ws[j] for j in positions)),
            [[], [], *(self.w[j].shape[1:] for j in [*self.trainable, *positions])],
            idx, mask, self.data["x"], self.data["y"])
        grads, moving = rest[:len(self.trainable)], rest[len(self.trainable):]
        self._apply(grads, dict(zip(positions, moving)), update)
        n = tf.reduce_sum(mask, 1)
        return losses * n, hits * self._had_rows(mask), n

    def _eval_own(self, idx: Any, mask: Any) -> tuple[Any, Any, Any]:
        """``_eval`` with each member on its own ops (inference mode)."""
        tf, shared = self.tf, idx.shape.rank == 1
        x_all, y_all = (self.data["xv"], self.data["yv"]) if shared else (self.data["x"], self.data["y"])
        member = self._member_fn(training=False)
        out = self._each_member(lambda ws, x, y, k: member(ws, x, y, *self._member_args(k)),
                                lambda ws: (tf.constant(0.0),) * 3, [[], [], []], idx, mask, x_all, y_all)
        had = self._had_rows(mask)
        return tuple(v * had for v in out)
