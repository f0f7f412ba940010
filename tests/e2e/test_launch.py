"""Where trials ran (the ``placement`` attribute) and ``sweeper launch slurm|k8s``.

Cheap trial functions only. ``launch`` refuses SQLite, so its tests use throwaway PostgreSQL
databases (tests/storages.py; no server: skipped). SLURM and Kubernetes do not run here: the
generated sbatch script is run as is by bash, once per array index, with SLURM_ARRAY_TASK_ID set
and an ``srun`` that only runs its arguments first on PATH; the Job manifest is checked against
the Kubernetes schema (kubernetes-validate) and its container command is run with the
environment the Job controller and the Secret would give it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from conftest import cli_env, run_cli, write_sweep
from optuna.trial import TrialState
from storages import postgres_url  # noqa: F401 - fixture

from sweeper.store.keys import PLACEMENT_ATTR

GRID = {"model__units": [1, 2, 3, 4]}


def sweep(tmp_path: Path, storage: str, fn: str = "trial_functions:quick", name: str = "lx") -> Path:
    return write_sweep(tmp_path / f"{name}.yaml", name=name, storage=storage, params=GRID,
                       trial_function=fn)


PLACEMENT_ENVS = ("SWEEPER_ENGINE", "SWEEPER_WORKER_INDEX", "SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX")


def clean_env(**more: str) -> dict[str, str]:
    """The CLI's environment without any placement this test process may have inherited."""
    return {**{k: v for k, v in cli_env().items() if k not in PLACEMENT_ENVS}, **more}


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sweeper", *args], cwd=cwd, env=clean_env(**(env or {})),
                          capture_output=True, text=True, timeout=300)


def store(url: str) -> Any:
    from sweeper.store.storage import make_storage

    return make_storage(url, must_exist=True)


def placements(url: str, name: str) -> list[dict[str, Any]]:
    study = optuna.load_study(study_name=name, storage=store(url))
    trials = study.get_trials(deepcopy=False)
    assert trials and all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    return [t.user_attrs[PLACEMENT_ATTR] for t in trials]


def waiting(url: str, name: str) -> int:
    study = optuna.load_study(study_name=name, storage=store(url))
    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def studies(url: str) -> list[str]:
    """The study names of a store; [] for a database with no store in it (nothing was written)."""
    from sweeper.errors import StudyError

    try:
        store(url)
    except StudyError:
        return []
    return [s.study_name for s in optuna.get_all_study_summaries(store(url))]


