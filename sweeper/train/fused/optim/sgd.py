"""Keras's SGD ``update_step`` (plain, momentum, Nesterov) on stacked variables, op for op
(keras_mirror.UPDATE_RULES)."""

from __future__ import annotations

from typing import Any, Callable


def rule(tf: Any, w: Any, m: Any, v: Any, g: Any, h: dict[str, Any], t: Any, assign: Callable[[Any, Any], None]) -> None:
    assign(m, m * h["mom"] - g * h["lr"])
    step = tf.where(h["nesterov"] > 0, m * h["mom"] - g * h["lr"], m)
    assign(w, tf.where(h["mom"] != 0, w + step, w - g * h["lr"]))
