"""Keras's Conv2D (3x3, stride 1, 'same' padding) for pack members."""

from __future__ import annotations

from typing import Any

from sweeper.train.fused.ops import per_channel

CONV_MODES = ("loop", "grouped")


def member(h: Any, kernel: Any, bias: Any) -> Any:
    """One member's Conv2D on its (B, H, W, C) images, as Keras's layer computes it."""
    from keras import ops

    h = ops.conv(h, kernel, strides=1, padding="same")
    return ops.add(h, ops.reshape(bias, (1, 1, 1, -1)))


def batched(tf: Any, h: Any, kernel: Any, bias: Any, k: int, shared: bool, mode: str) -> Any:
    """(B, H, W, C) shared or (K, B, H, W, C) per-member images -> (K, B, H, W, F), 'same'
    padding. "loop": one conv per member (on CPU the fastest: TF has no grouped-conv gradient
    there, and a grouped forward ran 2.4x slower than K convs); "grouped": the members stacked
    along channels, one grouped conv (cuDNN's; on CPU only under XLA)."""
    if mode == "loop":
        xs = [h] * k if shared else tf.unstack(h, k)
        out = tf.stack([tf.nn.conv2d(x, kernel[n], 1, "SAME") for n, x in enumerate(xs)])
    else:
        _, _, c, f = kernel.shape[1:]
        stacked = tf.reshape(tf.transpose(kernel, [1, 2, 3, 0, 4]), [3, 3, c, k * f])
        rows, cols = h.shape[-3:-1]
        if not shared:  # (K, B, H, W, C) -> (B, H, W, K*C): member k's channels are group k
            h = tf.reshape(tf.transpose(h, [1, 2, 3, 0, 4]), [-1, rows, cols, k * c])
        y = tf.reshape(tf.nn.conv2d(h, stacked, 1, "SAME"), [-1, rows, cols, k, f])
        out = tf.transpose(y, [3, 0, 1, 2, 4])
    return out + per_channel(tf, bias, k, 5)
