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


def conv_block(x: Any, filters: int, kernel: int, *, batchnorm: bool, activation: str,
               kernel_initializer: str, reg: Any) -> Any:
    """Conv ('same' padding) -> [BatchNorm] -> activation: the unit the CNN families repeat."""
    import keras

    x = keras.layers.Conv2D(filters, kernel, padding="same", kernel_initializer=kernel_initializer,
                            kernel_regularizer=reg)(x)
    if batchnorm:
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
    return activation_layer(activation)(x)


def dense_block(x: Any, units: int, *, batchnorm: bool, activation: str, dropout: float,
                kernel_initializer: str, reg: Any) -> Any:
    """Dense -> [BatchNorm] -> activation -> [Dropout]: the notebooks' hidden layer."""
    import keras

    x = keras.layers.Dense(units, kernel_initializer=kernel_initializer, kernel_regularizer=reg)(x)
    if batchnorm:
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = activation_layer(activation)(x)
    return keras.layers.Dropout(dropout)(x) if dropout else x
