"""Declarative training features: callbacks, augmentation, repeats, pruning, refit + submission."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_cli, write_sweep

from sweeper.config.spec import load_spec, spec_from_dict
from sweeper.errors import SpecError

BASE: dict[str, Any] = {"name": "t", "data": {"dataset": "digits", "limit": 300}, "model": "mlp",
                        "params": {"model__dropout": [0.0]}, "training": {"epochs": 6, "batch_size": 32, "model__units": 8},
                        "seed": 3}


def test_flips_are_refused_for_digits_and_augmentation_never_flips() -> None:
    with pytest.raises(SpecError, match=r"augmentation.horizontal_flip: flipping digits changes their class"):
        spec_from_dict({**BASE, "augmentation": {"horizontal_flip": True}}, source="a.yaml")
    spec = spec_from_dict({**BASE, "augmentation": {"rotation": 10, "width_shift": 0.25, "height_shift": 0.25,
                                                     "shear": 0.1, "zoom": 0.4}})
    from sweeper.search.space import full_params
    from sweeper.train.estimator import make_estimator

    est = make_estimator(spec, full_params(spec, {"model__dropout": 0.0}), 1)
    x = np.random.default_rng(0).random((16, 8, 8, 1)).astype("float32")
    est.fit(x, np.arange(16) % 4)
    names = [type(l).__name__ for l in est.model_.layers]
    assert {"RandomRotation", "RandomTranslation", "RandomShear", "RandomZoom"} <= set(names)
    assert "RandomFlip" not in names
    # Inference is untouched by augmentation: predictions are deterministic.
    assert np.array_equal(est.predict_proba(x), est.predict_proba(x))


def test_early_stopping_restores_the_best_epoch(tmp_path: Path) -> None:
    from sweeper.search.space import full_params
    from sweeper.train.data import load_dataset
    from sweeper.train.runtime import configure_tensorflow
    from sweeper.train.trial import run_trial

    configure_tensorflow()
    spec = spec_from_dict({**BASE, "training": {**BASE["training"], "epochs": 12, "optimizer__learning_rate": 0.05},
                           "callbacks": {"early_stopping": {"monitor": "val_accuracy", "patience": 2}}})
    r = run_trial(spec, load_dataset(spec.data), full_params(spec, {"model__dropout": 0.0}), 5)
    assert r.mean_test_score == pytest.approx(max(r.curve), abs=1e-6)
    assert r.epochs_run <= 12


def test_repeats_report_mean_and_std_over_seeds() -> None:
    from sweeper.search.space import full_params
    from sweeper.train.data import load_dataset
    from sweeper.train.runtime import configure_tensorflow
    from sweeper.train.trial import run_trial

    configure_tensorflow()
    spec = spec_from_dict({**BASE, "training": {**BASE["training"], "epochs": 2}, "validation": {"holdout": 0.3, "repeats": 3}})
    r = run_trial(spec, load_dataset(spec.data), full_params(spec, {"model__dropout": 0.0}), 5)
    assert len(r.split_scores) == 3 and len(set(r.split_scores)) > 1  # different seeds, different runs
    assert r.mean_test_score == pytest.approx(np.mean(r.split_scores))
    assert r.std_test_score == pytest.approx(np.std(r.split_scores))


def test_pruned_trial_is_recorded_as_pruned(tmp_path: Path) -> None:
    from sweeper.worker import loop
    from sweeper.store.storage import make_storage
    from sweeper.store.studies import create_or_load
    spec = load_spec(write_sweep(tmp_path / "p.yaml", name="prune", method="grid",
                                 params={"model__units": [1, 2, 3]}, trial_function="trial_functions:curve",
                                 pruner={"type": "median", "n_startup_trials": 1, "n_warmup_steps": 0}))
    study = create_or_load(spec, make_storage(spec.storage))
    loop.work(study, spec, loop.for_spec(spec))
    by_units = {t.params["model__units"]: t for t in study.get_trials()}
    assert by_units[1].state.name == "COMPLETE"
    assert by_units[2].state.name == "PRUNED"  # its curve is far below the median from epoch 0
    assert len(by_units[2].intermediate_values) == 1


def test_best_refits_and_writes_a_submission(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    header = "label," + ",".join(f"pixel{i}" for i in range(64))
    rows = [f"{y}," + ",".join(str(int(v)) for v in x) for x, y in zip(digits.data[:300], digits.target[:300])]
    (tmp_path / "train.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    test_rows = [f"{i}," + ",".join(str(int(v)) for v in x) for i, x in enumerate(digits.data[300:340], start=1)]
    (tmp_path / "test.csv").write_text("id," + ",".join(f"pixel{i}" for i in range(64)) + "\n" + "\n".join(test_rows) + "\n")
    sweep = write_sweep(tmp_path / "k.yaml", name="kaggle", data={"dataset": "csv", "path": str(tmp_path / "train.csv")},
                        params={"model__dropout": [0.0, 0.1]})
    assert run_cli("run", str(sweep), "--quiet", "--no-report", cwd=tmp_path).returncode == 0
    proc = run_cli("best", "kaggle", "--storage", f"sqlite:///{tmp_path / 'store.db'}", "--ensemble", "2",
                   "--predict", str(tmp_path / "test.csv"), "--submission", str(tmp_path / "sub.csv"),
                   "--label-column", "Category", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "reports" / "kaggle" / "best").glob("trial-*.keras"))) == 2
    import pandas as pd

    sub = pd.read_csv(tmp_path / "sub.csv")
    assert list(sub.columns) == ["id", "Category"]
    assert sorted(sub["id"]) == list(range(1, 41))
    assert set(sub["Category"]) <= set(range(10))
