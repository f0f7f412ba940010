"""``stop: {patience, min_delta}`` ends a sweep once its trials stop improving, decided from the
stored trials so every worker stops alike, through the CLI with cheap trial functions: a sampler's
plateau, two workers on PostgreSQL, several objectives, a grid's unrun points; bad values are one
line. And a pruner acts on trials of several fits (k-fold): judged on each epoch's mean over them.
"""

from __future__ import annotations

import contextlib
import datetime
import io
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import PATIENCE_S, run_cli, write_sweep
from optuna.trial import FrozenTrial, TrialState
from storages import store_url

from sweeper.cli import main
from sweeper.config.sections import Stop
from sweeper.store.keys import OWNER_ATTR
from sweeper.store.stopping import rule_for, verdict
from sweeper.store.storage import make_storage

PATIENCE = 5
PLATEAU: dict[str, Any] = {  # improves for 3 trials, then scores the 3rd's value for ever
    "trial_function": "trial_functions:plateau", "method": "random", "trials": 50,
    "params": {"model__units": {"low": 1, "high": 10_000}}, "stop": {"patience": PATIENCE},
}
NO_GAIN = f"stopped: {PATIENCE} finished trials in a row did not improve the best"


def trials_of(name: str, url: str) -> list[FrozenTrial]:
    return optuna.load_study(study_name=name, storage=make_storage(url, must_exist=True, readonly=True)).get_trials()


def finished(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """In the order they finished."""
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]
    return sorted(done, key=lambda t: (t.datetime_complete, t.number))


def plateau_at(trials: list[FrozenTrial]) -> int:
    """How many trials had finished when the best value was first reached."""
    done = finished(trials)
    best = max(t.value for t in done)
    return next(i for i, t in enumerate(done, 1) if t.value == best)


def test_a_sampler_sweep_stops_on_its_plateau_and_resume_runs_nothing(workdir: Path) -> None:
    url = f"sqlite:///{workdir / 'store.db'}"
    path = write_sweep(workdir / "s.yaml", name="plateau", **PLATEAU)
    run = run_cli("run", str(path), "--quiet", "--no-report", cwd=workdir)
    assert run.returncode == 0, run.stderr
    assert f"plateau: 8/50 finished (8 complete, 0 pruned, 0 failed); {NO_GAIN}; best accuracy 0.3000" in run.stdout
    assert len(trials_of("plateau", url)) == 3 + PATIENCE and plateau_at(trials_of("plateau", url)) == 3
    show = run_cli("show", "plateau", "--storage", url, cwd=workdir)
    assert NO_GAIN in show.stdout.splitlines()[0]
    again = run_cli("resume", "plateau", "--storage", url, "--quiet", "--no-report", cwd=workdir)
    assert again.returncode == 0 and "plateau " + NO_GAIN + " (its stop rule); nothing to run" in again.stderr
    assert len(trials_of("plateau", url)) == 3 + PATIENCE
    # A larger budget is a new definition: the run counts again from it, and stops again.
    more = run_cli("resume", "plateau", "--storage", url, "--trials", "60", "--quiet", "--no-report", cwd=workdir)
    assert more.returncode == 0 and f"13/60 finished (13 complete, 0 pruned, 0 failed); {NO_GAIN}" in more.stdout
    assert NO_GAIN in run_cli("ls", "--storage", url, cwd=workdir).stdout


@pytest.mark.postgres
def test_two_workers_on_postgresql_both_stop_within_patience_of_the_plateau(workdir: Path) -> None:
    with store_url("postgresql", workdir) as url:
        path = write_sweep(workdir / "s.yaml", name="pg-plateau", storage=url, **PLATEAU)
        run = run_cli("run", str(path), "--workers", "2", "--no-report", "--quiet", cwd=workdir, timeout=PATIENCE_S)
        assert run.returncode == 0, run.stderr
        assert NO_GAIN in run.stdout and "exited with errors" not in run.stderr
        trials = trials_of("pg-plateau", url)
        assert all(t.state == TrialState.COMPLETE for t in trials)  # both workers finished theirs and left
        assert len({t.system_attrs[OWNER_ATTR]["pid"] for t in trials}) == 2  # each trained some
        # N trials after the plateau stop it; the other worker's trial then running may end too.
        assert PATIENCE <= len(finished(trials)) - plateau_at(trials) <= PATIENCE + 1, \
            [(t.number, t.value) for t in finished(trials)]


