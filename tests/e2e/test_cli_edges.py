"""Small promises of the CLI: a closed pipe is no traceback, a stored error keeps its whole text,
--max-failures exits 3 also with worker processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna

from conftest import cli_env, run_cli, write_sweep


def test_show_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "p.yaml", name="pipe", trial_function="trial_functions:quick",
                        params={"model__units": list(range(1, 41))})
    assert run_cli("run", str(sweep), "--quiet", "--no-report", cwd=tmp_path).returncode == 0
    url = f"sqlite:///{tmp_path / 'store.db'}"
    command = f"{sys.executable} -m sweeper show pipe -k 40 --storage {url} | head -1"
    shown = subprocess.run(command, shell=True, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert shown.stdout.startswith("study pipe:") and "Traceback" not in shown.stderr and "Broken" not in shown.stderr


def test_a_stored_error_keeps_every_line_and_show_trial_prints_it(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "e.yaml", name="err", model="user_models:verbose_failure",
                        params={"model__units": [4]})
    assert run_cli("run", str(sweep), "--quiet", "--no-report", cwd=tmp_path).returncode == 1
    url = f"sqlite:///{tmp_path / 'store.db'}"
    error = optuna.load_study(study_name="err", storage=url).trials[0].user_attrs["error"]
    assert error.startswith("RuntimeError: Graph execution error:") and "units=4 is the culprit" in error
    summary = run_cli("show", "err", "--storage", url, cwd=tmp_path).stdout
    assert "trial 0: RuntimeError: Graph execution error: [... sweeper show err --trial 0]" in summary
    shown = run_cli("show", "err", "--trial", "0", "--storage", url, cwd=tmp_path)
    assert shown.returncode == 0 and "units=4 is the culprit" in shown.stdout


def test_max_failures_with_two_workers_exits_3(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "m.yaml", name="mf", trial_function="trial_functions:flaky", method="random",
                        trials=20, params={"model__units": [1]})
    proc = run_cli("run", str(sweep), "--workers", "2", "--max-failures", "2", "--quiet", "--no-report", cwd=tmp_path)
    assert proc.returncode == 3 and "--max-failures 2" in proc.stderr, proc.stderr
