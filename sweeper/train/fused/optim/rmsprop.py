"""Keras's RMSprop ``update_step`` (with and without momentum) on stacked variables, op for op
(keras_mirror.UPDATE_RULES)."""

from __future__ import annotations

from typing import Any, Callable


def rule(tf: Any, w: Any, m: Any, v: Any, g: Any, h: dict[str, Any], t: Any, assign: Callable[[Any, Any], None]) -> None:
    assign(v, h["rho"] * v + h["omrho"] * tf.square(g))
    increment = (h["lr"] * g) / tf.sqrt(v + h["eps"])
    assign(m, h["mom"] * m + increment)  # read only by members with momentum
    assign(w, w - tf.where(h["mom"] > 0, m, increment))
