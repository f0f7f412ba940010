"""The fused form is read from the family's template Keras model (train/fused/structure.py), not
written a second time: the layout read equals the layers' known positions for every structure;
a builder's change (a batch-norm momentum, a LeakyReLU slope) reaches the fused members, which
still train as Keras trains the changed model; a layer with no fused form is refused by name."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from sweeper.train.fused import structure as fused_structure
from sweeper.train.fused.structure import CNNStructure, MLPStructure, layout, read_layout


def known_layout(structure: Any) -> tuple[list[tuple[Any, ...]], int, int]:
    """The twin: the positions build_mlp / build_cnn give their weights, written out by hand."""
    kinds = ["conv", "conv", "dense"] if isinstance(structure, CNNStructure) else ["dense"] * 3
    blocks, i = [], 0
    for kind in kinds:
        kernel, i = i, i + 2
        bn = i if structure.batchnorm else None
        i += 4 if structure.batchnorm else 0
        prelu = i if structure.activation == "prelu" else None
        i += prelu is not None
        blocks.append((kind, kernel, bn, prelu, kind == "dense", kind == "conv"))
    return blocks, i, i + 2


@pytest.mark.parametrize("family,batchnorm,activation",
                         list(itertools.product([MLPStructure, CNNStructure], [False, True],
                                                ["relu", "prelu", "leaky_relu", "tanh"])))
def test_the_layout_read_from_the_template_is_the_known_one(family: Any, batchnorm: bool, activation: str) -> None:
    structure = family(batchnorm=batchnorm, activation=activation)
    blocks, out, count = layout(structure)
    assert ([(b.kind, b.kernel, b.bn, b.prelu, b.dropout, b.pool) for b in blocks], out, count) \
        == known_layout(structure)
    assert all(b.bn_momentum == 0.9 for b in blocks if b.bn is not None)  # models/layers.py's
    assert all(b.slope == (0.1 if activation == "leaky_relu" else None) for b in blocks)
    assert fused_structure.default_dropout("cnn") == 0.3 and fused_structure.default_dropout("mlp") == 0.0


def test_a_layer_with_no_fused_form_is_refused_by_name() -> None:
    import keras

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.GaussianNoise(0.1, name="noise")(keras.layers.Dense(4)(x))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    with pytest.raises(ValueError, match="noise: a GaussianNoise layer has no fused form"):
        read_layout(model)


def test_a_changed_builder_reaches_the_fused_members(monkeypatch: pytest.MonkeyPatch) -> None:
    """models/layers.py with batch-norm momentum 0.8 and a LeakyReLU slope of 0.25: the fused form
    reads both, and a member (without batch norm, whose train_on_batch twin is not fit's) still
    trains as Keras trains the changed model, bit for bit."""
    import keras
    from sklearn.datasets import load_digits

    from sweeper.train.fused import init as fused_init
    from sweeper.train.fused.fit import FusedMember, fit_fused
    from sweeper.train.fused.init import keras_model
    from sweeper.train.models import layers
    from sweeper.train.runtime import configure_tensorflow

    configure_tensorflow()

    def dense_block(x: Any, units: int, *, batchnorm: bool, activation: str, dropout: float,
                    kernel_initializer: str, reg: Any) -> Any:
        x = keras.layers.Dense(units, kernel_initializer=kernel_initializer, kernel_regularizer=reg)(x)
        x = keras.layers.BatchNormalization(momentum=0.8)(x) if batchnorm else x
        x = keras.layers.LeakyReLU(negative_slope=0.25)(x)
        return keras.layers.Dropout(dropout)(x) if dropout else x

    monkeypatch.setattr(layers, "dense_block", dense_block)
    from sweeper.train.models import mlp

    monkeypatch.setattr(mlp, "dense_block", dense_block)
    layout.cache_clear()
    fused_init._RECIPES.clear()
    structure = MLPStructure(units=8, activation="leaky_relu")
    try:
        blocks, _, _ = layout(MLPStructure(units=8, batchnorm=True, activation="leaky_relu"))
        assert {(b.bn_momentum, b.slope) for b in blocks} == {(0.8, 0.25)}
        assert {b.slope for b in layout(structure)[0]} == {0.25}
        d = load_digits()
        x, y = (d.images[:200] / 16.0).astype("float32")[..., None], d.target[:200].astype("int32")
        m = FusedMember(seed=5, epochs=2, learning_rate=0.01, optimizer="adam")
        (r,) = fit_fused([m], x, y, None, structure=structure, batch_size=50, record_orders=True)
        keras.utils.set_random_seed(m.seed)
        model = keras_model(structure, m, x.shape[1:], 10)
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
        for order in r.orders:
            for a in range(0, len(order), 50):
                model.train_on_batch(x[order[a:a + 50]], y[order[a:a + 50]])
        for got, want in zip(r.weights, model.get_weights()):
            np.testing.assert_array_equal(got, want)
    finally:
        layout.cache_clear()
        fused_init._RECIPES.clear()
