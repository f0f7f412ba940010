"""The hidden layers' activations for pack members: a Keras activation by name, LeakyReLU with
the template's slope, PReLU with each member's own alphas."""

from __future__ import annotations

from typing import Any


def member(h: Any, name: str, alpha: Any = None, slope: float | None = None) -> Any:
    """One member's activation as Keras computes it: PReLU (``alpha``: its weights) as
    relu(x) + (-alpha * relu(-x)), LeakyReLU(negative_slope=``slope``), else ``name``'s."""
    import keras

    if alpha is not None:
        return keras.activations.relu(h) + -alpha * keras.activations.relu(-h)
    if slope is not None:
        return keras.activations.leaky_relu(h, negative_slope=slope)
    return keras.activations.get(name)(h)


def batched(tf: Any, h: Any, name: str, alpha: Any = None, slope: float | None = None) -> Any:
    """K members' activation on (K, B, ...): ``alpha`` (PReLU) is (K, *features), one per unit
    (and pixel) of each member."""
    if alpha is not None:
        return tf.nn.relu(h) - alpha[:, None] * tf.nn.relu(-h)
    if name == "leaky_relu":
        return tf.nn.leaky_relu(h, alpha=slope)
    import keras

    return keras.activations.get(name)(h)