# --------------------------------------------------------------------------- placement through run
def test_run_in_process_places_every_trial_local_worker_0(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    done = cli("run", str(sweep(tmp_path, url)), "--no-report", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    places = placements(url, "lx")
    assert len(places) == 4
    for p in places:
        assert p["engine"] == "local" and p["worker"] == 0 and p["pid"] > 0 and p["host"]
    shown = run_cli("show", "lx", "--storage", url, "--trial", "0", cwd=tmp_path)
    line = next(ln for ln in shown.stdout.splitlines() if ln.startswith("placement:"))
    assert f"local worker 0 on {places[0]['host']} (pid {places[0]['pid']}, GPUs" in line


def test_run_with_two_workers_places_trials_on_workers_0_and_1(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    done = cli("run", str(sweep(tmp_path, url, "trial_functions:slow")), "--workers", "2", "--no-report",
               "--quiet", cwd=tmp_path, env={"SWEEPER_TEST_SLEEP": "1.0"})
    assert done.returncode == 0, done.stderr
    places = placements(url, "lx")
    assert {p["engine"] for p in places} == {"local"}
    assert {p["worker"] for p in places} == {0, 1}
    pids = {p["worker"]: set() for p in places}
    for p in places:
        pids[p["worker"]].add(p["pid"])
        assert p["gpus"] is None  # CPU workers are given no GPU
    assert not pids[0] & pids[1]  # two processes
    report = run_cli("report", "lx", "--storage", url, "--out", str(tmp_path / "reports"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "reports" / "lx" / "index.html").read_text()
    assert f'\\"placement\\": \\"local 1 @ {places[0]["host"]}' in page  # the plot's column (JSON in a script)
    exported = run_cli("export", "lx", "--storage", url, "--format", "csv", cwd=tmp_path)
    assert "placement" in exported.stdout.splitlines()[0] and "local 0 @ " in exported.stdout


# --------------------------------------------------------------------------- launch slurm
def slurm_args(tmp_path: Path, url: str, *more: str) -> list[str]:
    return ["launch", "slurm", str(sweep(tmp_path, url, "trial_functions:slow")), "--workers", "2",
            "--time", "01:30:00", "--out", str(tmp_path / "job.sbatch"), *more]


def test_slurm_dry_run_writes_the_array_script_and_queues_the_grid(tmp_path: Path, postgres_url: str) -> None:
    done = cli(*slurm_args(tmp_path, postgres_url, "--storage", postgres_url, "--gpus-per-worker", "2",
                           "--cpus-per-worker", "4", "--partition", "gpu", "--account", "lab-1",
                           "--setup", "module load cuda/12", "--dry-run"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    script = (tmp_path / "job.sbatch").read_text()
    assert done.stdout == script
    for line in ("#!/bin/bash", "#SBATCH --array=0-1", "#SBATCH --time=01:30:00", "#SBATCH --gres=gpu:2",
                 "#SBATCH --cpus-per-task=4", "#SBATCH --partition=gpu", "#SBATCH --account=lab-1",
                 "module load cuda/12", "export SWEEPER_ENGINE=slurm"):
        assert line in script.splitlines(), line
    srun = next(ln for ln in script.splitlines() if ln.startswith("srun "))
    assert srun.endswith(' -m sweeper worker lx --storage "$URL" --index "$SLURM_ARRAY_TASK_ID"')
    assert postgres_url in script  # no --storage-env: the URL is in the script
    assert studies(postgres_url) == ["lx"] and waiting(postgres_url, "lx") == 4


def test_slurm_script_runs_two_array_tasks_to_the_end(tmp_path: Path, postgres_url: str) -> None:
    """The real thing without SLURM: the script itself, once per array index, with an srun that
    runs its arguments; the URL comes from --storage-env and is nowhere in the script."""
    env = {"SWEEPER_TEST_STORE": postgres_url}
    done = cli(*slurm_args(tmp_path, "sqlite:///unused.db", "--storage-env", "SWEEPER_TEST_STORE", "--dry-run"),
               cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    script = tmp_path / "job.sbatch"
    host_part = postgres_url.split("@")[-1]
    assert host_part not in script.read_text() and host_part not in done.stdout
    assert "${SWEEPER_TEST_STORE:?" in script.read_text()
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "srun").write_text('#!/bin/sh\nexec "$@"\n')
    (shims / "srun").chmod(0o755)
    path = f"{shims}{os.pathsep}{os.environ['PATH']}"
    tasks = [subprocess.Popen(["bash", str(script)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=clean_env(**env, PATH=path, SLURM_ARRAY_TASK_ID=str(i),
                                                            SWEEPER_TEST_SLEEP="1.0"))
             for i in (0, 1)]
    for task in tasks:
        out, _ = task.communicate(timeout=300)
        assert task.returncode == 0, out
    places = placements(postgres_url, "lx")
    assert len(places) == 4
    assert {p["engine"] for p in places} == {"slurm"}
    assert {p["worker"] for p in places} == {0, 1}
    # Without --storage-env's variable the script stops at once, naming it.
    bare = {k: v for k, v in clean_env().items() if k != "SWEEPER_TEST_STORE"}
    fail = subprocess.run(["bash", str(script)], env={**bare, "PATH": path, "SLURM_ARRAY_TASK_ID": "0"},
                          capture_output=True, text=True, timeout=60)
    assert fail.returncode != 0 and "SWEEPER_TEST_STORE" in fail.stderr


# --------------------------------------------------------------------------- launch k8s
def k8s_args(tmp_path: Path, url: str, *more: str) -> list[str]:
    return ["launch", "k8s", str(sweep(tmp_path, url, "trial_functions:slow")), "--workers", "3", "--image", "registry.example/sweeper:1",
            "--storage-secret", "sweeper-store", "--storage", url, "--out", str(tmp_path / "job.yaml"), *more]


def test_k8s_dry_run_writes_an_indexed_job_the_schema_accepts(tmp_path: Path, postgres_url: str) -> None:
    import kubernetes_validate  # the test extra installs it
    done = cli(*k8s_args(tmp_path, postgres_url, "--gpus-per-worker", "1", "--dry-run"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "job.yaml").read_text()
    assert done.stdout == text
    assert postgres_url.split("@")[-1] not in text  # the URL comes from the Secret
    job = yaml.safe_load(text)
    kubernetes_validate.validate(job, "1.33", strict=True)  # raises on any schema error
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 3
    assert spec["backoffLimitPerIndex"] >= 1 and spec["template"]["spec"]["restartPolicy"] == "Never"
    (container,) = spec["template"]["spec"]["containers"]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 1}
    env = {e["name"]: e for e in container["env"]}
    assert env["SWEEPER_ENGINE"]["value"] == "k8s"
    assert env["SWEEPER_STORAGE"]["valueFrom"] == {"secretKeyRef": {"name": "sweeper-store", "key": "url"}}
    assert studies(postgres_url) == ["lx"] and waiting(postgres_url, "lx") == 4
    # The container's command, with what the Secret and the Job controller give it, works the study.
    argv = [postgres_url if a == "$(SWEEPER_STORAGE)" else a for a in container["command"]]
    assert argv[:3] == ["python", "-m", "sweeper"]
    ran = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env=clean_env(SWEEPER_ENGINE="k8s", JOB_COMPLETION_INDEX="2", SWEEPER_TEST_SLEEP="0"))
    assert ran.returncode == 0, ran.stderr
    assert {(p["engine"], p["worker"]) for p in placements(postgres_url, "lx")} == {("k8s", 2)}


def test_k8s_without_gpus_asks_for_none(tmp_path: Path, postgres_url: str) -> None:
    import kubernetes_validate  # the test extra installs it
    done = cli(*k8s_args(tmp_path, postgres_url, "--dry-run"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    job = yaml.safe_load((tmp_path / "job.yaml").read_text())
    kubernetes_validate.validate(job, "1.33", strict=True)
    assert "resources" not in job["spec"]["template"]["spec"]["containers"][0]
    # The check has teeth: a field the schema does not know, or a wrong type, is refused.
    for broken in ({"completionsPerIndex": 1}, {"parallelism": "all"}):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate({**job, "spec": {**job["spec"], **broken}}, "1.33", strict=True)


def test_a_worker_started_by_hand_says_worker_and_its_index(tmp_path: Path, postgres_url: str) -> None:
    done = cli(*slurm_args(tmp_path, postgres_url, "--storage", postgres_url, "--dry-run"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    ran = cli("worker", "lx", "--storage", postgres_url, "--index", "5", "--quiet", cwd=tmp_path,
              env={"SWEEPER_TEST_SLEEP": "0"})
    assert ran.returncode == 0, ran.stderr
    assert {(p["engine"], p["worker"]) for p in placements(postgres_url, "lx")} == {("worker", 5)}
    bad = cli("worker", "lx", "--storage", postgres_url, "--index", "-1", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip() == "sweeper: error: --index: -1 must be >= 0"


# --------------------------------------------------------------------------- bad input
SLURM_BAD = [
    (["--time", "90 minutes"], "--time"),
    (["--time", "1:30"], "--time"),
    (["--time", "00:00:00"], "--time"),
    (["--time", "01:61:00"], "--time"),
    (["--workers", "0"], "--workers"),
    (["--gpus-per-worker", "-1"], "--gpus-per-worker"),
    (["--cpus-per-worker", "0"], "--cpus-per-worker"),
    (["--partition", "gpu; rm -rf ~"], "--partition"),
    (["--account", "a b"], "--account"),
    (["--storage-env", "1BAD"], "--storage-env"),
]


@pytest.mark.parametrize("bad,names", SLURM_BAD, ids=[" ".join(b) for b, _ in SLURM_BAD])
def test_slurm_bad_input_is_one_line_and_stores_nothing(tmp_path: Path, postgres_url: str, bad: list[str],
                                                        names: str) -> None:
    args = slurm_args(tmp_path, postgres_url, "--storage", postgres_url, "--dry-run")
    done = cli(*args, *bad, cwd=tmp_path)  # the last --time / --workers given wins
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and names in done.stderr, done.stderr
    assert studies(postgres_url) == [] and not (tmp_path / "job.sbatch").exists()


K8S_BAD = [
    (["--workers", "-2"], "--workers"),
    (["--gpus-per-worker", "-1"], "--gpus-per-worker"),
    (["--image", ""], "--image"),
    (["--storage-secret", "Not_A_Name"], "--storage-secret"),
]


@pytest.mark.parametrize("bad,names", K8S_BAD, ids=[" ".join(b) for b, _ in K8S_BAD])
def test_k8s_bad_input_is_one_line_and_stores_nothing(tmp_path: Path, postgres_url: str, bad: list[str],
                                                      names: str) -> None:
    done = cli(*k8s_args(tmp_path, postgres_url, "--dry-run"), *bad, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and names in done.stderr, done.stderr
    assert studies(postgres_url) == [] and not (tmp_path / "job.yaml").exists()


@pytest.mark.parametrize("engine", ["slurm", "k8s"])
def test_a_sqlite_store_is_refused(tmp_path: Path, engine: str) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    args = slurm_args(tmp_path, url, "--dry-run") if engine == "slurm" else k8s_args(tmp_path, url, "--dry-run")
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "--storage" in done.stderr and "postgresql://" in done.stderr
    assert not (tmp_path / "store.db").exists()


@pytest.mark.parametrize("engine,tool", [("slurm", "sbatch"), ("k8s", "kubectl")])
def test_a_missing_scheduler_tool_is_one_line(tmp_path: Path, postgres_url: str, engine: str, tool: str) -> None:
    args = slurm_args(tmp_path, postgres_url, "--storage", postgres_url) if engine == "slurm" \
        else k8s_args(tmp_path, postgres_url)
    empty = tmp_path / "empty-path"
    empty.mkdir()
    done = cli(*args, cwd=tmp_path, env={"PATH": str(empty)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"sweeper: error: {tool} not found on PATH; --dry-run writes the file " \
                                  "without submitting it"
    assert studies(postgres_url) == []


def shim(folder: Path, name: str, body: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(f"#!/bin/sh\n{body}\n")
    (folder / name).chmod(0o755)


def test_submission_goes_through_sbatch_and_kubectl_and_their_failure_is_one_line(tmp_path: Path,
                                                                                   postgres_url: str) -> None:
    """Stand-ins for sbatch and kubectl record their arguments: the written file is what they get."""
    bin_ = tmp_path / "bin"
    calls = tmp_path / "calls"
    shim(bin_, "sbatch", f'echo "sbatch $*" >> {calls}; echo "Submitted batch job 42"')
    shim(bin_, "kubectl", f'echo "kubectl $*" >> {calls}; echo "error: the server could not be reached" >&2; exit 1')
    path = {"PATH": f"{bin_}{os.pathsep}{os.environ['PATH']}"}
    done = cli(*slurm_args(tmp_path, postgres_url, "--storage", postgres_url), cwd=tmp_path, env=path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Submitted batch job 42"
    failed = cli(*k8s_args(tmp_path, postgres_url), cwd=tmp_path, env=path)
    assert failed.returncode == 2
    assert failed.stderr.strip() == (
        "sweeper: error: kubectl failed: error: the server could not be reached (the study is created; "
        f"submit again with: kubectl apply -f {tmp_path / 'job.yaml'})")
    assert calls.read_text().splitlines() == [f"sbatch {tmp_path / 'job.sbatch'}",
                                              f"kubectl apply -f {tmp_path / 'job.yaml'}"]


# --------------------------------------------------------------------------- a real SLURM
def slurm_up() -> bool:
    import shutil

    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.slow
def test_slurm_runs_the_array_job_for_real(tmp_path: Path, postgres_url: str) -> None:
    """Submitted with sbatch to a running SLURM (e.g. a one-node cluster); skipped without one."""
    import time

    if not slurm_up():
        pytest.skip("no SLURM cluster here (sbatch/sinfo missing or no controller)")
    env = {"SWEEPER_TEST_STORE": postgres_url, "SWEEPER_TEST_SLEEP": "2.0"}
    done = cli(*slurm_args(tmp_path, "sqlite:///unused.db", "--storage-env", "SWEEPER_TEST_STORE",
                           "--cpus-per-worker", "1"), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Submitted batch job "), done.stdout
    job = done.stdout.split()[-1]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True, timeout=30)
        if queue.returncode == 0 and not queue.stdout.strip():
            break  # the array job left the queue
        time.sleep(1)
    else:
        pytest.fail(f"SLURM job {job} still queued or running after 300 s")
    logs = sorted(tmp_path.glob(f"sweeper-lx-{job}_*.out"))
    assert len(logs) == 2, list(tmp_path.iterdir())
    places = placements(postgres_url, "lx")
    assert len(places) == 4, "\n".join(p.read_text() for p in logs)
    assert {p["engine"] for p in places} == {"slurm"}
    assert {p["worker"] for p in places} == {0, 1}


@pytest.mark.slow
def test_scancel_of_one_array_task_mid_trial_loses_no_point(tmp_path: Path, postgres_url: str) -> None:
    """One of the two array tasks is cancelled while its trial trains; the other finishes what it
    can, and `resume` runs the cancelled task's trial again: every point once, none failed."""
    import time

    from sweeper.store.progress import progress
    from sweeper.store.studies import load

    if not slurm_up():
        pytest.skip("no SLURM cluster here (sbatch/sinfo missing or no controller)")
    env = {"SWEEPER_TEST_STORE": postgres_url, "SWEEPER_TEST_SLEEP": "6.0"}
    done = cli(*slurm_args(tmp_path, "sqlite:///unused.db", "--storage-env", "SWEEPER_TEST_STORE",
                           "--cpus-per-worker", "1"), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    job = done.stdout.split()[-1]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # a trial of array task 1 is training
        study = optuna.load_study(study_name="lx", storage=store(postgres_url))
        if any(t.user_attrs.get(PLACEMENT_ATTR, {}).get("worker") == 1
               for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))):
            break
        time.sleep(0.5)
    else:
        pytest.fail("array task 1 never ran a trial")
    assert subprocess.run(["scancel", f"{job}_1"], timeout=30).returncode == 0
    deadline = time.monotonic() + 300
    while subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True,
                         timeout=30).stdout.strip() and time.monotonic() < deadline:
        time.sleep(1)
    resumed = cli("resume", "lx", "--storage", postgres_url, "--no-report", "--quiet", cwd=tmp_path,
                  env={"SWEEPER_TEST_SLEEP": "0.1"})
    assert resumed.returncode == 0, resumed.stderr
    study, spec = load("lx", store(postgres_url))
    prog = progress(study, spec)
    assert (prog.complete, prog.failed, prog.running, prog.waiting) == (4, 0, 0, 0), prog.text()
    assert prog.interrupted >= 1, prog.text()  # the cancel landed inside a trial, which ran again


def test_gres_gpus_reads_what_sinfo_prints() -> None:
    from sweeper.cli.launch_files import gres_gpus

    cases = {"(null)": 0, "gpu:4": 4, "gpu:a100:2(S:0,1),mps:400": 2, "mps:400,gpu:1": 1, "gpus:3": 0}
    assert {g: gres_gpus(g) for g in cases} == cases


@pytest.mark.slow
def test_slurm_gpus_on_a_cluster_without_gpus_is_one_line_and_creates_nothing(tmp_path: Path,
                                                                               postgres_url: str) -> None:
    """The one-node cluster has no GPU gres: an array asking for one would wait forever."""
    if not slurm_up():
        pytest.skip("no SLURM cluster here (sbatch/sinfo missing or no controller)")
    done = cli(*slurm_args(tmp_path, postgres_url, "--storage", postgres_url, "--gpus-per-worker", "1"), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "--gpus-per-worker: 1, but no node of this SLURM cluster has more than 0 GPU(s)" in done.stderr
    assert studies(postgres_url) == [] and not (tmp_path / "job.sbatch").exists()
