"""The VGG-like Kaggle Kannada-MNIST model (docs/reference_notebooks.md, notebook A).

3x Conv 64 -> MaxPool -> Dropout -> 3x Conv 128 -> MaxPool -> Dropout -> 2x Conv 256 -> MaxPool
-> Dropout -> [Conv 512 -> MaxPool if ``conv512``] -> Flatten -> Dense ``fc_units`` -> LeakyReLU
-> BN -> [Dropout] -> softmax. Each conv is 3x3 'same' + BN(momentum 0.9, eps 1e-5) + activation.

The notebook's final model is ``conv512=True, fc_units=1024, inner_dropout=0.0, dropout=0.25``:
3,054,986 parameters on 28x28x1 (the notebook: "3.05 M"), with pooling 28 -> 14 -> 7 -> 3 -> 1.
Small inputs: every pool halves the image (floor), so three pools need at least 8x8 and the
extra conv512 pool needs 16x16. Pools are not skipped (that would silently change the model);
a too-small image raises TrialError, so 8x8 digits build only with ``conv512=False``.
"""

from __future__ import annotations

from typing import Any

from sweeper.errors import TrialError
from sweeper.train.models.layers import activation_layer, input_and_classes


def build_vgg(
    meta: dict[str, Any],
    fc_units: int = 256,
    batchnorm: bool = True,
    dropout: float = 0.0,
    inner_dropout: float = 0.25,
    activation: str = "leaky_relu",
    kernel_initializer: str = "glorot_uniform",
    l2: float = 0.0,
    conv512: bool = False,
) -> Any:
    """``inner_dropout`` follows each conv block; ``dropout`` follows the dense head (none in the base model)."""
    import keras

    shape, n_classes = input_and_classes(meta)
    blocks = [(64, 3), (128, 3), (256, 2)] + ([(512, 1)] if conv512 else [])
    need = 2 ** len(blocks)
    if min(shape[0], shape[1]) < need:
        why = " with conv512" if conv512 else ""
        raise TrialError(
            f"vgg{why} needs images of at least {need}x{need} ({len(blocks)} 2x2 pools), got {shape[0]}x{shape[1]}"
        )
    reg = keras.regularizers.L2(l2) if l2 else None
    x = inputs = keras.Input(shape)
    for filters, n_convs in blocks:
        for _ in range(n_convs):
            x = keras.layers.Conv2D(
                filters, 3, padding="same", kernel_initializer=kernel_initializer, kernel_regularizer=reg
            )(x)
            if batchnorm:
                x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)
            x = activation_layer(activation)(x)
        x = keras.layers.MaxPooling2D(2)(x)
        if inner_dropout:
            x = keras.layers.Dropout(inner_dropout)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(fc_units, kernel_initializer=kernel_initializer, kernel_regularizer=reg)(x)
    x = activation_layer(activation)(x)  # the head is Dense -> activation -> BN, as in the notebook
    if batchnorm:
        x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="vgg")
