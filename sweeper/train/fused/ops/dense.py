"""Keras's Dense, and the Flatten before a Dense on images, for pack members."""

from __future__ import annotations

from typing import Any

import numpy as np


def member(h: Any, kernel: Any, bias: Any) -> Any:
    """One member's Dense on its (B, in) rows, as Keras's layer computes it."""
    from keras import ops

    return ops.add(ops.matmul(h, kernel), bias)


def flatten_member(h: Any) -> Any:
    """One member's Flatten: (B, ...) -> (B, features)."""
    from keras import ops

    return ops.reshape(h, (-1, int(np.prod(h.shape[1:]))))


def batched(tf: Any, h: Any, kernel: Any, bias: Any, shared: bool) -> Any:
    """K members' Dense on stacked (K, in, out) kernels: (B, in) rows all members share (one
    einsum) or (K, B, in) rows of their own (a batched matmul) -> (K, B, out)."""
    out = tf.einsum("bi,kio->kbo", h, kernel) if shared else tf.linalg.matmul(h, kernel)
    return out + bias[:, None, :]


def flatten_batched(tf: Any, h: Any, k: int) -> Any:
    """K members' Flatten: (K, B, H, W, C) -> (K, B, H*W*C)."""
    return tf.reshape(h, [k, -1, int(np.prod(h.shape[2:]))])
