"""Keras's BatchNormalization (the template's momentum and epsilon) for pack members: in training
it normalises with the batch's statistics and moves the moving ones, in inference it uses the
moving ones (keras_mirror.BATCHNORM)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sweeper.train.fused.ops import per_channel
from sweeper.train.keras_mirror import batch_normalization, batchnorm_moments, batchnorm_moving

Moving = tuple[Any, Any] | None  # the new moving mean and variance after a training step


def member(tf: Any, h: Any, weights: list[Any], training: bool, momentum: float,
           epsilon: float) -> tuple[Any, Moving]:
    """One member's layer on its rows; ``weights``: gamma, beta, moving mean, moving variance."""
    gamma, beta, mean, var = weights
    moving = None
    if training:
        batch_mean, batch_var = batchnorm_moments(tf, h)
        moving = batchnorm_moving(mean, batch_mean, momentum), batchnorm_moving(var, batch_var, momentum)
        mean, var = batch_mean, batch_var
    return batch_normalization(tf, h, mean, var, beta, gamma, epsilon), moving


def batched(tf: Any, h: Any, weights: list[Any], k: int, mask: Any, momentum: float,
            epsilon: float) -> tuple[Any, Moving]:
    """K members' layers on (K, B, ..., C) with stacked (K, C) weights: in training (``mask``
    given, (K, B)) each over its rows (and pixels) where its mask is 1."""
    rank = len(h.shape)
    gamma, beta, mean, var = (per_channel(tf, w, k, rank) for w in weights)
    moving = None
    if mask is not None:
        axes = list(range(1, rank - 1))
        m = tf.reshape(mask, [k, -1] + [1] * (rank - 2))
        pixels = float(np.prod(h.shape[2:-1])) if rank > 3 else 1.0
        count = tf.maximum(tf.reduce_sum(m, axes, keepdims=True) * pixels, 1.0)
        mean = tf.reduce_sum(h * m, axes, keepdims=True) / count
        var = tf.reduce_sum(tf.square(h - tf.stop_gradient(mean)) * m, axes, keepdims=True) / count
        flat = [tf.reshape(a, [k, -1]) for a in (mean, var)]
        moving = batchnorm_moving(weights[2], flat[0], momentum), batchnorm_moving(weights[3], flat[1], momentum)
    return batch_normalization(tf, h, mean, var, beta, gamma, epsilon), moving
