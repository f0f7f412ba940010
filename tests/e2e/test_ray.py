"""``sweeper run --engine ray``: workers as Ray tasks on a Ray cluster.

The cluster is a real one of two nodes on this host (ray.cluster_utils: a head and a second
raylet), each declaring two logical GPUs: there is no GPU here, so Ray assigns GPU ids and sets
CUDA_VISIBLE_DEVICES for trials that never touch a GPU (cheap trial functions). One cluster
serves the module's slow tests and is shut down at its end. Bad inputs that need no cluster
(an address where nothing answers, Ray missing, options the engine cannot honour) are fast
tests of the default set."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import optuna
import pytest
from conftest import PATIENCE_S, cli_env, run_cli, wait_for, write_sweep
from optuna.trial import TrialState
from storages import free_port, postgres_url  # noqa: F401 - fixture

from sweeper.store.keys import OWNER_ATTR, PLACEMENT_ATTR

GRID = list(range(1, 9))
NODE_GPUS = 2  # per node: 4 workers x 0.5 GPU fit on either node, and on both


def sweep(tmp_path: Path, name: str, storage: str | None = None, points: list[int] = GRID) -> Path:
    return write_sweep(tmp_path / f"{name}.yaml", name=name, trial_function="trial_functions:slow",
                       params={"model__units": points},
                       storage=storage or f"sqlite:///{tmp_path / 'store.db'}")


def env(sleep: str = "1.0") -> dict[str, str]:
    return {**{k: v for k, v in cli_env().items() if k not in ("SWEEPER_ENGINE", "RAY_ADDRESS")},
            "SWEEPER_TEST_SLEEP": sleep}


def study_of(url: str, name: str) -> optuna.Study:
    from sweeper.store.storage import make_storage  # postgresql:// URLs as users write them

    return optuna.load_study(study_name=name, storage=make_storage(url, must_exist=True))


def assert_every_point_once(study: optuna.Study, points: list[int] = GRID) -> None:
    trials = study.get_trials()
    done = Counter(t.params["model__units"] for t in trials if t.state == TrialState.COMPLETE)
    assert done == Counter(points), f"completed per point: {dict(done)}"
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def assert_refused(done: subprocess.CompletedProcess[str], *words: str) -> None:
    """Bad input: exit 2, one line naming it, no traceback."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("sweeper: error: "), done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def run(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sweeper", *args], cwd=tmp_path, env=env(),
                          capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- fast: refused before Ray starts
