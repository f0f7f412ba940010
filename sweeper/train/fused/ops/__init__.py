"""The ops of a pack's layers, one module per kind of Keras layer (dense with the Flatten before
it, conv, batch norm, dropout, pooling, activations, and the loss). Each gives two forms:
``member``, one member on its own rows with the ops, shapes and constants its Keras layer runs (a
standalone fit's weights, bit for bit; keras_mirror.LAYER_OPS), and ``batched``, K members at
once on stacked ``(K, ...)`` weights and ``(K, B, ...)`` activations (XLA, GPUs). The forward that
strings them together is written once, in fused/forward.py."""

from __future__ import annotations

from typing import Any


def per_member(tf: Any, vec: Any, k: int, rank: int) -> Any:
    """(K,) -> (K, 1, ..., 1) of ``rank`` dimensions."""
    return tf.reshape(vec, [k] + [1] * (rank - 1))


def per_channel(tf: Any, vec: Any, k: int, rank: int) -> Any:
    """(K, C) per-channel weights -> (K, 1, ..., 1, C), against (K, B, ..., C) activations."""
    return tf.reshape(vec, [k] + [1] * (rank - 2) + [vec.shape[-1]])
