"""A killed sweep loses no trial; a worker's death counts only against the trial that caused it.

Through ``sweeper run`` / ``resume`` as a user runs them: SIGKILL of the sweep (in-process,
``--workers 2``, a fused pack) never fails a trial, however often; a trial that kills its own
worker (the test fault ``SWEEPER_TEST_EXIT_ON``, which ends the process as the OOM killer would
when that configuration trains) fails alone after ``max_worker_deaths`` deaths seen by its
supervisor, and its pack-mates complete with the scores of a clean run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import cli_env, run_cli, write_sweep
from optuna.trial import FrozenTrial, TrialState
from storages import postgres_url, store_url  # noqa: F401 - fixture

from sweeper.store.keys import OWNER_ATTR, SUSPECT_ATTR
from sweeper.store.progress import progress
from sweeper.store.storage import make_storage
from sweeper.store.studies import load

FAULT = "SWEEPER_TEST_EXIT_ON"
CHEAP: dict[str, Any] = {"trial_function": "trial_functions:slow", "params": {"model__units": [1, 2, 3, 4]}}
FUSED: dict[str, Any] = {
    "data": {"dataset": "digits", "limit": 400}, "model": "mlp",
    "params": {"model__dropout": [0.0, 0.1, 0.2, 0.3]},
    "training": {"epochs": 30, "batch_size": 32, "model__units": 16},
    "compute": {"fuse": 4},
}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with store_url(request.param, tmp_path) as u:
        yield u


def start(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "sweeper", *args, "--quiet", "--no-report"], cwd=tmp_path,
                            env={**cli_env(), **(env or {})}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def trials(url: str, name: str) -> list[FrozenTrial]:
    return optuna.load_study(study_name=name, storage=make_storage(url)).get_trials()


def kill_when_running(proc: subprocess.Popen[bytes], url: str, name: str, n: int, timeout: float = 180,
                      parent_only: bool = False) -> None:
    """SIGKILL the sweep's process once ``n`` trials are RUNNING with owner records of live
    processes (then its process group, as an operator's kill -9 of a stuck job would leave nothing
    behind, unless ``parent_only``: its workers are orphaned, as when only the parent is OOM-killed)."""
    import psutil

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        try:
            running = [t for t in trials(url, name) if t.state == TrialState.RUNNING
                       and psutil.pid_exists(t.system_attrs.get(OWNER_ATTR, {}).get("pid", -1))]
        except KeyError:
            running = []  # the study is not created yet
        if len(running) >= n:
            time.sleep(0.3)
            os.kill(proc.pid, signal.SIGKILL)
            if parent_only:
                proc.wait()
                return
            time.sleep(0.2)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            return
        time.sleep(0.1)
    raise AssertionError(f"never {n} trials running")


def scores(ts: list[FrozenTrial]) -> dict[str, float]:
    return {json.dumps(t.params, sort_keys=True): t.value for t in ts if t.state == TrialState.COMPLETE}


def counts(url: str, name: str) -> Any:
    study, spec = load(name, make_storage(url))
    return progress(study, spec)


def test_a_sweep_killed_three_times_loses_no_trial(tmp_path: Path, url: str) -> None:
    sweep = write_sweep(tmp_path / "k.yaml", name="k", storage=url, **CHEAP)
    env = {"SWEEPER_TEST_SLEEP": "30"}
    for _ in range(3):  # each kill lands while a trial (a suspect, after the first) trains
        kill_when_running(start(tmp_path, "run", str(sweep), env=env), url, "k", 1)
    assert any(t.user_attrs.get(SUSPECT_ATTR) for t in trials(url, "k"))
    shown = run_cli("show", "k", "--storage", url, cwd=tmp_path)
    assert "suspects (1: each runs alone next" in shown.stdout, shown.stdout
    report = run_cli("report", "k", "--storage", url, "--out", str(tmp_path / "reports"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "reports" / "k" / "index.html").read_text()
    assert "Suspects (each runs alone next) (1)" in page and "died while running this trial" in page
    done = run_cli("resume", "k", "--storage", url, "--quiet", "--no-report", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    prog = counts(url, "k")
    assert (prog.complete, prog.failed, prog.suspects) == (4, 0, 0), prog.text()


def test_a_sweep_of_two_workers_killed_loses_no_trial(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    sweep = write_sweep(tmp_path / "k.yaml", name="k", storage=url, **CHEAP)
    for _ in range(2):
        kill_when_running(start(tmp_path, "run", str(sweep), "--workers", "2", env={"SWEEPER_TEST_SLEEP": "30"}),
                          url, "k", 1)
    done = run_cli("run", str(sweep), "--workers", "2", "--quiet", "--no-report", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    prog = counts(url, "k")
    assert (prog.complete, prog.failed) == (4, 0), prog.text()


def test_a_trial_that_kills_its_worker_fails_alone(tmp_path: Path, url: str) -> None:
    sweep = write_sweep(tmp_path / "k.yaml", name="k", storage=url, **CHEAP)
    env = {**cli_env(), FAULT: json.dumps({"model__units": 3}), "SWEEPER_TEST_SLEEP": "0"}
    first = subprocess.run([sys.executable, "-m", "sweeper", "run", str(sweep), "--quiet", "--no-report"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 137  # the sweep's own process ran it
    again = subprocess.run([sys.executable, "-m", "sweeper", "resume", "k", "--storage", url, "--no-report"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    ts = trials(url, "k")
    prog = counts(url, "k")
    assert (prog.complete, prog.failed) == (3, 1), prog.text()
    failed = [t for t in ts if t.state == TrialState.FAIL and "worker died 2 times" in t.user_attrs.get("error", "")]
    assert [t.params["model__units"] for t in failed] == [3]
    assert "ended with exit code 137 while running this trial alone" in failed[0].user_attrs["error"]
    assert "1 failed" in again.stdout
    # The worker a supervisor starts for suspects says where it runs as its supervisor does.
    places = [t.user_attrs["placement"] for t in ts]
    assert {(p["engine"], p["worker"]) for p in places} == {("local", 0)}
    assert len({p["pid"] for p in places}) >= 3  # run, resume, and the supervised workers of the suspect


@pytest.mark.slow
def test_a_fused_pack_killed_three_times_scores_as_a_clean_run(tmp_path: Path, url: str) -> None:
    sweep = write_sweep(tmp_path / "f.yaml", name="f", storage=url, **FUSED)
    kill_when_running(start(tmp_path, "run", str(sweep)), url, "f", 4)  # the pack of 4 trains
    for _ in range(2):
        kill_when_running(start(tmp_path, "run", str(sweep)), url, "f", 1)  # a suspect trains alone
    done = run_cli("run", str(sweep), "--quiet", "--no-report", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    clean = write_sweep(tmp_path / "c.yaml", name="c", storage=f"sqlite:///{tmp_path / 'clean.db'}", **FUSED)
    assert run_cli("run", str(clean), "--quiet", "--no-report", cwd=tmp_path).returncode == 0
    got, want = scores(trials(url, "f")), scores(trials(f"sqlite:///{tmp_path / 'clean.db'}", "c"))
    assert counts(url, "f").failed == 0 and set(got) == set(want)
    assert all(abs(got[k] - want[k]) < 1e-6 for k in want), (got, want)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["in-process", "workers-2"])
def test_an_unfused_keras_sweep_killed_three_times_scores_as_a_clean_run(tmp_path: Path, workers: list[str]) -> None:
    """The fused grid's Keras trials, unfused: SIGKILL of the sweep (in-process; with 2 workers,
    the parent alone) three times while trials train, then ``run`` again: every point complete,
    none failed, each score what a clean run stores."""
    unfused = {**FUSED, "compute": {"fuse": "off"}, "training": {**FUSED["training"], "epochs": 12}}
    url = f"sqlite:///{tmp_path / 'store.db'}"
    sweep = write_sweep(tmp_path / "u.yaml", name="u", storage=url, **unfused)
    orphans = []
    try:
        for _ in range(3):
            proc = start(tmp_path, "run", str(sweep), *workers)
            orphans.append(proc.pid)
            kill_when_running(proc, url, "u", 1, parent_only=bool(workers))
        done = run_cli("run", str(sweep), *workers, "--quiet", "--no-report", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    finally:
        for pid in orphans:  # workers left by a parent-only kill
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    prog = counts(url, "u")
    assert (prog.complete, prog.failed) == (4, 0), prog.text()
    clean = write_sweep(tmp_path / "c.yaml", name="c", storage=f"sqlite:///{tmp_path / 'clean.db'}", **unfused)
    assert run_cli("run", str(clean), "--quiet", "--no-report", cwd=tmp_path).returncode == 0
    got, want = scores(trials(url, "u")), scores(trials(f"sqlite:///{tmp_path / 'clean.db'}", "c"))
    assert set(got) == set(want) and all(abs(got[k] - want[k]) < 1e-6 for k in want), (got, want)


@pytest.mark.slow
def test_a_poison_member_fails_alone_and_its_pack_mates_score_as_a_clean_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    sweep = write_sweep(tmp_path / "f.yaml", name="f", storage=url, **{**FUSED, "training": {**FUSED["training"],
                                                                                          "epochs": 3}})
    env = {**cli_env(), FAULT: json.dumps({"model__dropout": 0.2})}
    cmd = [sys.executable, "-m", "sweeper", "run", str(sweep), "--quiet", "--no-report"]
    assert subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, timeout=300).returncode == 137
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    prog = counts(url, "f")
    assert (prog.complete, prog.failed) == (3, 1), prog.text()
    clean = write_sweep(tmp_path / "c.yaml", name="c", storage=f"sqlite:///{tmp_path / 'clean.db'}",
                        **{**FUSED, "training": {**FUSED["training"], "epochs": 3}})
    assert run_cli("run", str(clean), "--quiet", "--no-report", cwd=tmp_path).returncode == 0
    got, want = scores(trials(url, "f")), scores(trials(f"sqlite:///{tmp_path / 'clean.db'}", "c"))
    del want[json.dumps({"model__dropout": 0.2})]
    assert set(got) == set(want) and all(abs(got[k] - want[k]) < 1e-6 for k in want), (got, want)
