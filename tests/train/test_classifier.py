"""The tf.data feeding of SweeperClassifier: seeded, reshuffled each epoch, same results for the
same seed, and scikeras's own path where the pipeline does not apply."""

from __future__ import annotations

from typing import Any

import numpy as np

from sweeper.config.spec import spec_from_dict
from sweeper.search.space import full_params
from sweeper.train.classifier import evaluation_pipeline, training_pipeline
from sweeper.train.estimator import make_estimator
from sweeper.train.runtime import configure_tensorflow

SPEC: dict[str, Any] = {"name": "c", "data": {"dataset": "digits"}, "model": "mlp",
                        "params": {"model__dropout": [0.2]}, "training": {"epochs": 3, "batch_size": 16, "model__units": 8}}


def epoch_labels(dataset: Any) -> np.ndarray:
    return np.concatenate([batch[1].numpy() for batch in dataset])


def test_training_pipeline_reshuffles_every_epoch_reproducibly() -> None:
    configure_tensorflow()
    x, y = np.zeros((100, 2), dtype="float32"), np.arange(100)
    a, b = training_pipeline(x, y, 32, seed=5), training_pipeline(x, y, 32, seed=5)
    first, second = epoch_labels(a), epoch_labels(a)
    assert sorted(first) == list(range(100)) and not np.array_equal(first, second)  # a permutation, new each epoch
    assert np.array_equal(first, epoch_labels(b)) and np.array_equal(second, epoch_labels(b))  # same seed, same orders
    assert not np.array_equal(first, epoch_labels(training_pipeline(x, y, 32, seed=6)))
    assert np.array_equal(epoch_labels(training_pipeline(x, y, 32, seed=None)), y)  # no seed: stored order
    assert [len(batch[1]) for batch in a] == [32, 32, 32, 4]
    assert np.array_equal(epoch_labels(evaluation_pipeline(x, y, 32)), y)


def test_same_random_state_same_history_and_sample_weights_still_work() -> None:
    configure_tensorflow()
    spec = spec_from_dict(SPEC)
    rng = np.random.default_rng(0)
    x, y = rng.random((96, 8, 8, 1)).astype("float32"), np.arange(96) % 4
    val = (x[:32], y[:32])

    def fit(seed: int, **kwargs: Any) -> dict[str, list[float]]:
        est = make_estimator(spec, full_params(spec, {"model__dropout": 0.2}), seed)
        est.fit(x, y, validation_data=val, **kwargs)
        return dict(est.history_)

    once, again, other = fit(7), fit(7), fit(8)
    assert set(once) >= {"loss", "accuracy", "val_loss", "val_accuracy"} and len(once["loss"]) == 3
    assert once == again and once["loss"] != other["loss"]
    # Sample weights go through scikeras's NumPy path: zero weights on half the rows change training.
    weighted = fit(7, sample_weight=np.where(np.arange(96) % 2 == 0, 1.0, 0.0))
    assert len(weighted["loss"]) == 3 and weighted["loss"] != once["loss"]


def test_a_random_state_fits_as_kerasclassifier_does() -> None:
    """SweeperClassifier(random_state=s) is KerasClassifier(random_state=s) fed through tf.data:
    the same initial weights, batch order and dropout, so the same history and weights."""
    import keras
    from scikeras.wrappers import KerasClassifier

    from sweeper.train.models.mlp import build_mlp

    configure_tensorflow()
    spec = spec_from_dict(SPEC)
    rng = np.random.default_rng(1)
    x, y = rng.random((100, 8, 8, 1)).astype("float32"), np.arange(100) % 4
    ours = make_estimator(spec, full_params(spec, {"model__dropout": 0.2}), 11).fit(x, y)
    theirs = KerasClassifier(model=build_mlp, loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                             optimizer=keras.optimizers.Adam, random_state=11, verbose=0, epochs=3,
                             batch_size=16, model__units=8, model__dropout=0.2).fit(x, y)
    assert ours.history_["loss"] == theirs.history_["loss"]
    for a, b in zip(ours.model_.get_weights(), theirs.model_.get_weights()):
        np.testing.assert_array_equal(a, b)
