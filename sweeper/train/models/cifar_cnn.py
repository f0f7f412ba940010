"""The CIFAR-10 CNN (docs/reference_notebooks.md, notebook E).

[Conv 32, Conv 32, MaxPool, Dropout 0.25], [Conv 64 x2, MaxPool, Dropout 0.25] x2 -> Flatten ->
Dense 128 -> Dropout -> Dense classes. All convs are 3x3 'same': that reproduces the notebook's
271,914 parameters for 32x32x3 (32 -> 16 -> 8 -> 4, a 4x4x64 = 1024 flatten; 'valid' convs
would not). ``batchnorm`` (off by default, to keep that count) adds BN after every conv/dense.
Small inputs: three 2x2 pools need at least 8x8; 8x8 digits build (8 -> 4 -> 2 -> 1).
"""

from __future__ import annotations

from typing import Any

from sweeper.errors import TrialError
from sweeper.train.models.layers import conv_block, dense_block, input_and_classes


def build_cifar_cnn(
    meta: dict[str, Any],
    units: int = 128,
    batchnorm: bool = False,
    dropout: float = 0.5,
    inner_dropout: float = 0.25,
    activation: str = "relu",
    kernel_initializer: str = "glorot_uniform",
    l2: float = 0.0,
    filters: int = 32,
) -> Any:
    """``filters`` is the first block's width (32); the other two blocks use twice as many."""
    import keras

    shape, n_classes = input_and_classes(meta)
    if min(shape[0], shape[1]) < 8:
        raise TrialError(f"cifar_cnn needs images of at least 8x8 (three 2x2 pools), got {shape[0]}x{shape[1]}")
    reg = keras.regularizers.L2(l2) if l2 else None
    x = inputs = keras.Input(shape)
    for f in (filters, filters * 2, filters * 2):
        for _ in range(2):
            x = conv_block(x, f, 3, batchnorm=batchnorm, activation=activation,
                           kernel_initializer=kernel_initializer, reg=reg)
        x = keras.layers.MaxPooling2D(2)(x)
        if inner_dropout:
            x = keras.layers.Dropout(inner_dropout)(x)
    x = keras.layers.Flatten()(x)
    x = dense_block(x, units, batchnorm=batchnorm, activation=activation, dropout=dropout,
                    kernel_initializer=kernel_initializer, reg=reg)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="cifar_cnn")