def test_several_objectives_stop_once_the_pareto_front_stays_unchanged(workdir: Path) -> None:
    path = write_sweep(workdir / "m.yaml", name="front", **{
        **PLATEAU, "trial_function": "trial_functions:pareto_plateau", "stop": {"patience": 4},
        "objective": [{"metric": "accuracy"}, {"metric": "n_params", "direction": "minimize"}]})
    run = run_cli("run", str(path), "--quiet", "--no-report", cwd=workdir)
    assert run.returncode == 0, run.stderr
    assert "7/50 finished (7 complete, 0 pruned, 0 failed); stopped: 4 finished trials in a row left the " \
           "Pareto front unchanged" in run.stdout


def test_a_grid_stops_with_its_other_points_left_queued(workdir: Path) -> None:
    url = f"sqlite:///{workdir / 'store.db'}"
    grid = {**PLATEAU, "method": "grid", "trials": None, "params": {"model__units": list(range(1, 13))},
            "stop": {"patience": 3}}
    path = write_sweep(workdir / "g.yaml", name="grid-stop", **grid)
    run = run_cli("run", str(path), "--quiet", "--reports", str(workdir / "reports"), cwd=workdir)
    stopped = "stopped: 3 finished trials in a row did not improve the best"
    assert run.returncode == 0 and f"6/12 finished (6 complete, 0 pruned, 0 failed); 6 queued; {stopped}" in run.stdout
    assert stopped in (workdir / "reports" / "grid-stop" / "index.html").read_text()  # the report's summary
    resumed = run_cli("resume", "grid-stop", "--storage", url, "--quiet", "--no-report", cwd=workdir)
    assert resumed.returncode == 0 and "nothing to run" in resumed.stderr and "--trials" not in resumed.stderr
    assert sum(t.state == TrialState.WAITING for t in trials_of("grid-stop", url)) == 6
    # Another stop rule grows the study (it changes no result): the run counts from the change.
    more = run_cli("run", str(path), "--set", "stop.patience=4", "--quiet", "--no-report", cwd=workdir)
    assert more.returncode == 0 and "10/12 finished" in more.stdout and "2 queued; stopped: 4" in more.stdout


def cli(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(args))
    return code, err.getvalue()


@pytest.mark.parametrize("stop,line", [
    ({"patience": 0}, "stop.patience: 0 must be >= 1"),
    ({"patience": 2.5}, "stop.patience: 2.5 is not an integer"),
    ({"patience": float("inf")}, "stop.patience: inf is not a finite number"),
    ({"patience": 10**7}, "stop.patience: 10000000 is more than the limit of 1,000,000 trials"),
    ({"patience": 3, "min_delta": -0.1}, "stop.min_delta: -0.1 must be >= 0"),
    ({"patience": 3, "min_delta": float("nan")}, "stop.min_delta: nan is not a finite number"),
    ({"patience": 3, "min_delta": 1e30}, "stop.min_delta: 1e+30 is more than the limit of 1,000,000"),
    ({"patience": 3, "delta": 0.1}, "stop.delta: unknown key (allowed: min_delta, patience)"),
    ({"min_delta": 0.1}, "stop.patience: missing"),
    (5, "stop: 5 is not a mapping"),
])
def test_bad_stop_values_are_one_line_exit_2_and_nothing_stored(workdir: Path, stop: Any, line: str) -> None:
    path = write_sweep(workdir / "bad.yaml", **{**PLATEAU, "stop": stop})
    for command in ("validate", "run"):
        code, err = cli(command, str(path))
        assert code == 2 and err.count("\n") == 1 and line in err, err
    assert not (workdir / "store.db").exists()


T0 = datetime.datetime(2025, 1, 1)


