"""Small building blocks shared by the model families."""

from __future__ import annotations

from typing import Any

from sweeper.config.values import MAX_LAYERS
from sweeper.errors import TrialError


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


def layer_widths(name: str, base: int, layers: int, given: dict[str, Any]) -> list[int]:
    """Each layer's width: ``NAME_k`` where given, else ``base`` doubled per layer (the families'
    own shapes: mlp 64/128/256, cnn 32/64). A width past ``layers``, or another keyword, is an
    error: the builder receives exactly the params that exist (conditional parameters)."""
    names = [f"{name}_{k}" for k in range(1, MAX_LAYERS + 1)]
    # scikeras passes its compile_kwargs and params to a builder that takes **kwargs: not widths.
    given = {k: v for k, v in given.items() if k not in ("compile_kwargs", "params")}
    unknown = sorted(k for k in given if k not in names)
    if unknown:
        raise TypeError(f"unexpected keyword argument {unknown[0]!r}")
    layers = int(layers)
    if not 1 <= layers <= MAX_LAYERS:
        raise TrialError(f"layers={layers}: from 1 to {MAX_LAYERS}")
    beyond = sorted((k for k in given if names.index(k) >= layers), key=names.index)
    if beyond:
        raise TrialError(f"{beyond[0]} is set but the model has {layers} layer(s) "
                         f"(give it a condition: when: {{model__layers: [...]}})")
    return [int(given.get(f"{name}_{k}", base * 2 ** (k - 1))) for k in range(1, layers + 1)]
