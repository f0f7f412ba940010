"""Small building blocks shared by the model families."""

from __future__ import annotations

from typing import Any


def activation_layer(name: str) -> Any:
    """An activation as a layer; leaky_relu/prelu are layers with state or a slope."""
    import keras

    if name == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=0.1)
    if name == "prelu":
        return keras.layers.PReLU()
    return keras.layers.Activation(name)


def input_and_classes(meta: dict[str, Any]) -> tuple[tuple[int, ...], int]:
    """Image shape (H, W, C) and class count from scikeras' meta."""
    return tuple(meta["X_shape_"][1:]), int(meta["n_classes_"])
