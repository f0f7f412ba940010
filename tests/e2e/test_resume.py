"""Resume and workers: no trial lost or run twice, whatever happens (issue: kill -9, Ctrl-C,
several workers on one SQLite file)."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import optuna
import pytest
from conftest import PATIENCE_S, run_cli, start_run, wait_for, write_sweep

from sweeper.store.keys import OWNER_ATTR

GRID = list(range(1, 9))


def slow_grid(workdir: Path, name: str, points: list[int] = GRID):
    return write_sweep(workdir / f"{name}.yaml", name=name, trial_function="trial_functions:slow",
                       params={"model__units": points})


def load(workdir: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{workdir / 'store.db'}")


def states(workdir: Path, name: str) -> Counter:
    try:
        return Counter(t.state.name for t in load(workdir, name).get_trials())
    except Exception:  # store or study not created yet
        return Counter()


def owned_running(workdir: Path, name: str) -> int:
    try:
        trials = load(workdir, name).get_trials()
    except Exception:  # store or study not created yet
        return 0
    return sum(t.state.name == "RUNNING" and OWNER_ATTR in t.system_attrs for t in trials)


def assert_exactly_once(study: optuna.Study, points: list[int]) -> None:
    trials = study.get_trials()
    done = Counter(t.params["model__units"] for t in trials if t.state.name == "COMPLETE")
    assert done == Counter(points), f"completed per point: {dict(done)}"
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before_first_trial_ends", "mid_sweep", "during_last_trial"])
def test_sigkill_then_resume_completes_every_point_once(workdir: Path, when: str) -> None:
    sweep = slow_grid(workdir, "kill")
    # 1 s trials: the poll below (a study load) must land inside the last trial on a busy machine.
    proc = start_run(sweep, workdir, 1.0, text=False)
    target = {"before_first_trial_ends": 0, "mid_sweep": 4, "during_last_trial": len(GRID) - 1}[when]

    def at_target() -> bool:
        # One read, so COMPLETE and RUNNING are from the same moment; the running trial must carry
        # its owner record (a worker killed in the instant between claim and record leaves a trial
        # that is reaped only after the orphan delay: a different case, see reap_dead_trials).
        try:
            trials = load(workdir, "kill").get_trials()
        except Exception:  # store or study not created yet
            return False
        running = [t for t in trials if t.state.name == "RUNNING"]
        done = sum(t.state.name == "COMPLETE" for t in trials)
        return done >= target and len(running) == 1 and "sweeper:owner" in running[0].system_attrs

    wait_for(at_target)
    proc.kill()
    proc.wait()
    left = load(workdir, "kill").get_trials()
    before = {t.number: t.value for t in left if t.state.name == "COMPLETE"}
    assert [t.state.name for t in left].count("RUNNING") == 1, [t.state.name for t in left]  # left by the dead process

    resumed = run_cli("resume", "kill", "--storage", f"sqlite:///{workdir / 'store.db'}", "--quiet", cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr
    study = load(workdir, "kill")
    assert_exactly_once(study, GRID)
    after = {t.number: t.value for t in study.get_trials() if t.state.name == "COMPLETE"}
    assert before.items() <= after.items(), "a completed trial was lost or changed"
    dead = [t for t in study.get_trials() if t.state.name == "FAIL"]
    assert len(dead) == 1 and "died" in dead[0].user_attrs["error"]


def test_resume_twice_runs_nothing_again(workdir: Path) -> None:
    sweep = slow_grid(workdir, "again", [1, 2])
    assert run_cli("run", str(sweep), "--quiet", "--no-report", cwd=workdir).returncode == 0
    for _ in range(2):
        r = run_cli("resume", "again", "--storage", f"sqlite:///{workdir / 'store.db'}", "--quiet", "--no-report", cwd=workdir)
        assert r.returncode == 0, r.stderr
    assert len(load(workdir, "again").get_trials()) == 2


def test_ctrl_c_requeues_running_trial_and_store_stays_readable(workdir: Path) -> None:
    sweep = slow_grid(workdir, "ctrlc", [1, 2, 3])
    # Trials of a minute: the Ctrl-C lands in a running one however late the loop below sees it.
    proc = start_run(sweep, workdir, 60)
    # Once its owner record is stored the trial is inside run_one, whose Ctrl-C handler queues it
    # again. (A Ctrl-C in the milliseconds between the claim and that record leaves it RUNNING;
    # resume then re-queues it as a dead worker's trial: nothing is lost either way.)
    wait_for(lambda: owned_running(workdir, "ctrlc") == 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=PATIENCE_S)
    assert proc.returncode == 130, err
    assert "sweeper resume ctrlc" in err and "Traceback" not in err
    interrupted = [t for t in load(workdir, "ctrlc").get_trials() if t.state.name == "FAIL"]
    assert len(interrupted) == 1 and "interrupted" in interrupted[0].user_attrs["error"]
    r = run_cli("resume", "ctrlc", "--storage", f"sqlite:///{workdir / 'store.db'}", "--quiet", "--no-report", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert_exactly_once(load(workdir, "ctrlc"), [1, 2, 3])


@pytest.mark.slow
def test_four_workers_200_trials_no_lock_errors_no_duplicates(workdir: Path) -> None:
    sweep = write_sweep(workdir / "many.yaml", name="many", trial_function="trial_functions:quick",
                        params={"model__units": list(range(1, 21)), "model__dropout": [i / 10 for i in range(10)]})
    proc = run_cli("run", str(sweep), "--workers", "4", "--quiet", "--no-report", cwd=workdir, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "locked" not in proc.stderr.lower() and "Traceback" not in proc.stderr
    trials = load(workdir, "many").get_trials()
    assert len(trials) == 200 and all(t.state.name == "COMPLETE" for t in trials)
    assert len({(t.params["model__units"], t.params["model__dropout"]) for t in trials}) == 200


def test_killed_worker_trial_is_rerun_by_another(workdir: Path) -> None:
    sweep = slow_grid(workdir, "wkill")
    proc = start_run(sweep, workdir, 1, "--workers", "3")

    def running_owner() -> int | None:
        try:
            for t in load(workdir, "wkill").get_trials(states=(optuna.trial.TrialState.RUNNING,)):
                if "sweeper:owner" in t.system_attrs:
                    return int(t.system_attrs["sweeper:owner"]["pid"])
        except Exception:
            return None
        return None

    wait_for(lambda: running_owner() is not None)
    victim = running_owner()
    import os

    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=PATIENCE_S)
    study = load(workdir, "wkill")
    assert_exactly_once(study, GRID)
    dead = [t for t in study.get_trials() if t.state.name == "FAIL"]
    assert len(dead) == 1 and f"pid {victim}" in dead[0].user_attrs["error"]


def test_sampler_repeats_reuse_stored_results_instead_of_training_again(workdir: Path, monkeypatch) -> None:
    """A seeded sampler on a small discrete space proposes points again (optuna#3255): each
    point is trained once; a repeat stores its twin's result and says so."""
    calls = workdir / "calls.txt"
    monkeypatch.setenv("SWEEPER_TEST_CALLS", str(calls))
    sweep = write_sweep(workdir / "dup.yaml", name="dup", method="tpe", trials=12,
                        trial_function="trial_functions:counted", params={"model__units": [1, 2, 3]})
    res = run_cli("run", str(sweep), "--quiet", "--no-report", cwd=workdir)
    assert res.returncode == 0, res.stderr
    trials = load(workdir, "dup").get_trials()
    assert len(trials) == 12 and all(t.state.name == "COMPLETE" for t in trials)
    trained = calls.read_text().split()
    assert len(trained) == len(set(trained)) <= 3  # every point trained at most once
    by_number = {t.number: t for t in trials}
    repeats = [t for t in trials if "duplicate_of" in t.user_attrs]
    assert len(repeats) == 12 - len(trained) >= 9
    for t in repeats:
        twin = by_number[t.user_attrs["duplicate_of"]]
        assert twin.params == t.params and twin.value == t.value and "duplicate_of" not in twin.user_attrs
