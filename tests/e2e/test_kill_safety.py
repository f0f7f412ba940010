"""Nothing lost, nothing stuck: a study whose creator was killed between its writes, a trial whose
worker died between two of its params' writes, and a poison trial that kills its worker every
time. Each state is made with the same calls the killed process had made, on SQLite and
PostgreSQL, then the commands a user would type bring the study to its end."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from conftest import run_cli, write_sweep
from storages import dead_owner, store_url
from storages import postgres_url  # noqa: F401 - fixture
from sweeper.cli import main
from sweeper.config.spec import load_spec
from sweeper.store import optuna_internals as oi
from sweeper.store.keys import OWNER_ATTR, SPEC_ATTR
from sweeper.store.storage import make_storage
from sweeper.store.studies import create_or_load
from sweeper.store.trials import ask_new, claim_waiting

UNITS = [1, 2, 3]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.chdir(tmp_path)
    with store_url(request.param, tmp_path) as u:
        yield u


def quick_sweep(tmp_path: Path, url: str, **overrides: Any) -> Path:
    settings: dict[str, Any] = {"name": "k", "trial_function": "trial_functions:quick", "storage": url,
                                "params": {"model__units": UNITS, "model__dropout": [0.1]}}
    return write_sweep(tmp_path / "k.yaml", **{**settings, **overrides})


def cli(*args: str) -> int:
    return main([*args, "--quiet"])


def points(url: str) -> Counter[int]:
    trials = optuna.load_study(study_name="k", storage=make_storage(url)).get_trials()
    return Counter(t.params["model__units"] for t in trials if t.state == TrialState.COMPLETE)


def test_study_created_but_no_definition_stored_is_finished_by_run(tmp_path: Path, url: str) -> None:
    optuna.create_study(study_name="k", storage=make_storage(url), direction="maximize")  # killed right after this
    assert main(["show", "k", "--storage", url]) == 2  # "half-made ... finish it with: sweeper run"
    assert cli("run", str(quick_sweep(tmp_path, url)), "--no-report") == 0
    assert points(url) == Counter(UNITS)
    assert cli("resume", "k", "--storage", url, "--no-report") == 0
    assert points(url) == Counter(UNITS)


def test_study_killed_while_queueing_its_grid_is_finished_by_resume(tmp_path: Path, url: str) -> None:
    spec = load_spec(quick_sweep(tmp_path, url))
    study = optuna.create_study(study_name="k", storage=make_storage(url), direction="maximize")
    study.set_user_attr(SPEC_ATTR, spec.raw)
    study.enqueue_trial({"model__units": 1, "model__dropout": 0.1})  # killed after the first point
    assert cli("resume", "k", "--storage", url, "--no-report") == 0
    assert points(url) == Counter(UNITS)


def test_grid_trial_with_partial_params_is_queued_again(tmp_path: Path, url: str) -> None:
    spec = load_spec(quick_sweep(tmp_path, url))
    study = create_or_load(spec, make_storage(url))
    trial = claim_waiting(study)
    assert trial is not None
    trial.suggest_int("model__units", 1, 3)  # killed before model__dropout was stored (a grid's numbers are ranges)
    oi.storage_of(study).set_trial_system_attr(oi.trial_id(trial), OWNER_ATTR, dead_owner())
    assert cli("resume", "k", "--storage", url, "--no-report") == 0
    assert points(url) == Counter(UNITS)  # every grid point exactly once
    failed = [t for t in study.get_trials() if t.state == TrialState.FAIL]
    assert len(failed) == 1 and failed[0].params == {"model__units": 1}
    assert cli("resume", "k", "--storage", url, "--no-report", "--retry-failed") == 0  # nothing to retry
    assert points(url) == Counter(UNITS)


def test_sampler_trial_with_partial_params_does_not_count(tmp_path: Path, url: str) -> None:
    spec = load_spec(quick_sweep(tmp_path, url, method="random", trials=3,
                                 params={"model__units": {"low": 1, "high": 9}, "model__dropout": [0.1, 0.2]}))
    study = create_or_load(spec, make_storage(url))
    trial = ask_new(study)
    trial.suggest_int("model__units", 1, 9)  # killed before model__dropout was stored
    oi.storage_of(study).set_trial_system_attr(oi.trial_id(trial), OWNER_ATTR, dead_owner())
    assert cli("resume", "k", "--storage", url, "--no-report") == 0
    states = Counter(t.state for t in study.get_trials())
    assert states == Counter({TrialState.COMPLETE: 3, TrialState.FAIL: 1})


POISON: dict[str, Any] = {
    "name": "poison", "model": "user_models:poison", "params": {"model__units": [8, 13, 16]},
    "data": {"dataset": "digits", "limit": 120}, "training": {"epochs": 1, "batch_size": 32},
}


def poison_outcome(tmp_path: Path) -> tuple[Counter[int], list[str]]:
    """The completed points, and the reasons of the trials that count as failed."""
    from sweeper.store.progress import study_outcomes
    from sweeper.store.studies import load

    study, spec = load("poison", make_storage(f"sqlite:///{tmp_path / 'store.db'}"))
    done = Counter(t.params["model__units"] for t in study.get_trials() if t.state == TrialState.COMPLETE)
    return done, [o.reason or "" for o in study_outcomes(study, spec)[1] if o.kind == "failed"]


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_poison_trial_fails_after_the_retry_limit_and_the_sweep_completes(tmp_path: Path, workers: str) -> None:
    sweep = write_sweep(tmp_path / "p.yaml", **POISON)
    proc = run_cli("run", str(sweep), "--workers", workers, "--quiet", "--no-report", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    done, errors = poison_outcome(tmp_path)
    assert done == Counter({8: 1, 16: 1})
    assert len(errors) == 1 and "worker died 2 times running this trial (out of memory?)" in errors[0]


@pytest.mark.slow
def test_poison_trial_in_process_ends_in_one_resume(tmp_path: Path) -> None:
    """The run that trains the poison point dies with it; resume runs it alone, supervised, twice."""
    sweep = write_sweep(tmp_path / "p.yaml", **POISON)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    codes = [run_cli("run", str(sweep), "--quiet", "--no-report", cwd=tmp_path).returncode]
    codes.append(run_cli("resume", "poison", "--storage", url, "--quiet", "--no-report", cwd=tmp_path).returncode)
    assert codes == [137, 0]  # the process running the poison point dies once; resume isolates it
    done, errors = poison_outcome(tmp_path)
    assert done == Counter({8: 1, 16: 1}) and len(errors) == 1 and "worker died 2 times" in errors[0]


def test_reaper_killed_before_requeueing_a_dead_trial(tmp_path: Path, url: str) -> None:
    """Found by benchmarks/kill_soak.py: a process reaping a dead worker's trial was itself killed
    after failing the trial and before queueing its point again."""
    spec = load_spec(quick_sweep(tmp_path, url))
    study = create_or_load(spec, make_storage(url))
    trial = claim_waiting(study)
    assert trial is not None
    storage, tid = oi.storage_of(study), oi.trial_id(trial)
    space_params = {"model__units": 1, "model__dropout": 0.1}
    trial.suggest_int("model__units", 1, 3)
    trial.suggest_float("model__dropout", 0.1, 0.1)
    storage.set_trial_user_attr(tid, "error", "worker pid 1 on this host died while running this trial")
    storage.set_trial_user_attr(tid, "worker_died", True)
    storage.set_trial_state_values(tid, TrialState.FAIL)  # ... and the reaper was killed here
    assert study.trials[0].params == space_params
    assert cli("resume", "k", "--storage", url, "--no-report") == 0
    assert points(url) == Counter(UNITS)
