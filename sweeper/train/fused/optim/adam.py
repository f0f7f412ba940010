"""Keras's Adam ``update_step`` on stacked variables, op for op (keras_mirror.UPDATE_RULES)."""

from __future__ import annotations

from typing import Any, Callable


def rule(tf: Any, w: Any, m: Any, v: Any, g: Any, h: dict[str, Any], t: Any, assign: Callable[[Any, Any], None]) -> None:
    alpha = h["lr"] * tf.sqrt(1 - h["b2p"]) / (1 - h["b1p"])
    assign(m, m + (g - m) * h["omb1"])
    assign(v, v + (tf.square(g) - v) * h["omb2"])
    assign(w, w - (m * alpha) / (tf.sqrt(v) + h["eps"]))
