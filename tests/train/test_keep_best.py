"""``callbacks.keep_best`` stated once (early_stopping.keeps): the KeepBest Keras callback that
unfused fits run and the epoch fused packs score (``scored_epoch``) agree on which epoch's weights
a fit ends with, on per-epoch val_accuracy values with ties, NaN and none kept."""

from __future__ import annotations

import math

import numpy as np

from sweeper.config.sections import Callbacks
from sweeper.train.callbacks import KeepBest
from sweeper.train.early_stopping import scored_epoch


def callback_epoch(values: list[float]) -> int:
    """The epoch whose weights the KeepBest callback leaves in a model whose one weight is set to
    the epoch number before each epoch ends."""
    import keras

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    cb = KeepBest.make()
    cb.set_model(model)
    cb.on_train_begin()
    for epoch, value in enumerate(values):
        model.set_weights([np.full((1, 1), epoch, dtype="float32")])
        cb.on_epoch_end(epoch, {"val_accuracy": value, "val_loss": 1.0})
    cb.on_train_end()
    return int(model.get_weights()[0][0, 0])


def test_keep_best_callback_and_fused_packs_keep_the_same_epoch() -> None:
    rng = np.random.default_rng(3)
    rule = Callbacks(keep_best=True)
    cases = [[math.nan, math.nan], [0.5, math.nan, 0.5], [math.nan, 0.2, 0.9, 0.9]]
    for _ in range(60):
        values = [float(v) for v in rng.integers(0, 6, int(rng.integers(1, 9))) / 8]
        if rng.random() < 0.3:
            values[int(rng.integers(len(values)))] = math.nan
        cases.append(values)
    for values in cases:
        history = {"val_accuracy": values, "val_loss": [1.0] * len(values)}
        assert scored_epoch(rule, history, None) == callback_epoch(values), values