def _trials(values: list[float | None]) -> list[FrozenTrial]:
    """Trials finished in this order, a second apart: a number completes, None fails."""
    return [FrozenTrial(number=i, state=TrialState.FAIL if v is None else TrialState.COMPLETE, value=v,
                        datetime_start=T0, datetime_complete=T0 + datetime.timedelta(seconds=i), params={},
                        distributions={}, user_attrs={}, system_attrs={}, intermediate_values={}, trial_id=i)
            for i, v in enumerate(values)]


@pytest.mark.parametrize("values,patience,min_delta,changed_after,stops", [
    ([0.5, 0.5, None, 0.4], 3, 0.0, None, True),  # an equal value, a failure, a worse one: nothing gained
    ([None, None, None, 0.5, 0.5], 3, 0.0, None, False),  # the run starts with the first completed trial
    ([0.5, 0.5, 0.9, 0.5, 0.5], 3, 0.0, None, False),  # a gain starts it again
    ([0.5, 0.51, 0.52, 0.53], 3, 0.05, None, True),  # small gains are measured from the run's first best
    ([0.5, 0.52, 0.54, 0.56, 0.58], 4, 0.05, None, False),  # ... so they cannot creep on for ever
    ([0.5, 0.5, 0.5, 0.5, 0.9], 3, 0.0, None, True),  # the verdict stands: a later gain does not undo it
    ([0.5, 0.5, 0.5, 0.5, 0.5], 3, 0.0, 2, False),  # a changed definition counts what finished after it
    ([0.5, 0.5, 0.5, 0.5, 0.5, 0.5], 3, 0.0, 2, True),
])
def test_the_verdict(values: list[float | None], patience: int, min_delta: float, changed_after: int | None,
                     stops: bool) -> None:
    trials = _trials(values)
    revisions = None if changed_after is None else [
        {"changes": ["stop"], "last_complete": trials[changed_after].datetime_complete.isoformat()}]
    rule = rule_for(Stop(patience, min_delta), ["maximize"], revisions)
    assert rule is not None and (verdict(trials, rule) is not None) == stops


@pytest.mark.parametrize("fuse", ["off", 2])
def test_a_pruner_judges_k_fold_trials_on_their_mean_curve(workdir: Path, fuse: Any) -> None:
    """3-fold trials of a tiny Keras sweep: the third point learns nothing (lr 1e-6) and the median
    pruner stops it at its first judged epoch; the others report their whole mean curve."""
    url = f"sqlite:///{workdir / 'store.db'}"
    path = write_sweep(workdir / "k.yaml", name="kfold-prune", data={"dataset": "digits", "limit": 300},
                       params={"optimizer__learning_rate": [0.01, 0.02, 1e-6]},
                       training={"epochs": 3, "batch_size": 32, "model__units": 16, "optimizer": "adam"},
                       validation={"kfold": 3}, compute={"fuse": fuse},
                       pruner={"type": "median", "n_startup_trials": 2, "n_warmup_steps": 0})
    ok = run_cli("validate", str(path), cwd=workdir)
    assert "pruner median (3 fits per trial" in ok.stdout and "each epoch's mean over the fits" in ok.stdout
    run = run_cli("run", str(path), "--quiet", "--no-report", cwd=workdir)
    assert run.returncode == 0 and "3/3 finished (2 complete, 1 pruned, 0 failed)" in run.stdout, run.stderr
    by_lr = {t.params["optimizer__learning_rate"]: t for t in trials_of("kfold-prune", url)}
    assert by_lr[1e-6].state == TrialState.PRUNED and list(by_lr[1e-6].intermediate_values) == [0]
    for lr in (0.01, 0.02):
        t = by_lr[lr]
        assert t.state == TrialState.COMPLETE and len(t.user_attrs["metrics"]["split_scores"]) == 3
        assert ("fused" in t.user_attrs["metrics"]["model"]) == (fuse != "off")
        assert [t.intermediate_values[e] for e in range(3)] == pytest.approx(t.user_attrs["metrics"]["curve"])
