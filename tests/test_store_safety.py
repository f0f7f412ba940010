"""Stores sweeper did not make are never written; read-only commands create nothing; two first
runs on a new store both succeed; every refusal is one line."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import cli_env, run_cli, write_sweep
from optuna.trial import TrialState
from storages import postgres_url  # noqa: F401 - fixture

from sweeper.store.storage import make_storage


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line_refusal(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert all(w in lines[0] for w in words), lines[0]


def foreign_sqlite(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        conn.execute("INSERT INTO invoices (total) VALUES (12.5)")
    return path


@pytest.mark.parametrize("kind", ["another program's SQLite", "random bytes"])
def test_a_foreign_file_is_byte_identical_after_every_command(tmp_path: Path, kind: str) -> None:
    store = tmp_path / "other.db"
    if kind == "random bytes":
        store.write_bytes(bytes(range(256)) * 40)
    else:
        foreign_sqlite(store)
    before = sha(store)
    url = f"sqlite:///{store}"
    sweep = write_sweep(tmp_path / "s.yaml", trial_function="trial_functions:quick", params={"model__units": [1]})
    for args in (["ls"], ["show", "x"], ["export", "x"], ["report", "x"], ["run", str(sweep)], ["resume", "x"]):
        proc = run_cli(*args, "--storage", url, cwd=tmp_path)
        one_line_refusal(proc, str(store))
        assert sha(store) == before, args


def test_read_only_commands_never_create_a_store(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    for args in (["ls"], ["show", "x"], ["resume", "x"]):
        one_line_refusal(run_cli(*args, "--storage", f"sqlite:///{empty}", cwd=tmp_path), "is empty")
        one_line_refusal(run_cli(*args, "--storage", f"sqlite:///{tmp_path / 'missing.db'}", cwd=tmp_path),
                         "no such file")
    assert empty.stat().st_size == 0 and not (tmp_path / "missing.db").exists()
    sweep = write_sweep(tmp_path / "s.yaml", trial_function="trial_functions:quick", params={"model__units": [1]})
    assert run_cli("run", str(sweep), "--storage", f"sqlite:///{empty}", "--quiet", "--no-report",
                   cwd=tmp_path).returncode == 0  # run may give an empty file its schema
    assert not list(tmp_path.glob("*.sweeper-lock"))  # no lock file left beside the store


@pytest.mark.skipif(os.geteuid() == 0,
                    reason="root writes read-only files; the check is os.access-based")
def test_a_read_only_store_is_one_line_for_run_and_readable_for_show(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "s.yaml", name="ro", trial_function="trial_functions:quick",
                        params={"model__units": [1]})
    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert run_cli("run", str(sweep), "--quiet", "--no-report", cwd=tmp_path).returncode == 0
    (tmp_path / "store.db").chmod(0o444)
    one_line_refusal(run_cli("resume", "ro", "--storage", url, cwd=tmp_path), "read-only")
    assert run_cli("show", "ro", "--storage", url, cwd=tmp_path).returncode == 0


def test_driver_hints_and_unknown_schemes(tmp_path: Path) -> None:
    proc = run_cli("ls", "--storage", "mysql://root@127.0.0.1/test", cwd=tmp_path)
    assert proc.returncode == 2 and "pymysql" in proc.stderr and "psycopg2" not in proc.stderr, proc.stderr
    one_line_refusal(run_cli("ls", "--storage", "foo://bar", cwd=tmp_path), "scheme 'foo' is not supported")


def race(tmp_path: Path, url: str, name: str) -> list[int]:
    """Two `sweeper run`s of one new study on one new store, started at the same instant."""
    sweep = write_sweep(tmp_path / f"{name}.yaml", name=name, trial_function="trial_functions:quick",
                        params={"model__units": [1, 2, 3]}, storage=url)
    cmd = [sys.executable, "-m", "sweeper", "run", str(sweep), "--quiet", "--no-report"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(), stderr=subprocess.PIPE, text=True) for _ in range(2)]
    codes = [p.wait(timeout=120) for p in procs]
    assert codes == [0, 0], [p.stderr.read() for p in procs if p.stderr]
    return codes


def completed_once(url: str, name: str) -> Counter[Any]:
    study = optuna.load_study(study_name=name, storage=make_storage(url, readonly=True))
    return Counter(t.params["model__units"] for t in study.get_trials() if t.state == TrialState.COMPLETE)


def test_two_first_runs_on_a_new_sqlite_store_both_succeed(tmp_path: Path) -> None:
    for i in range(3):
        url = f"sqlite:///{tmp_path / f'new{i}.db'}"
        race(tmp_path, url, f"race{i}")
        assert completed_once(url, f"race{i}") == Counter([1, 2, 3])


def test_two_first_runs_on_a_new_postgresql_store_both_succeed(tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    race(tmp_path, postgres_url, "race")
    assert completed_once(postgres_url, "race") == Counter([1, 2, 3])


def test_a_store_killed_while_optuna_created_its_schema_is_finished_by_run(tmp_path: Path) -> None:
    """Found by benchmarks/kill_soak.py: a run killed inside Optuna's schema creation leaves some of
    Optuna's tables and no others; that is a sweeper store in the making, not a foreign file."""
    import sqlalchemy
    from optuna.storages._rdb import models

    store = tmp_path / "half.db"
    engine = sqlalchemy.create_engine(f"sqlite:///{store}")
    for name in ("studies", "study_directions", "trial_heartbeats"):
        models.BaseModel.metadata.tables[name].create(engine)
    engine.dispose()
    url = f"sqlite:///{store}"
    one_line_refusal(run_cli("show", "x", "--storage", url, cwd=tmp_path), "holds no sweeper store yet")
    sweep = write_sweep(tmp_path / "s.yaml", name="half", trial_function="trial_functions:quick",
                        params={"model__units": [1, 2]}, storage=url)
    assert run_cli("run", str(sweep), "--quiet", "--no-report", cwd=tmp_path).returncode == 0
    assert completed_once(url, "half") == Counter([1, 2])
