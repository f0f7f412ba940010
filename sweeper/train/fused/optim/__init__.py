"""The members' optimizers on stacked variables: one module per optimizer (adam, rmsprop, sgd,
radam), each its optimizer's ``update_step`` op for op on ``(K, ...)`` variables, with the same
float32 constants (keras_mirror.UPDATE_RULES). Every rule has one signature:
``rule(tf, w, m, v, g, h, t, assign)``: variable, first and second slot, gradient, the members'
constants broadcast against them (``constants``, ``powers``), their step counts, and ``assign``,
which writes only the slots of the members being updated.

The rules keep their optimizer's variable writes and reads where it has them: a read after a
write keeps TensorFlow's graph optimizer from merging the expressions on either side of it,
which it may do only where Keras's graph lets it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sweeper.train.fused.optim import adam, radam, rmsprop, sgd
from sweeper.train.keras_mirror import OPTIMIZER_DEFAULTS

Assign = Callable[[Any, Any], None]  # (variable, value): set the slots of the members being updated
Rule = Callable[..., None]  # (tf, w, m, v, g, h, t, assign)

# The options a member may give each optimizer, with Keras's (and sweeper's RAdam) defaults.
OPTIONS: dict[str, dict[str, float]] = OPTIMIZER_DEFAULTS
KINDS = tuple(OPTIONS)
RULES: dict[str, Rule] = {"adam": adam.rule, "rmsprop": rmsprop.rule, "sgd": sgd.rule, "radam": radam.rule}


def constants(members: Sequence[Any]) -> dict[str, np.ndarray]:
    """Per-member optimizer constants, as float32 vectors, computed as the optimizers compute them."""
    rows = []
    for member in members:
        kind = member.optimizer.lower()
        if kind not in OPTIONS or set(member.optimizer_options) - set(OPTIONS[kind]):
            raise ValueError(f"{member.optimizer} {member.optimizer_options} is not fused: {OPTIONS}")
        o = {**OPTIONS[kind], **member.optimizer_options}
        b1, b2, rho = o.get("beta_1", 0.9), o.get("beta_2", 0.999), o.get("rho", 0.9)
        if kind == "radam":  # sweeper's RAdam takes 1 - beta in float32
            b1, b2 = np.float32(b1), np.float32(b2)
        rows.append({"lr": member.learning_rate, "b1": b1, "omb1": 1 - b1, "b2": b2, "omb2": 1 - b2,
                     "eps": o.get("epsilon", 1e-7), "rho": rho, "omrho": 1 - rho, "mom": o.get("momentum", 0.0),
                     "nesterov": o.get("nesterov", 0.0), "kind": KINDS.index(kind)})
    return {k: np.asarray([float(r[k]) for r in rows], np.float32) for k in rows[0]}


def powers(tf: Any, h: dict[str, Any], t: Any) -> dict[str, Any]:
    """``beta ** step`` (keys b1p, b2p) one member at a time: on 8 or more values at once Eigen's
    vectorized pow rounds differently from the scalar pow of a standalone optimizer step."""
    return {f"{b}p": tf.stack([tf.pow(beta, s) for beta, s in zip(tf.unstack(h[b]), tf.unstack(t))])
            for b in ("b1", "b2")}
