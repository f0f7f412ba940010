"""The Fashion-MNIST CNN (docs/reference_notebooks.md, notebook B): Conv 32 -> Pool -> Conv 64 -> Pool -> Dense 128 -> Dropout.
``layers`` and ``filters_1`` ... ``filters_8`` change the number of conv blocks and their filters."""

from __future__ import annotations

from typing import Any

from sweeper.errors import TrialError
from sweeper.train.models.layers import conv_block, dense_block, input_and_classes, layer_widths


def build_cnn(
    meta: dict[str, Any],
    units: int = 128,
    batchnorm: bool = False,
    dropout: float = 0.3,
    activation: str = "relu",
    kernel_initializer: str = "glorot_uniform",
    l2: float = 0.0,
    filters: int = 32,
    layers: int = 2,
    **widths: int,
) -> Any:
    """``layers`` conv blocks (3x3 conv, 2x2 pool); ``filters`` sets the first one's filters and
    each next one doubles them (32/64), unless ``filters_k`` sets the k-th."""
    import keras

    shape, n_classes = input_and_classes(meta)
    sizes = layer_widths("filters", filters, layers, widths)
    need = 2 ** len(sizes)  # each 2x2 pool halves the image; one pixel must be left
    if min(shape[0], shape[1]) < need:
        raise TrialError(f"cnn needs images of at least {need}x{need} ({len(sizes)} 3x3 convs + {len(sizes)} 2x2 "
                         f"pools), got {shape[0]}x{shape[1]}")
    reg = keras.regularizers.L2(l2) if l2 else None
    x = inputs = keras.Input(shape)
    for f in sizes:
        # 'same' padding keeps 8x8 digits usable: 8 -> 4 -> 2 after two pools.
        x = conv_block(x, f, 3, batchnorm=batchnorm, activation=activation,
                       kernel_initializer=kernel_initializer, reg=reg)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = dense_block(x, units, batchnorm=batchnorm, activation=activation, dropout=dropout,
                    kernel_initializer=kernel_initializer, reg=reg)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="cnn")


build_cnn.numbered = "filters"  # type: ignore[attr-defined]  # filters_1 ... (config/models.py)
