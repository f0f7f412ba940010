"""The Fashion-MNIST CNN (docs/reference_notebooks.md, notebook B): Conv 32 -> Pool -> Conv 64 -> Pool -> Dense 128 -> Dropout."""

from __future__ import annotations

from typing import Any

from sweeper.errors import TrialError
from sweeper.train.models.layers import conv_block, dense_block, input_and_classes


def build_cnn(
    meta: dict[str, Any],
    units: int = 128,
    batchnorm: bool = False,
    dropout: float = 0.3,
    activation: str = "relu",
    kernel_initializer: str = "glorot_uniform",
    l2: float = 0.0,
    filters: int = 32,
) -> Any:
    import keras

    shape, n_classes = input_and_classes(meta)
    if min(shape[0], shape[1]) < 6:
        raise TrialError(f"cnn needs images of at least 6x6 (two 3x3 convs + two 2x2 pools), got {shape[0]}x{shape[1]}")
    reg = keras.regularizers.L2(l2) if l2 else None
    x = inputs = keras.Input(shape)
    for f in (filters, filters * 2):
        # 'same' padding keeps 8x8 digits usable: 8 -> 4 -> 2 after the two pools.
        x = conv_block(x, f, 3, batchnorm=batchnorm, activation=activation,
                       kernel_initializer=kernel_initializer, reg=reg)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = dense_block(x, units, batchnorm=batchnorm, activation=activation, dropout=dropout,
                    kernel_initializer=kernel_initializer, reg=reg)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="cnn")
