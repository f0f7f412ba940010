"""The notebook MLP (docs/reference_notebooks.md, notebook A): Dense 64 -> 128 -> 256, BN and dropout after each, softmax.
``layers`` and ``units_1`` ... ``units_8`` change the number of hidden layers and their widths."""

from __future__ import annotations

from typing import Any

from sweeper.train.models.layers import dense_block, input_and_classes, layer_widths


def build_mlp(
    meta: dict[str, Any],
    units: int = 64,
    batchnorm: bool = False,
    dropout: float = 0.0,
    activation: str = "relu",
    kernel_initializer: str = "glorot_uniform",
    l2: float = 0.0,
    layers: int = 3,
    **widths: int,
) -> Any:
    """``layers`` hidden Dense layers; ``units`` sets the first one's width and each next one
    doubles it (64/128/256), unless ``units_k`` sets the k-th."""
    import keras

    shape, n_classes = input_and_classes(meta)
    sizes = layer_widths("units", units, layers, widths)
    reg = keras.regularizers.L2(l2) if l2 else None
    x = inputs = keras.Input(shape)
    x = keras.layers.Flatten()(x)
    for width in sizes:
        x = dense_block(x, width, batchnorm=batchnorm, activation=activation, dropout=dropout,
                        kernel_initializer=kernel_initializer, reg=reg)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="mlp")


build_mlp.numbered = "units"  # type: ignore[attr-defined]  # units_1 ... (config/models.py)
