"""Kept models (``artifacts: {keep: K}``), through ``sweeper run`` on 400 sklearn digits: each kept
model, loaded with ``keras.models.load_model``, gets the images of its trial's own validation
split right that the trial was scored on (unfused, and fused pack members, those whose pack
trained on past their weights included); only the best K trials keep models, in the store folder
and on the trials; k-fold keeps every fold's model and ``best --stored`` averages them without the
training data (the training CSV is deleted first: nothing could be trained); a bad ``artifacts``
value is one line, exit 2."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
from conftest import run_cli, write_sweep
from optuna.trial import FrozenTrial, TrialState
from support.kept import assert_right_on_own_split, kept_ids, run

from sweeper.config.spec import spec_from_dict
from sweeper.errors import SweeperError
from sweeper.store.artifacts import kept_numbers
from sweeper.store.keys import KEPT_ATTR, REMOVED_PREFIX
from sweeper.store.progress import ranked

GRID = {"model__batchnorm": [True, False], "model__dropout": [0.0, 0.2]}  # write_sweep's: 4 trials


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def stored_files(tmp_path: Path) -> set[str]:
    """The files in the artifact folder beside the store (store.db -> store.artifacts/)."""
    return {p.name for p in (tmp_path / "store.artifacts").iterdir()}


def load(tmp_path: Path, artifact_id: str) -> Any:
    """A kept file loaded with plain Keras (Keras wants the .keras suffix, which artifact ids lack)."""
    import keras

    copy = tmp_path / "loaded" / f"{artifact_id}.keras"
    copy.parent.mkdir(exist_ok=True)
    shutil.copyfile(tmp_path / "store.artifacts" / artifact_id, copy)
    return keras.models.load_model(copy)


def assert_scores_as_stored(tmp_path: Path, sweep: Any, t: FrozenTrial) -> None:
    """Every kept fit's model gets right, on its own validation split, the images its score counts."""
    assert_right_on_own_split(sweep, t, [load(tmp_path, i) for i in kept_ids(t)])


def test_the_best_k_keep_models_that_score_as_stored_and_the_rest_are_removed(tmp_path: Path) -> None:
    study, sweep = run(tmp_path, "top", params=GRID, artifacts={"keep": 2})
    trials = study.get_trials()
    best = {t.number for t in ranked(trials, "maximize")[:2]}
    removed = {int(k.rsplit(":", 1)[1]): v for k, v in study.user_attrs.items() if k.startswith(REMOVED_PREFIX)}
    assert removed, "no trial was pushed out: this grid no longer tests removal"
    assert {t.number for t in trials if kept_ids(t)} == best | set(removed) and not best & set(removed)
    # Only the best two trials' files are in the folder; the pushed-out trials' ids are marked removed.
    assert stored_files(tmp_path) == {i for t in trials if t.number in best for i in kept_ids(t)}
    for number, ids in removed.items():
        assert ids == kept_ids(trials[number]) and not set(ids) & stored_files(tmp_path)
    for t in trials:
        optuna_ids = {k.split(":", 1)[1] for k in t.system_attrs if k.startswith("artifacts:")}
        assert optuna_ids == set(kept_ids(t))  # Optuna's own record of each upload
        if t.number in best:
            assert_scores_as_stored(tmp_path, sweep, t)
    out = run_cli("show", "top", "--storage", f"sqlite:///{tmp_path / 'store.db'}", "--trial", str(min(removed)),
                  cwd=tmp_path)
    assert f"{KEPT_ATTR}: removed (pushed out" in out.stdout, out.stderr
    # The notebook API: a kept trial's model, or one line naming what is missing.
    assert sweep.model(min(best)).count_params() == trials[0].user_attrs["metrics"]["n_params"]
    for number, words in [(min(set(range(4)) - best), "not kept|removed"), (7, "has no trial 7")]:
        with pytest.raises(SweeperError, match=words):
            sweep.model(number)


def test_fused_members_keep_plain_keras_models_that_score_as_stored(tmp_path: Path) -> None:
    """Packs of 4, trials that differ only in epochs riding on one member: the shorter ones' weights
    are not the member's last, and are kept all the same."""
    study, sweep = run(tmp_path, "fused", params={"epochs": [2, 3], "model__dropout": [0.0, 0.2]},
                       compute={"fuse": 4}, artifacts={"keep": "all"})
    trials = study.get_trials()
    assert all(t.user_attrs["metrics"]["model"]["fused"] == {"pack_trials": 4, "pack_fits": 2, "batch_size": 32}
               for t in trials)
    assert len(stored_files(tmp_path)) == 4
    for t in trials:
        assert_scores_as_stored(tmp_path, sweep, t)


