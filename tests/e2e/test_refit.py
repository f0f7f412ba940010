"""One fit for trials and refits: a stored trial, trained again on its own split, gives back its
stored curve and score (exactly, on CPU); the best-trial page shows both, equal; ``sweeper best``
refits on train+validation from the trial's own initial weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from conftest import write_sweep
from optuna.trial import TrialState
from support.pages import best_page_scores

from sweeper.cli import main
from sweeper.config.spec import load_spec
from sweeper.deliver import refit_on_split
from sweeper.search.space import full_params, trial_seed
from sweeper.train.data import load_dataset, splits
from sweeper.train.fit import fit_config, fit_seed

# Everything that draws random numbers in a fit: augmentation, dropout, batch order, callbacks.
SWEEP: dict[str, Any] = {
    "name": "refit",
    "data": {"dataset": "digits", "limit": 300},
    "model": "cnn",
    "params": {"model__dropout": [0.2, 0.4]},
    "training": {"epochs": 3, "batch_size": 32, "model__units": 16, "model__filters": 4},
    "augmentation": {"rotation": 10, "zoom": 0.2, "width_shift": 0.1},
    "callbacks": {"reduce_lr": {"monitor": "val_loss", "patience": 1}, "keep_best": True},
}


@pytest.fixture
def study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[optuna.Study, Path, str]:
    monkeypatch.chdir(tmp_path)
    path = write_sweep(tmp_path / "refit.yaml", **SWEEP)
    assert main(["run", str(path), "--no-report", "--quiet"]) == 0
    url = f"sqlite:///{tmp_path / 'store.db'}"
    return optuna.load_study(study_name="refit", storage=url), path, url


def test_a_stored_trial_refit_on_its_split_gives_its_stored_curve_back(study: Any) -> None:
    stored, path, _ = study
    spec = load_spec(path)
    ds = load_dataset(spec.data)
    for trial in stored.get_trials(states=(TrialState.COMPLETE,)):
        again = refit_on_split(spec, ds, trial)
        metrics = trial.user_attrs["metrics"]
        assert again.history["val_accuracy"] == metrics["curve"]
        assert again.score == trial.value == again.stored_score


def test_best_trial_page_shows_stored_and_refit_scores_equal(study: Any, tmp_path: Path) -> None:
    _, _, url = study
    assert main(["report", "refit", "--best", "--storage", url, "--out", str(tmp_path / "reports")]) == 0
    stored, refit = best_page_scores(tmp_path / "reports", "refit")
    assert stored is not None and stored == refit


def test_best_refits_on_all_labelled_data_from_the_trials_initial_weights(study: Any, tmp_path: Path) -> None:
    stored, path, url = study
    spec = load_spec(path)
    ds = load_dataset(spec.data)
    best = max(stored.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.value)
    params = full_params(spec, best.params)
    seed = fit_seed(spec, trial_seed(spec, params))
    tr, va = splits(spec, ds)[0]
    initial: list[list[np.ndarray]] = []

    def grab(model: Any) -> None:
        initial.append([np.array(w) for w in model.get_weights()])

    fit_config(spec, {**params, "epochs": 1}, seed, ds.x[tr], ds.y[tr], (ds.x[va], ds.y[va]), on_built=grab)
    fit_config(spec, {**params, "epochs": 1}, seed, ds.x, ds.y, None, on_built=grab)
    assert all(np.array_equal(a, b) for a, b in zip(*initial))
    assert main(["best", "refit", "--storage", url, "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "refit" / "best" / f"trial-{best.number}.keras").stat().st_size > 0


def test_a_study_made_before_the_seed_rule_refits_with_its_own_seeds(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Trial seeds leave ``epochs`` out since seed rule 2; a study made before (no rule stored, its
    seeds from every param) keeps its seeds: opened from its file or by name, its best trial's
    refit scores what it stored."""
    import sqlite3

    from sweeper.store.storage import make_storage
    from sweeper.store.studies import create_or_load
    from sweeper.worker import loop

    monkeypatch.chdir(tmp_path)
    path = write_sweep(tmp_path / "old.yaml", name="old", data={"dataset": "digits", "limit": 300}, model="mlp",
                       params={"epochs": [2, 3], "model__dropout": [0.2]}, training={"batch_size": 32, "model__units": 16})
    url = f"sqlite:///{tmp_path / 'store.db'}"
    spec = load_spec(path)
    spec.seed_rule = 1  # as the study's trials were seeded before the rule
    study = create_or_load(spec, make_storage(url))
    loop.work(study, spec, loop.for_spec(spec))
    with sqlite3.connect(tmp_path / "store.db") as db:  # an older store has no rule stored
        assert db.execute("DELETE FROM study_user_attributes WHERE key = 'sweeper:seed_rule'").rowcount == 1
    params = full_params(spec, {"epochs": 2, "model__dropout": 0.2})
    assert trial_seed(spec, params) != trial_seed(load_spec(path), params)  # the rules differ here
    again = load_spec(path)
    create_or_load(again, make_storage(url))
    assert again.seed_rule == 1
    assert main(["report", "old", "--best", "--storage", url, "--out", str(tmp_path / "reports")]) == 0
    stored, refit = best_page_scores(tmp_path / "reports", "old")
    assert stored is not None and stored == refit