def test_an_address_where_no_ray_answers_is_refused_and_creates_nothing(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    done = run(tmp_path, "run", str(sweep(tmp_path, "rx")), "--engine", "ray", "--address", address, "--workers", "2")
    assert_refused(done, f"--address {address}", "no Ray cluster answers")
    assert not (tmp_path / "store.db").exists()  # the study was not created


def test_without_ray_installed_engine_ray_is_one_line(tmp_path: Path) -> None:
    """Ray made unimportable (as where the extra is not installed): one line naming the extra."""
    code = ("import sys; sys.modules['ray'] = None; from sweeper.cli import main; "
            f"sys.exit(main(['run', {str(sweep(tmp_path, 'rx'))!r}, '--engine', 'ray', '--workers', '2']))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env(), capture_output=True, text=True,
                          timeout=120)
    assert_refused(done, "pip install 'sweeper[ray]'")
    assert not (tmp_path / "store.db").exists()


@pytest.mark.parametrize("args, words", [
    (["--engine", "ray"], ["--engine ray needs --workers N"]),
    (["--engine", "ray", "--workers", "2", "--gpus", "0"], ["--gpus: not with --engine ray", "--gpus-per-worker"]),
    (["--engine", "ray", "--workers", "2", "--trials-per-gpu", "2"], ["--trials-per-gpu: not with --engine ray"]),
    (["--address", "auto", "--workers", "2"], ["--address: only with --engine ray"]),
    (["--gpus-per-worker", "0.5"], ["--gpus-per-worker: only with --engine ray"]),
    (["--cpus-per-worker", "2"], ["--cpus-per-worker: only with --engine ray"]),
    (["--engine", "ray", "--workers", "0"], ["--workers: 0 must be >= 1"]),
    (["--engine", "ray", "--workers", "2", "--gpus-per-worker", "1.5"], ["--gpus-per-worker: 1.5", "whole GPUs"]),
    (["--engine", "ray", "--workers", "2", "--gpus-per-worker", "-1"], ["--gpus-per-worker: -1 must be >= 0"]),
    (["--engine", "ray", "--workers", "2", "--cpus-per-worker", "0"], ["--cpus-per-worker: 0 must be > 0"]),
    (["--engine", "ray", "--workers", "2", "--address", "head-node"], ["--address: 'head-node' is not auto"]),
])
def test_options_the_engine_cannot_honour_are_refused(tmp_path: Path, args: list[str], words: list[str]) -> None:
    done = run(tmp_path, "run", str(sweep(tmp_path, "rx")), *args)
    assert_refused(done, *words)
    assert not (tmp_path / "store.db").exists()


def test_resume_refuses_the_same_way_and_changes_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert run(tmp_path, "run", str(sweep(tmp_path, "rr", points=[1])), "--no-report", "--quiet").returncode == 0
    before = [(t.number, t.state) for t in study_of(url, "rr").get_trials()]
    done = run(tmp_path, "resume", "rr", "--storage", url, "--engine", "ray", "--workers", "1",
               "--address", f"127.0.0.1:{free_port()}")
    assert_refused(done, "no Ray cluster answers")
    assert [(t.number, t.state) for t in study_of(url, "rr").get_trials()] == before


@pytest.mark.skipif(os.path.exists("/dev/nvidia0"), reason="this host has a GPU: the local Ray would have one")
def test_gpus_per_worker_on_a_local_ray_without_gpus_is_refused(tmp_path: Path) -> None:
    """No --address: a local Ray is started for the run; it has no GPUs here, so nothing is created."""
    done = run(tmp_path, "run", str(sweep(tmp_path, "rx")), "--engine", "ray", "--workers", "1",
               "--gpus-per-worker", "1")
    lines = [ln for ln in done.stderr.splitlines() if "sweeper" in ln]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert lines == ["sweeper: error: --gpus-per-worker 1: the local Ray has no GPUs"], done.stderr
    assert not (tmp_path / "store.db").exists()


# --------------------------------------------------------------------------- slow: a two-node cluster
@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    small = dict(num_cpus=2, num_gpus=NODE_GPUS, object_store_memory=80 * 2**20)
    c = Cluster(initialize_head=True, head_node_args=dict(include_dashboard=False, **small))
    try:
        c.add_node(**small)  # waits until the node is alive
        yield c
    finally:
        c.shutdown()


def node_ids(c: Any) -> set[str]:
    return {n.node_id for n in c.list_all_nodes()}


def placements(study: optuna.Study) -> list[dict[str, Any]]:
    return [t.user_attrs[PLACEMENT_ATTR] for t in study.get_trials() if t.state == TrialState.COMPLETE]


@pytest.mark.slow
def test_four_workers_half_a_gpu_each_on_two_nodes(tmp_path: Path, cluster: Any) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    done = run(tmp_path, "run", str(sweep(tmp_path, "rg")), "--engine", "ray", "--address", cluster.address,
               "--workers", "4", "--gpus-per-worker", "0.5", "--reports", str(tmp_path / "reports"), timeout=300)
    assert done.returncode == 0, done.stderr
    assert "rg: 8/8 finished (8 complete, 0 pruned, 0 failed)" in done.stdout
    study = study_of(url, "rg")
    assert_every_point_once(study)
    places = placements(study)
    assert {p["engine"] for p in places} == {"ray"}
    assert {p["node"] for p in places} == node_ids(cluster)  # both nodes ran trials
    on_gpu: dict[tuple[str, str], set[int]] = {}
    for p in places:
        assert p["gpus"] and len(p["gpus"]) == 1 and int(p["gpus"][0]) in range(NODE_GPUS), p  # Ray's assignment
        on_gpu.setdefault((p["node"], p["gpus"][0]), set()).add(p["worker"])
    assert all(len(workers) <= 2 for workers in on_gpu.values()), on_gpu  # 0.5 GPU: at most two per GPU
    assert {p["worker"] for p in places} <= {0, 1, 2, 3}
    shown = run_cli("show", "rg", "--storage", url, "--trial", "0", cwd=tmp_path)
    line = next(ln for ln in shown.stdout.splitlines() if ln.startswith("placement:"))
    first = study.trials[0].user_attrs[PLACEMENT_ATTR]
    assert line == (f"placement: ray worker {first['worker']} on {first['host']} (node {first['node']}, "
                    f"pid {first['pid']}, GPUs {first['gpus'][0]})")
    page = (tmp_path / "reports" / "rg" / "index.html").read_text()
    assert f"node {first['node'][:8]}" in page  # the report's placement column names the node


def running_owners(url: str, name: str) -> list[int]:
    try:
        trials = study_of(url, name).get_trials(states=(TrialState.RUNNING,))
    except Exception:  # store or study not created yet
        return []
    return [int(t.system_attrs[OWNER_ATTR]["pid"]) for t in trials if OWNER_ATTR in t.system_attrs]


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_replaced_and_its_trial_rerun(tmp_path: Path, cluster: Any,
                                                                   postgres_url: str) -> None:
    """The workers reach PostgreSQL directly; SIGKILL the pid in a running trial's owner record."""
    proc = subprocess.Popen([sys.executable, "-m", "sweeper", "run", str(sweep(tmp_path, "rk", postgres_url)),
                             "--engine", "ray", "--address", cluster.address, "--workers", "3",
                             "--gpus-per-worker", "0.5", "--quiet", "--no-report"],
                            cwd=tmp_path, env=env("5.0"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: running_owners(postgres_url, "rk"), poll_s=0.2)
        victim = running_owners(postgres_url, "rk")[0]
        os.kill(victim, signal.SIGKILL)
        out, err = proc.communicate(timeout=PATIENCE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "starting another" in err
    study = study_of(postgres_url, "rk")
    assert_every_point_once(study)
    dead = [t for t in study.get_trials() if t.state == TrialState.FAIL]
    assert len(dead) == 1 and f"pid {victim}" in dead[0].user_attrs["error"], [t.user_attrs for t in dead]
    rerun = [t for t in study.get_trials() if t.user_attrs.get("retry_of") == dead[0].number]
    assert len(rerun) == 1 and rerun[0].state == TrialState.COMPLETE
    assert {p["engine"] for p in placements(study)} == {"ray"}


@pytest.mark.slow
def test_ctrl_c_requeues_running_trials_and_resume_finishes(tmp_path: Path, cluster: Any) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    # Ray's cancel is a KeyboardInterrupt raised when the task's Python runs again: after a sleep, in
    # a trial function; within a step, in training. 10 s trials: it lands inside running ones.
    proc = subprocess.Popen([sys.executable, "-m", "sweeper", "run", str(sweep(tmp_path, "rc")), "--engine", "ray",
                             "--address", cluster.address, "--workers", "2", "--quiet", "--no-report"],
                            cwd=tmp_path, env=env("10"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(running_owners(url, "rc")) == 2, poll_s=0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=PATIENCE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "sweeper resume rc" in err and "Traceback" not in err
    trials = study_of(url, "rc").get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    interrupted = [t for t in trials if t.state == TrialState.FAIL]
    assert interrupted and all("interrupted" in t.user_attrs["error"] for t in interrupted)
    left = [t for t in trials if t.state in (TrialState.WAITING, TrialState.COMPLETE)]
    assert sorted(t.params.get("model__units") or t.system_attrs["fixed_params"]["model__units"]
                  for t in left) == GRID  # none lost: each point done or queued, once
    resumed = subprocess.run([sys.executable, "-m", "sweeper", "resume", "rc", "--storage", url, "--quiet",
                              "--no-report"], cwd=tmp_path, env=env("0.2"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert_every_point_once(study_of(url, "rc"))


@pytest.mark.slow
@pytest.mark.parametrize("args, words", [
    (["--gpus-per-worker", str(NODE_GPUS + 1)], [f"--gpus-per-worker {NODE_GPUS + 1}: more than any node",
                                                 f"at most {NODE_GPUS} GPUs on one node"]),
    (["--cpus-per-worker", "3"], ["--cpus-per-worker 3: more than any node", "at most 2 CPUs"]),
])
def test_a_worker_larger_than_any_node_is_refused(tmp_path: Path, cluster: Any, args: list[str],
                                                  words: list[str]) -> None:
    done = run(tmp_path, "run", str(sweep(tmp_path, "rb")), "--engine", "ray", "--address", cluster.address,
               "--workers", "2", *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("sweeper")]
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert not (tmp_path / "store.db").exists()


@pytest.mark.slow
def test_max_failures_stops_every_worker_with_run_s_exit_code(tmp_path: Path, cluster: Any) -> None:
    """trial_functions:flaky fails units=1: the worker that sees the failure ends with 3, the
    driver stops the others (their trials queued again) and exits 3, as sweeper run does."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    path = write_sweep(tmp_path / "rf.yaml", name="rf", trial_function="trial_functions:flaky",
                       params={"model__units": GRID}, storage=url)
    done = run(tmp_path, "run", str(path), "--engine", "ray", "--address", cluster.address, "--workers", "2",
               "--max-failures", "1", "--quiet", "--no-report", timeout=300)
    assert done.returncode == 3, done.stderr
    assert "sweeper: stopped: 1 trials failed (--max-failures 1)" in done.stderr
    trials = study_of(url, "rf").get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert [t.params["model__units"] for t in trials if t.state == TrialState.FAIL
            and "simulated" in t.user_attrs.get("error", "")] == [1]
