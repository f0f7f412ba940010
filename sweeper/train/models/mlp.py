"""The notebook MLP (docs/reference_notebooks.md, notebook A): Dense 64 -> 128 -> 256, BN and dropout after each, softmax."""

from __future__ import annotations

from typing import Any

from sweeper.train.models.layers import dense_block, input_and_classes


def build_mlp(
    meta: dict[str, Any],
    units: int = 64,
    batchnorm: bool = False,
    dropout: float = 0.0,
    activation: str = "relu",
    kernel_initializer: str = "glorot_uniform",
    l2: float = 0.0,
) -> Any:
    """``units`` sets the first layer's width; the next two are 2x and 4x it (64/128/256)."""
    import keras

    shape, n_classes = input_and_classes(meta)
    reg = keras.regularizers.L2(l2) if l2 else None
    x = inputs = keras.Input(shape)
    x = keras.layers.Flatten()(x)
    for width in (units, units * 2, units * 4):
        x = dense_block(x, width, batchnorm=batchnorm, activation=activation, dropout=dropout,
                        kernel_initializer=kernel_initializer, reg=reg)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="mlp")
