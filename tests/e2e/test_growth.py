"""Growing a study: a changed sweep file that only widens the search continues the study (old
trials kept, never re-run; new grid points queued once); any other change is one line naming the
key, and nothing stored changes; `resume --trials N` raises a budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from conftest import write_sweep
from sweeper.cli import main
from sweeper.store.keys import REVISIONS_ATTR, SPEC_ATTR

GRID: dict[str, Any] = {
    "name": "grow", "trial_function": "trial_functions:quick",
    "params": {"model__units": [1, 2], "model__dropout": [0.1, 0.2], "batch_size": [16, 32]},
}


@pytest.fixture
def finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[tuple[int, float]]]:
    monkeypatch.chdir(tmp_path)
    path = write_sweep(tmp_path / "g.yaml", **GRID)
    assert main(["run", str(path), "--quiet", "--no-report"]) == 0
    return path, [(t.number, t.value) for t in study(tmp_path).get_trials()]


def study(tmp_path: Path, name: str = "grow") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'store.db'}")


def test_adding_a_grid_value_trains_only_the_new_points(tmp_path: Path, finished: Any) -> None:
    path, before = finished
    assert len(before) == 8
    grown = {**GRID, "params": {**GRID["params"], "model__units": [1, 2, 3]}}
    write_sweep(path, **grown)
    assert main(["run", str(path), "--quiet", "--no-report"]) == 0
    trials = study(tmp_path).get_trials()
    assert [(t.number, t.value) for t in trials[:8]] == before  # the old trials, untouched
    new = trials[8:]
    assert len(new) == 4 and {t.params["model__units"] for t in new} == {3}
    assert all(t.state == TrialState.COMPLETE for t in trials)
    attrs = study(tmp_path).user_attrs
    assert attrs[SPEC_ATTR]["params"]["model__units"] == [1, 2, 3]
    assert attrs[REVISIONS_ATTR][0]["first_trial"] == 8 and attrs[REVISIONS_ATTR][0]["previous"]["params"] == GRID["params"]
    assert main(["run", str(path), "--quiet", "--no-report"]) == 0  # the same file again: nothing new
    assert len(study(tmp_path).get_trials()) == 12


def test_report_marks_each_trials_revision(tmp_path: Path, finished: Any) -> None:
    from sweeper.report.collect import collect, plot_rows
    from sweeper.store.storage import make_storage
    from sweeper.store.studies import load

    path, _ = finished
    write_sweep(path, **{**GRID, "params": {**GRID["params"], "batch_size": [16, 32, 64]}})
    assert main(["run", str(path), "--quiet", "--no-report"]) == 0
    rows = plot_rows(collect(*load("grow", make_storage(f"sqlite:///{tmp_path / 'store.db'}"))))
    assert [r["revision"] for r in rows] == [0] * 8 + [1] * 4


REFUSED = {
    "training.epochs": {"training": {"epochs": 3, "batch_size": 32, "model__units": 16}},
    "data": {"data": {"dataset": "digits", "limit": 300}},
    "seed": {"seed": 7},
    "seeding": {"seeding": "scikeras"},
    "objective.metric": {"objective": "loss"},
    "validation": {"validation": {"kfold": 3}},
    "params.model__units": {"params": {**GRID["params"], "model__units": [1]}},
    "params: added": {"params": {**GRID["params"], "optimizer__learning_rate": [0.1]}},
    "method": {"method": "random", "trials": 20},
    "augmentation": {"augmentation": {"rotation": 10}},
}


@pytest.mark.parametrize("key", REFUSED)
def test_incomparable_changes_are_refused_naming_the_key(tmp_path: Path, finished: Any, key: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    path, before = finished
    spec_before = study(tmp_path).user_attrs[SPEC_ATTR]
    write_sweep(path, **{**GRID, **REFUSED[key]})
    capsys.readouterr()
    assert main(["run", str(path), "--quiet", "--no-report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0], err
    after = study(tmp_path)
    assert [(t.number, t.value) for t in after.get_trials()] == before
    assert after.user_attrs[SPEC_ATTR] == spec_before and REVISIONS_ATTR not in after.user_attrs


def test_resume_trials_raises_a_random_search_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_sweep(tmp_path / "r.yaml", name="rand", trial_function="trial_functions:quick", method="random",
                       trials=3, params={"model__units": {"low": 1, "high": 100}})
    assert main(["run", str(path), "--quiet", "--no-report"]) == 0
    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert main(["resume", "rand", "--storage", url, "--trials", "5", "--quiet", "--no-report"]) == 0
    trials = study(tmp_path, "rand").get_trials()
    assert len(trials) == 5 and all(t.state == TrialState.COMPLETE for t in trials)
    assert study(tmp_path, "rand").user_attrs[SPEC_ATTR]["trials"] == 5
    assert main(["resume", "rand", "--storage", url, "--trials", "2", "--quiet", "--no-report"]) == 2  # shrinking


def test_a_list_of_names_cannot_grow_optuna_fixes_its_choices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    names = {"name": "names", "trial_function": "trial_functions:quick", "params": {"model__activation": ["relu", "tanh"]}}
    path = write_sweep(tmp_path / "n.yaml", **names)
    assert main(["run", str(path), "--quiet", "--no-report"]) == 0
    write_sweep(path, **{**names, "params": {"model__activation": ["relu", "tanh", "elu"]}})
    capsys.readouterr()
    assert main(["run", str(path), "--quiet", "--no-report"]) == 2
    assert "params.model__activation: its values cannot change in this study" in capsys.readouterr().err
    assert len(study(tmp_path, "names").get_trials()) == 2