def test_k_fold_keeps_every_fold_and_best_stored_needs_no_training_data(tmp_path: Path) -> None:
    from support.images import digits_csv, write_image_csv

    train = digits_csv(tmp_path / "train.csv", n=300)
    study, sweep = run(tmp_path, "folds", data={"dataset": "csv", "path": str(train)},
                       params={"model__dropout": [0.0, 0.2]}, validation={"kfold": 2}, artifacts={"keep": 1})
    best = ranked(study.get_trials(), "maximize")[0]
    assert [(f["split"], f["repeat"]) for f in best.user_attrs[KEPT_ATTR]["fits"]] == [(0, 0), (1, 0)]
    assert_scores_as_stored(tmp_path, sweep, best)
    from sklearn.datasets import load_digits

    digits = load_digits()
    test = write_image_csv(tmp_path / "test.csv", digits.images[300:340].astype(int), np.arange(40), "id")
    train.unlink()  # nothing could be trained now
    url = f"sqlite:///{tmp_path / 'store.db'}"
    out = run_cli("best", "folds", "--storage", url, "--stored", "--predict", str(test),
                  "--submission", str(tmp_path / "sub.csv"), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"trial {best.number} " in out.stdout and "2 kept model(s) loaded, nothing trained" in out.stdout
    written = sorted(p.name for p in (tmp_path / "out" / "folds" / "best").iterdir())
    assert written == [f"trial-{best.number}-fold-0.keras", f"trial-{best.number}-fold-1.keras"]
    # The submission is the mean of the two fold models' probabilities, on pixels scaled as in training.
    x = digits.images[300:340].astype("float32")[..., None] / 16.0
    proba = np.mean([load(tmp_path, i).predict(x, verbose=0) for i in kept_ids(best)], axis=0)
    sub = pd.read_csv(tmp_path / "sub.csv")
    assert list(sub["id"]) == list(range(40)) and list(sub["label"]) == list(proba.argmax(1))
    # A refit (no --stored) needs the training rows, which are gone.
    assert run_cli("best", "folds", "--storage", url, cwd=tmp_path).returncode == 2


@pytest.mark.parametrize("artifacts, storage, words", [
    ({"keep": 0}, None, "artifacts.keep: 0 must be >= 1"),
    ({"keep": "best"}, None, "artifacts.keep: 'best' is not a number; give K >= 1 or all"),
    ({"store": "models"}, None, "artifacts.keep: missing"),
    ({"keep": 2, "folder": "x"}, None, "artifacts.folder: unknown key (allowed: keep, store)"),
    ({"keep": 2}, "postgresql://u@db/sweeps", "artifacts.store: needed: storage postgresql://u@db/sweeps"),
])
def test_a_bad_artifacts_value_is_one_line(tmp_path: Path, artifacts: Any, storage: str | None, words: str) -> None:
    extra = {"storage": storage} if storage else {}
    path = write_sweep(tmp_path / "bad.yaml", name="bad", artifacts=artifacts, **extra)
    out = run_cli("validate", str(path), cwd=tmp_path)
    assert out.returncode == 2 and words in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_a_run_on_a_store_with_no_folder_beside_it_is_refused_before_anything_is_stored(tmp_path: Path) -> None:
    path = write_sweep(tmp_path / "journal.yaml", name="journal", artifacts={"keep": 1})
    out = run_cli("run", str(path), "--storage", f"journal:///{tmp_path / 'j.log'}", "--quiet", cwd=tmp_path)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "artifacts.store: needed: storage journal:///" in out.stderr
    assert not (tmp_path / "j.log").exists()


def frozen(number: int, values: list[float], infeasible: bool = False) -> FrozenTrial:
    from sweeper.store import optuna_internals as oi

    t = optuna.trial.create_trial(state=TrialState.COMPLETE, values=values,
                                  system_attrs={oi.constraints_key(): [1.0 if infeasible else -1.0]})
    t.number = number
    return t


def test_which_trials_keep_models() -> None:
    """The best K (ties to the earlier trial, infeasible left out), the Pareto set up to K best first
    by the first objective, or every completed trial."""
    base = {"name": "k", "data": "digits", "params": {"model__dropout": [0.0, 0.2]}}
    one = [frozen(0, [0.5]), frozen(1, [0.9], infeasible=True), frozen(2, [0.7]), frozen(3, [0.7]), frozen(4, [0.6])]
    assert kept_numbers(one, spec_from_dict({**base, "artifacts": {"keep": 2}})) == {2, 3}
    assert kept_numbers(one, spec_from_dict({**base, "artifacts": {"keep": 1}})) == {2}
    assert kept_numbers(one, spec_from_dict({**base, "artifacts": {"keep": "all"}})) == {0, 1, 2, 3, 4}
    assert kept_numbers(one, spec_from_dict(base)) == set()
    two = spec_from_dict({**base, "objective": ["accuracy", "n_params"], "artifacts": {"keep": 2}})
    pareto = [frozen(0, [0.9, 500]), frozen(1, [0.8, 100]), frozen(2, [0.7, 50]), frozen(3, [0.6, 600])]
    assert kept_numbers(pareto, two) == {0, 1}  # the front is 0, 1, 2; the best two by accuracy
