"""Sweeper's RAdam (train/optimizers.py) on stacked variables: Adam's moment updates, then the
rectified step written once in ``optimizers.rectified_step``, which sweeper's Keras RAdam takes
too (with ``keras.ops``; here with TensorFlow's ops on the pack's float32 constants)."""

from __future__ import annotations

from typing import Any, Callable


def rule(tf: Any, w: Any, m: Any, v: Any, g: Any, h: dict[str, Any], t: Any, assign: Callable[[Any, Any], None]) -> None:
    from sweeper.train.optimizers import rectified_step  # imports Keras: only where a step is traced

    assign(m, m + (g - m) * h["omb1"])
    assign(v, v + (tf.square(g) - v) * h["omb2"])
    assign(w, w - h["lr"] * rectified_step(tf, m, v, t, h["b1p"], h["b2p"], h["b2"], h["eps"]))
