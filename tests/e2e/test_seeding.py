"""``seeding: scikeras``: a sweep run through ``sweeper run`` scores every configuration, fold for
fold, as scikit-learn's ``GridSearchCV`` over ``KerasClassifier(random_state=seed)`` does with the
same folds, fused or not; ``make_estimator`` rebuilds such a trial's fold; the default seeding
does not score as the notebook; a bad value is one line and exit code 2 (a change of seeding on a
stored study: tests/e2e/test_growth.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from conftest import write_sweep
from optuna.trial import TrialState

from sweeper.cli import main

SEED = 3
GRID = {"optimizer": ["adam", "rmsprop"], "model__dropout": [0.0, 0.2], "epochs": [2, 3]}
FIXED = {"batch_size": 64, "model__units": 16, "model__batchnorm": True, "optimizer__learning_rate": 0.01}
SETTINGS: dict[str, Any] = {
    "data": {"dataset": "digits", "limit": 600}, "params": GRID, "training": FIXED,
    "validation": {"kfold": 3}, "seed": SEED,
}


def key(params: dict[str, Any]) -> str:
    return json.dumps({k: str(params[k]) for k in GRID}, sort_keys=True)


@pytest.fixture(scope="module")
def notebook(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[float]]:
    """Each configuration's three fold scores from GridSearchCV, the notebook way, on the sweep's
    own images and folds (StratifiedKFold(3, shuffle=True, random_state=seed)), with TensorFlow
    set up as a sweeper worker sets it up (Grappler's arithmetic rewrites on or off round a fold's
    borderline prediction differently: the same fits, another image right)."""
    from sweeper.train.runtime import configure_tensorflow

    configure_tensorflow()
    import keras
    from scikeras.wrappers import KerasClassifier
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from sweeper.config.spec import load_spec
    from sweeper.train.data import load_dataset
    from sweeper.train.models.mlp import build_mlp

    spec = load_spec(write_sweep(tmp_path_factory.mktemp("nb") / "s.yaml", **SETTINGS))
    ds = load_dataset(spec.data)
    classes = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop}
    clf = KerasClassifier(model=build_mlp, loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                          verbose=0, random_state=SEED, optimizer="adam", **FIXED)
    search = GridSearchCV(clf, {**GRID, "optimizer": list(classes.values())}, refit=False,
                          cv=StratifiedKFold(3, shuffle=True, random_state=SEED))
    search.fit(ds.x, ds.y)
    res = search.cv_results_
    out = {}
    for n, params in enumerate(res["params"]):
        named = {**params, "optimizer": params["optimizer"].__name__.lower()}
        out[key(named)] = [float(res[f"split{i}_test_score"][n]) for i in range(3)]
    return out


def sweep_scores(tmp_path: Path, name: str, **overrides: Any) -> dict[str, list[float]]:
    path = write_sweep(tmp_path / f"{name}.yaml", name=name, **{**SETTINGS, **overrides})
    assert main(["run", str(path), "--no-report", "--quiet"]) == 0
    trials = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'store.db'}").get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 8
    return {key(t.params): t.user_attrs["metrics"]["split_scores"] for t in trials}


@pytest.mark.parametrize("fuse", ["off", 8])
def test_scikeras_seeding_scores_as_gridsearchcv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 notebook: dict[str, list[float]], fuse: Any) -> None:
    monkeypatch.chdir(tmp_path)
    got = sweep_scores(tmp_path, "crn", seeding="scikeras", compute={"fuse": fuse})
    assert set(got) == set(notebook)
    for k, want in notebook.items():  # the same images right in every fold (1e-6: float32 against float64)
        assert np.abs(np.subtract(got[k], want)).max() < 1e-6, (k, got[k], want)
    assert len({s for v in got.values() for s in v}) > 3  # not one constant score


def test_a_scikeras_seeded_trial_is_rebuilt_by_make_estimator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              notebook: dict[str, list[float]]) -> None:
    """The notebook API: ``make_estimator(spec, params, spec.seed)`` fitted on a fold scores what
    the stored trial scored on it."""
    from sweeper import make_estimator
    from sweeper.config.spec import load_spec
    from sweeper.search.space import full_params
    from sweeper.train.data import load_dataset, splits

    monkeypatch.chdir(tmp_path)
    got = sweep_scores(tmp_path, "api", seeding="scikeras")
    spec = load_spec(tmp_path / "api.yaml")
    ds, params = load_dataset(spec.data), {"optimizer": "rmsprop", "model__dropout": 0.2, "epochs": 3}
    tr, va = splits(spec, ds)[1]
    est = make_estimator(spec, full_params(spec, params), spec.seed).fit(ds.x[tr], ds.y[tr])
    assert abs(est.score(ds.x[va], ds.y[va]) - got[key(params)][1]) < 1e-6


def test_default_seeding_is_not_the_notebooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              notebook: dict[str, list[float]]) -> None:
    monkeypatch.chdir(tmp_path)
    got = sweep_scores(tmp_path, "own")
    assert any(np.abs(np.subtract(got[k], notebook[k])).max() > 1e-6 for k in notebook)


def test_validate_names_the_seeding(capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(__file__).resolve().parents[2] / "sweeps" / "notebook_mlp_grid.yaml"
    assert main(["validate", str(path)]) == 0
    assert "; seeding scikeras (seed 42 for every configuration and fold)" in capsys.readouterr().out


def test_a_bad_seeding_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_sweep(tmp_path / "bad.yaml", seeding="per-fold")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "seeding: 'per-fold' is not one of trial, scikeras" in err[0], err
