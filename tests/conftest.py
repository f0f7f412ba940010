"""Shared fixtures: a throwaway store per test, and a CLI runner in a real subprocess.

The tiers (pick one with ``bash scripts/test.sh tests/TIER``): ``unit/`` never imports TensorFlow
(seconds), ``train/`` trains in-process, ``contract/`` runs sweeper's trial bookkeeping against
every storage, ``e2e/`` drives the ``sweeper`` command as a user does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from collections.abc import Iterator
from typing import Any, Callable

import pytest
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
TESTS = Path(__file__).parent
# How long a test waits for worker processes before calling it a hang. Not a timing check: CI ran
# the default set 1.6x slower than the 2-core dev machine, and under 8 busy processes here one
# PostgreSQL worker-death test took 41 s where it takes 6 s idle (each worker start, claim and
# tell is many SQL round trips); 60-90 s limits failed there twice.
PATIENCE_S = 300.0


@pytest.fixture(autouse=True)
def _unit_tier_has_no_tensorflow(request: pytest.FixtureRequest) -> Iterator[None]:
    """The unit tier never starts TensorFlow (checked where nothing before the test had)."""
    before = "tensorflow" in sys.modules
    yield
    if TESTS / "unit" in Path(str(request.node.path)).parents:
        assert before or "tensorflow" not in sys.modules, "a unit test imported TensorFlow"


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    # tests/trial_functions.py is importable by the subprocesses (trial_function: ...).
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def wait_for(predicate: Callable[[], Any], timeout: float = PATIENCE_S, poll_s: float = 0.05) -> Any:
    """Poll until ``predicate()`` is truthy and return that value; fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError("condition not reached in time")


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sweeper", *args], cwd=cwd, env=cli_env(),
        capture_output=True, text=True, timeout=timeout,
    )


def start_run(sweep: Path, cwd: Path, sleep_s: float, *args: str, text: bool = True) -> subprocess.Popen[Any]:
    """``sweeper run SWEEP ARGS --quiet --no-report`` started, not waited for (output piped), each trial
    of tests/trial_functions.py sleeping ``sleep_s`` seconds (SWEEPER_TEST_SLEEP)."""
    return subprocess.Popen([sys.executable, "-m", "sweeper", "run", str(sweep), *args, "--quiet", "--no-report"],
                            cwd=cwd, env={**cli_env(), "SWEEPER_TEST_SLEEP": str(sleep_s)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text)


TINY: dict[str, Any] = {  # a tiny real sweep: mlp on 400 digits, 2 epochs
    "name": "tiny",
    "data": {"dataset": "digits", "limit": 400},
    "model": "mlp",
    "method": "grid",
    "params": {"model__batchnorm": [True, False], "model__dropout": [0.0, 0.2]},
    "training": {"epochs": 2, "batch_size": 32, "model__units": 16},
    "validation": {"holdout": 0.25},
    "seed": 1,
}


def write_sweep(path: Path, **overrides: Any) -> Path:
    """A tiny real sweep (mlp on 400 digits, 2 epochs) unless overridden."""
    spec: dict[str, Any] = {**TINY, "storage": f"sqlite:///{path.parent / 'store.db'}"}
    spec.update(overrides)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(scope="session")
def digits_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from support.images import digits_csv as write

    return write(tmp_path_factory.mktemp("csv") / "digits.csv")


@pytest.fixture(scope="session")
def cifar_like_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from support.images import colour_csv

    return colour_csv(tmp_path_factory.mktemp("csv") / "colour.csv")
