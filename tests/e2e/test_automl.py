"""model: autokeras (sweeper/train/automl.py): a real AutoKeras search as a sweep trial through the CLI,
the Keras 3.15 / TF 2.21 compatibility shims, the spec checks and the missing-extra message."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from conftest import run_cli, write_sweep

from sweeper.worker import loop
from sweeper.config.spec import spec_from_dict
from sweeper.errors import SpecError, SweeperError
from sweeper.train import automl


def _raw(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "ak", "data": {"dataset": "digits", "limit": 300}, "model": "autokeras", "method": "grid",
        "params": {"model__max_trials": [2]},
        "training": {"epochs": 2, "batch_size": 32, "model__block_type": "vanilla"},
        "validation": {"holdout": 0.25}, "seed": 1,
    }
    raw.update(overrides)
    return raw


@pytest.mark.slow
def test_real_search_is_a_complete_trial_in_the_study_and_report(workdir: Path) -> None:
    pytest.importorskip("autokeras")
    raw = _raw()
    raw.pop("name")
    sweep = write_sweep(workdir / "ak.yaml", name="ak", **raw)
    proc = run_cli("run", str(sweep), "--reports", str(workdir / "reports"), "--quiet", cwd=workdir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr

    study = optuna.load_study(study_name="ak", storage=f"sqlite:///{workdir / 'store.db'}")
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE, trial.user_attrs
    assert 0.0 <= trial.value <= 1.0
    m = trial.user_attrs["metrics"]
    assert m["mean_test_score"] == trial.value == m["split_scores"][0]
    assert m["n_params"] > 0 and m["fit_time"] > 0 and np.isfinite(m["val_loss"])
    assert 0.0 <= m["train_accuracy"] <= 1.0
    assert m["epochs_run"] == len(m["curve"]) == 2  # the best model's per-epoch val_accuracy
    assert max(m["curve"]) == pytest.approx(trial.value, abs=1e-6)  # exported = its best epoch
    page = (workdir / "reports" / "ak" / "index.html").read_text(encoding="utf-8")
    assert "autokeras" in page


def test_shim_dense_units_from_numpy_ints() -> None:
    """autokeras 3.0.0 builds Dense(np.int64(10)); Keras 3.15 wants a Python int."""
    pytest.importorskip("autokeras")
    import keras
    import keras_tuner

    ak = automl.import_autokeras()
    for head, units in ((ak.ClassificationHead(), 10), (ak.RegressionHead(), 3)):
        head.shape = (np.int64(units),)  # what Graph.set_io_shapes stores
        out = head.build(keras_tuner.HyperParameters(), keras.Input((6,)))
        assert tuple(out.shape) == (None, units)
        assert head.shape == (units,) and type(head.shape[0]) is int


def test_shims_are_applied_once_and_skip_tensorboard(monkeypatch: pytest.MonkeyPatch) -> None:
    """keras-tuner 1.4.8 imported tensorboard (not installed with TF 2.21) on every trial."""
    pytest.importorskip("autokeras")
    from autokeras.blocks import heads
    from keras_tuner.engine.tuner import Tuner

    ak = automl.import_autokeras()
    build, configure = heads.ClassificationHead.build, Tuner._configure_tensorboard_dir
    automl.apply_compat_shims(ak)
    assert heads.ClassificationHead.build is build and Tuner._configure_tensorboard_dir is configure
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # an import would fail
    assert Tuner._configure_tensorboard_dir(object(), [], None) is None


def test_missing_extra_is_one_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "autokeras", None)  # import autokeras -> ImportError
    spec = spec_from_dict(_raw())  # validation needs no autokeras: a stored study still loads
    for call in (automl.import_autokeras, automl.evaluator, lambda: loop.for_spec(spec)):
        with pytest.raises(SweeperError) as info:
            call()
        assert str(info.value) == automl.MISSING
    assert "pip install 'sweeper[automl]'" in automl.MISSING and "autokeras 3.0.0" in automl.MISSING


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"validation": {"kfold": 3}}, "validation.kfold: model 'autokeras' searches on one holdout split"),
        ({"validation": {"holdout": 0.2, "repeats": 2}}, "validation.repeats"),
        ({"training": {"epochs": 2, "optimizer__learning_rate": 0.01}}, "training.optimizer__learning_rate"),
        ({"params": {"model__tuner": ["greedy", "grid"]}}, "params.model__tuner: 'grid' is not an AutoKeras tuner"),
        ({"params": {"model__block_type": ["vgg"]}}, "params.model__block_type: 'vgg' is not an AutoKeras image block"),
        ({"params": {"model__max_trials": [0]}}, "params.model__max_trials[0]: 0 must be >= 1"),
        ({"params": {"model__dropout": [0.2]}}, "the model takes no parameter 'dropout'"),
        ({"callbacks": {"early_stopping": {"patience": 2}}}, "callbacks: model 'autokeras' does not use"),
        ({"pruner": "median"}, "pruner: model 'autokeras' runs one AutoKeras search per trial"),
    ],
)
def test_spec_refuses_what_autokeras_cannot_honour(overrides: dict[str, Any], expected: str) -> None:
    with pytest.raises(SpecError, match=re.escape(expected)):
        spec_from_dict(_raw(**overrides))


def test_spec_accepts_the_autokeras_knobs() -> None:
    spec = spec_from_dict(_raw(params={"model__max_trials": {"low": 1, "high": 3, "type": "int"},
                                       "model__tuner": ["greedy", "random"]}, method="random", trials=2))
    assert spec.model == "autokeras" and spec.fixed["model__block_type"] == "vanilla"


def test_it_is_not_a_keras_builder() -> None:
    from sweeper.config.models import builder_params, resolve_builder

    builder = resolve_builder("autokeras")
    assert builder_params(builder) == {"max_trials": 3, "tuner": "greedy", "block_type": None}
    with pytest.raises(SweeperError, match="not a Keras model builder"):
        builder({"X_shape_": (None, 8, 8, 1), "n_classes_": 10})
