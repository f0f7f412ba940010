"""Keras's MaxPooling2D (pool size = strides, 'valid' padding) for pack members."""

from __future__ import annotations

from typing import Any


def member(h: Any, size: int) -> Any:
    """One member's MaxPooling2D on its (B, H, W, C) images, as Keras's layer computes it."""
    from keras import ops

    return ops.max_pool(h, pool_size=size, strides=size, padding="valid")


def batched(tf: Any, h: Any, size: int, k: int) -> Any:
    """K members' MaxPooling2D on (K, B, H, W, C): one pool over their images side by side."""
    rows, cols, c = h.shape[2:]
    y = tf.nn.max_pool2d(tf.reshape(h, [-1, rows, cols, c]), size, size, "VALID")
    return tf.reshape(y, [k, -1, rows // size, cols // size, c])
