"""Reusing traced models across trials must not change results: a trial run alone and the same
trial run inside a sweep (after other trials of the same structure) train identically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import write_sweep

from sweeper.config.spec import load_spec
from sweeper.search.space import full_params, trial_seed
from sweeper.train import reuse
from sweeper.train.data import load_dataset
from sweeper.train.runtime import configure_tensorflow
from sweeper.train.trial import run_trial


@pytest.mark.parametrize("augmentation", [{}, {"rotation": 10, "zoom": 0.1, "width_shift": 0.1}],
                         ids=["plain", "augmented"])
def test_trial_alone_equals_trial_inside_a_sweep(tmp_path: Path, augmentation: dict[str, Any]) -> None:
    """Also with augmentation layers (their own random draws): the zoo's trials are seeded without
    flushing TensorFlow's kernel cache, so the reused model's compiled step carries over."""
    configure_tensorflow()
    spec = load_spec(write_sweep(tmp_path / "r.yaml", params={"optimizer__learning_rate": [0.003, 0.01, 0.03]},
                                 training={"epochs": 3, "batch_size": 32, "model__units": 16,
                                           "model__batchnorm": True, "model__dropout": 0.2},
                                 augmentation=augmentation))
    ds = load_dataset(spec.data)

    def trial(lr: float):
        params = full_params(spec, {"optimizer__learning_rate": lr})
        return run_trial(spec, ds, params, trial_seed(spec, params))

    reuse.clear()
    alone = trial(0.01)  # fresh model: nothing cached
    reuse.clear()
    trial(0.003)  # the sweep's earlier trials leave a traced model of the same structure ...
    trial(0.03)
    inside = trial(0.01)  # ... which this trial reuses
    assert len(reuse._cache) == 1
    assert inside.curve == alone.curve and inside.val_loss == alone.val_loss
    assert inside.train_accuracy == alone.train_accuracy


def test_different_structures_are_not_shared(tmp_path: Path) -> None:
    spec = load_spec(write_sweep(tmp_path / "r.yaml"))
    import numpy as np

    x = np.zeros((4, 8, 8, 1))
    a = reuse.structure_key(spec, {"model__batchnorm": True, "optimizer__learning_rate": 0.1}, x, 10)
    b = reuse.structure_key(spec, {"model__batchnorm": True, "optimizer__learning_rate": 0.2, "epochs": 3}, x, 10)
    c = reuse.structure_key(spec, {"model__batchnorm": False, "optimizer__learning_rate": 0.1}, x, 10)
    d = reuse.structure_key(spec, {"model__batchnorm": True, "optimizer": "sgd", "optimizer__momentum": 0.9}, x, 10)
    assert a == b and a != c and a != d


def test_seeding_that_keeps_kernels_seeds_as_keras_does() -> None:
    """set_random_seed_keeping_kernels leaves Python, NumPy, tf.data shuffles and Keras's global
    generator where keras.utils.set_random_seed leaves them. A stateful TensorFlow op's cached
    kernel goes on with its stream instead of restarting: why a user's builder gets the plain call."""
    import random

    import keras
    import numpy as np

    from sweeper.train.runtime import set_random_seed_keeping_kernels, tensorflow

    tf = tensorflow()

    def draws() -> tuple[Any, ...]:
        order = next(iter(tf.data.Dataset.range(50).shuffle(50, seed=3).batch(50))).numpy()
        return (random.random(), float(np.random.rand()), order.tolist(), keras.random.uniform([3]).numpy().tolist())

    for seed in (0, 11, 2**31 - 1):
        keras.utils.set_random_seed(seed)
        want, stateful = draws(), tf.random.uniform([3], seed=7).numpy().tolist()
        set_random_seed_keeping_kernels(seed)
        assert draws() == want
        assert tf.random.uniform([3], seed=7).numpy().tolist() != stateful


def test_the_kernel_cache_is_flushed_every_flush_every_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    """flush_now_and_then flushes TensorFlow's kernel cache on every FLUSH_EVERY-th fit, not before:
    seen through a stateful op's kernel, which restarts its stream only after a flush."""
    import keras

    from sweeper.train import runtime

    tf = runtime.tensorflow()
    monkeypatch.setattr(runtime, "FLUSH_EVERY", 3)
    monkeypatch.setattr(runtime, "_unflushed", 0)
    keras.utils.set_random_seed(5)
    first = tf.random.uniform([2], seed=1).numpy().tolist()
    for _ in range(2):
        runtime.flush_now_and_then()
        runtime.set_random_seed_keeping_kernels(5)
        assert tf.random.uniform([2], seed=1).numpy().tolist() != first  # the cached kernel went on
    runtime.flush_now_and_then()  # the third: flushed
    runtime.set_random_seed_keeping_kernels(5)
    assert tf.random.uniform([2], seed=1).numpy().tolist() == first
