"""Throwaway study stores for tests: a PostgreSQL database per test, a SQLite file, and Optuna's
gRPC storage proxy in front of a SQLite file (how ``run --workers K`` shares one file).

PostgreSQL: the server at $SWEEPER_TEST_POSTGRES_ADMIN (default postgresql://postgres@127.0.0.1/postgres)
gets a fresh ``sweeper_test_<random>`` database per test, dropped at teardown. An unreachable server
skips the test, unless SWEEPER_REQUIRE_POSTGRES=1 (set by .ci/run): then it fails.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ADMIN_URL = os.environ.get("SWEEPER_TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1/postgres")


def postgres_required() -> bool:
    return os.environ.get("SWEEPER_REQUIRE_POSTGRES", "") not in ("", "0")


def _admin_connection() -> Any:
    import psycopg2

    conn = psycopg2.connect(ADMIN_URL, connect_timeout=5)
    conn.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
    return conn


def _unavailable(reason: str) -> None:
    message = f"no PostgreSQL server for the tests at {ADMIN_URL}: {reason}"
    if postgres_required():
        pytest.fail(message + " (SWEEPER_REQUIRE_POSTGRES=1 makes these tests mandatory)", pytrace=False)
    pytest.skip(message)


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A new empty database; yields its URL (plain postgresql://, as users write it)."""
    from sqlalchemy.engine import make_url

    try:
        admin = _admin_connection()
    except Exception as exc:  # ImportError (no psycopg2) included
        _unavailable(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    name = f"sweeper_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        url = make_url(ADMIN_URL).set(drivername="postgresql", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        try:
            with admin.cursor() as cur:
                # Engines of this process and workers that outlived the test still hold connections.
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
                cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        finally:
            admin.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with throwaway_postgres() as url:
        yield url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def grpc_proxy(sqlite_path: Path) -> Iterator[str]:
    """Optuna's gRPC storage proxy serving a SQLite file from this process with one thread, as
    ``sweeper run --workers K`` does; yields its grpc:// URL."""
    from concurrent.futures import ThreadPoolExecutor

    from optuna.storages._grpc.server import make_server

    from sweeper.store.storage import make_storage

    backend = make_storage(f"sqlite:///{sqlite_path}")
    port = free_port()
    server = make_server(backend, "127.0.0.1", port, ThreadPoolExecutor(max_workers=1))
    server.start()
    try:
        yield f"grpc://127.0.0.1:{port}"
    finally:
        server.stop(grace=None).wait()


@contextmanager
def store_url(kind: str, tmp_path: Path) -> Iterator[str]:
    """A fresh store of one kind: 'sqlite', 'postgresql' or 'grpc' (proxy in front of SQLite)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    elif kind == "postgresql":
        with throwaway_postgres() as url:
            yield url
    elif kind == "grpc":
        with grpc_proxy(tmp_path / "proxied.db") as url:
            yield url
    else:
        raise ValueError(kind)


# --------------------------------------------------------------------------- trial functions
def loads_data(spec: Any, params: dict[str, Any], seed: int, on_epoch: Any) -> float:
    """``trial_function: storages:loads_data``: loads the sweep's dataset (as a Keras trial does,
    from the definition stored with the study) and scores len(data) + units / 1000, so the stored
    value shows the worker read the data the study names. Sleeps $SWEEPER_TEST_SLEEP seconds."""
    import time

    from sweeper.train.data import load_dataset

    ds = load_dataset(spec.data)
    time.sleep(float(os.environ.get("SWEEPER_TEST_SLEEP", "0.3")))
    return len(ds.y) + params["model__units"] / 1000


def dead_owner() -> dict[str, Any]:
    """The owner record of a process of this host that has exited (as after kill -9)."""
    import subprocess

    import psutil

    from sweeper.store.trials import HOST

    proc = subprocess.Popen(["sleep", "30"])
    record = {"host": HOST, "pid": proc.pid, "started": psutil.Process(proc.pid).create_time()}
    proc.kill()
    proc.wait()
    return record
