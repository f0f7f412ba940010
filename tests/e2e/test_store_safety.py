"""Stores sweeper did not make are never written; read-only commands create nothing; a read-only
store is one line for writers and readable by readers; two first runs on a new store both
succeed; every refusal is one line; ``serve`` answers a bad path with 400/404, never 500."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import PATIENCE_S, cli_env, run_cli, write_sweep
from optuna.trial import TrialState
from storages import postgres_url  # noqa: F401 - fixture

from sweeper.errors import StudyError
from sweeper.store.storage import make_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line_refusal(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("sweeper: error: storage ") and all(w in lines[0] for w in words), lines[0]


def foreign_sqlite(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        conn.execute("INSERT INTO invoices (total) VALUES (12.5)")
    conn.close()
    return path


def quick_sweep(tmp_path: Path, name: str = "x", units: tuple[int, ...] = (1,), **fields: Any) -> Path:
    return write_sweep(tmp_path / f"{name}.yaml", name=name, trial_function="trial_functions:quick",
                       params={"model__units": list(units)}, **fields)


# --------------------------------------------------------------------------- 1. foreign files
@pytest.mark.parametrize("kind", ["another program's SQLite", "random bytes"])
def test_a_foreign_file_is_byte_identical_after_every_command(tmp_path: Path, kind: str) -> None:
    store = tmp_path / "other.db"
    if kind == "random bytes":
        store.write_bytes(bytes(range(256)) * 40)
    else:
        foreign_sqlite(store)
    before = sha(store)
    url = f"sqlite:///{store}"
    sweep = quick_sweep(tmp_path)
    for args in (["ls"], ["show", "x"], ["export", "x"], ["report", "x"], ["run", str(sweep)], ["resume", "x"]):
        proc = run_cli(*args, "--storage", url, cwd=tmp_path)
        if kind == "random bytes":
            one_line_refusal(proc, str(store), "is not a SQLite database")
        else:
            one_line_refusal(proc, str(store), "not a sweeper/Optuna store", "it has tables: invoices")
        assert sha(store) == before, args
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db", "x.yaml"]  # no journal, no lock, no report


def test_other_programs_marks_and_live_wal_changes_are_seen(tmp_path: Path) -> None:
    """A SQLite file with no tables yet but application_id/user_version set is another program's;
    so is one whose tables are still only in the WAL of a program that has it open (a read of the
    main file alone would see no tables)."""
    marked = tmp_path / "marked.db"
    with sqlite3.connect(marked) as conn:
        conn.execute("PRAGMA user_version = 7")
    conn.close()
    walled = tmp_path / "walled.db"
    holder = sqlite3.connect(walled)  # the other program, still running
    holder.execute("PRAGMA journal_mode = WAL")
    holder.execute("PRAGMA wal_autocheckpoint = 0")
    holder.execute("CREATE TABLE notes (body TEXT)")
    holder.execute("INSERT INTO notes VALUES ('mine')")
    holder.commit()
    try:
        assert Path(f"{walled}-wal").stat().st_size > 0
        for store, words in ((marked, ("marked user_version=7",)), (walled, ("it has tables: notes",))):
            before = sha(store)
            for args in (["ls"], ["show", "x"], ["run", str(quick_sweep(tmp_path))]):
                one_line_refusal(run_cli(*args, "--storage", f"sqlite:///{store}", cwd=tmp_path), *words)
                assert sha(store) == before, (store, args)
        assert holder.execute("SELECT body FROM notes").fetchall() == [("mine",)]
    finally:
        holder.close()


def test_the_file_checked_is_the_file_sqlalchemy_opens(tmp_path: Path) -> None:
    """A '#' in a name is part of it (the read-only check once opened 'a' read-write, creating it);
    %41 in a URL is 'A' to SQLAlchemy, so sqlite:///p%41.db must check pA.db."""
    url = f"sqlite:///{tmp_path / 'a#b.db'}"
    make_storage(url, heartbeat=None)  # `run` creates it
    make_storage(url, heartbeat=None, must_exist=True, readonly=True)  # `ls` reads it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a#b.db"]
    before = sha(foreign_sqlite(tmp_path / "pA.db"))
    with pytest.raises(StudyError, match="pA.db is not a sweeper/Optuna store"):
        make_storage(f"sqlite:///{tmp_path / 'p%41.db'}")
    assert sha(tmp_path / "pA.db") == before


def test_an_optuna_store_with_other_tables_beside_it_is_a_store(tmp_path: Path) -> None:
    store = tmp_path / "shared.db"
    optuna.create_study(study_name="plain", storage=f"sqlite:///{store}")
    foreign_sqlite(store)  # the application keeps its own tables in the same file
    storage = make_storage(f"sqlite:///{store}", heartbeat=None, must_exist=True)
    assert [s.study_name for s in storage.get_all_studies()] == ["plain"]


def test_a_foreign_or_missing_journal_file_is_refused_untouched(tmp_path: Path) -> None:
    """Optuna's journal backend would create a missing file, and append to any file."""
    text = tmp_path / "notes.log"
    text.write_text("hello\n")
    with pytest.raises(StudyError, match="is not an Optuna journal"):
        make_storage(f"journal:///{text}")
    assert text.read_text() == "hello\n"
    with pytest.raises(StudyError, match="no such file"):
        make_storage(f"journal:///{tmp_path / 'missing.log'}", must_exist=True, readonly=True)
    (tmp_path / "empty.log").touch()
    with pytest.raises(StudyError, match="is empty"):
        make_storage(f"journal:///{tmp_path / 'empty.log'}", must_exist=True, readonly=True)
    assert not (tmp_path / "missing.log").exists() and (tmp_path / "empty.log").stat().st_size == 0
    journal = f"journal:///{tmp_path / 'real.log'}"
    optuna.create_study(study_name="j", storage=make_storage(journal))
    assert [s.study_name for s in make_storage(journal, must_exist=True).get_all_studies()] == ["j"]


def test_a_store_is_never_misread_while_another_process_writes_it(tmp_path: Path) -> None:
    """The check reads with SQLite's locks: an immutable=1 read (no locks) saw half-written pages
    while a first run created the schema, and called the store 'not a SQLite database'."""
    from sweeper.store.storage import _check_sqlite_file

    store = tmp_path / "busy.db"
    code = "import optuna, sys; optuna.storages.RDBStorage(sys.argv[1])"
    writer = subprocess.Popen([sys.executable, "-c", code, f"sqlite:///{store}"], env=cli_env())
    errors: set[str] = set()
    while writer.poll() is None:
        if store.exists() and store.stat().st_size > 0:
            try:
                _check_sqlite_file("busy", store, must_exist=False, readonly=False)
            except StudyError as exc:
                errors.add(str(exc))
    assert writer.returncode == 0 and not errors, errors
    _check_sqlite_file("busy", store, must_exist=True, readonly=True)


def test_a_store_with_a_hot_journal_is_read_as_it_is(tmp_path: Path) -> None:
    """A writer killed mid-transaction leaves a hot journal that a read-only connection may not
    roll back: the check then reads the file as it is (the next writer rolls it back)."""
    store = tmp_path / "hot.db"
    url = f"sqlite:///{store}"
    optuna.create_study(study_name="hot", storage=make_storage(url, heartbeat=None))
    code = ("import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "c.execute('PRAGMA cache_size=1'); c.execute('BEGIN'); "
            "[c.execute('INSERT INTO study_user_attributes (study_id, key, value_json) VALUES (1, ?, ?)', "
            "(str(i), 'x' * 10000)) for i in range(300)]; print('ready', flush=True); time.sleep(60)")
    writer = subprocess.Popen([sys.executable, "-c", code, str(store)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout and writer.stdout.readline().strip() == "ready"
    writer.kill()
    writer.wait()
    assert Path(f"{store}-journal").stat().st_size > 0
    assert [s.study_name for s in make_storage(url, must_exist=True, readonly=True).get_all_studies()] == ["hot"]


# --------------------------------------------------------------------------- 2. nothing created
def test_read_only_commands_never_create_a_store(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    for args in (["ls"], ["show", "x"], ["export", "x"], ["resume", "x"]):
        one_line_refusal(run_cli(*args, "--storage", f"sqlite:///{empty}", cwd=tmp_path), "is empty")
        one_line_refusal(run_cli(*args, "--storage", f"sqlite:///{tmp_path / 'missing.db'}", cwd=tmp_path),
                         "no such file")
    assert empty.stat().st_size == 0 and not (tmp_path / "missing.db").exists()
    sweep = quick_sweep(tmp_path)
    assert run_cli("run", str(sweep), "--storage", f"sqlite:///{empty}", "--quiet", "--no-report",
                   cwd=tmp_path).returncode == 0  # run may give an empty file its schema
    assert empty.stat().st_size > 0
    assert not list(tmp_path.glob("*.sweeper-lock"))  # no lock file left beside the store


def test_read_only_commands_never_give_an_empty_postgresql_database_a_schema(tmp_path: Path,
                                                                            postgres_url: str) -> None:  # noqa: F811
    import sqlalchemy

    for args in (["ls"], ["show", "x"]):
        one_line_refusal(run_cli(*args, "--storage", postgres_url, cwd=tmp_path), "holds no sweeper store")
    engine = sqlalchemy.create_engine(make_url_with_driver(postgres_url), poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as conn:
        assert sqlalchemy.inspect(conn).get_table_names() == []
    engine.dispose()


def make_url_with_driver(url: str) -> str:
    from sweeper.store.storage import _with_driver, parse_url

    return _with_driver(url, parse_url(url))


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
    sweep = quick_sweep(tmp_path, "half", (1, 2), storage=url)
    assert run_cli("run", str(sweep), "--quiet", "--no-report", cwd=tmp_path).returncode == 0
    assert completed_once(url, "half") == Counter([1, 2])


# --------------------------------------------------------------------------- 3. read-only stores
@pytest.fixture
def as_a_user(tmp_path: Path) -> list[str]:
    """A command prefix under which file permissions apply. Root writes read-only files (the
    CAP_DAC_OVERRIDE capability): run the CLI as root without it (setpriv), where root is an
    ordinary owner of its files; skip only where neither is possible."""
    probe = tmp_path / "probe"
    probe.touch(mode=0o444)
    try:
        if not os.access(probe, os.W_OK):
            return []
        drop = "-dac_override,-dac_read_search"
        prefix = [shutil.which("setpriv") or "setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}"]
        check = [sys.executable, "-c", f"import os, sys; sys.exit(os.access({str(probe)!r}, os.W_OK))"]
        try:
            ok = subprocess.run(prefix + check, capture_output=True, timeout=30, check=False).returncode == 0
        except OSError:
            ok = False
        if not ok:
            pytest.skip("running as root, and setpriv cannot drop CAP_DAC_OVERRIDE here: chmod does not stop writes")
        return prefix
    finally:
        probe.unlink()


def cli_as(prefix: list[str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "sweeper", *args], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=120, check=False)


def test_a_read_only_store_is_one_line_for_writers_and_readable_for_readers(tmp_path: Path,
                                                                          as_a_user: list[str]) -> None:
    sweep = quick_sweep(tmp_path, "ro", (1, 2))
    files = tmp_path / "files"
    files.mkdir()
    folder = tmp_path / "locked"
    folder.mkdir()
    store, in_folder = files / "store.db", folder / "store.db"
    assert run_cli("run", str(sweep), "--storage", f"sqlite:///{store}", "--quiet", "--no-report",
                   cwd=tmp_path).returncode == 0
    sweep = quick_sweep(tmp_path, "ro", (1, 2, 3))  # one more grid point to run
    shutil.copy(store, in_folder)
    store.chmod(0o444)
    folder.chmod(0o555)  # the file is writable, but SQLite could not write its journal beside it
    try:
        before = {p: sha(p) for p in (store, in_folder)}
        readers = (["ls"], ["show", "ro"], ["export", "ro", "-o", str(tmp_path / "ro.json")],
                   ["report", "ro", "--out", str(tmp_path / "reports")])
        for path, words, read in ((store, ("read-only (cannot write",), readers),
                                  (in_folder, ("read-only folder", "journal"), readers[1:2])):
            url = f"sqlite:///{path}"
            for args in (["resume", "ro"], ["run", str(sweep)]):
                one_line_refusal(cli_as(as_a_user, *args, "--storage", url, cwd=tmp_path), str(path), *words)
            for args in read:
                proc = cli_as(as_a_user, *args, "--storage", url, cwd=tmp_path)
                assert proc.returncode == 0, (path, args, proc.stderr)
            assert sha(path) == before[path]
        one_line_refusal(cli_as(as_a_user, "run", str(sweep), "--storage", f"sqlite:///{folder / 'new.db'}",
                                cwd=tmp_path), "read-only folder")
        assert sorted(p.name for p in folder.iterdir()) == ["store.db"]
        store.chmod(0o000)
        one_line_refusal(cli_as(as_a_user, "ls", "--storage", f"sqlite:///{store}", cwd=tmp_path), "cannot read")
    finally:
        folder.chmod(0o755)


# --------------------------------------------------------------------------- 4. first runs race
def race(tmp_path: Path, url: str, name: str) -> None:
    """Two `sweeper run`s of one new study on one new store, started at the same instant."""
    sweep = quick_sweep(tmp_path, name, (1, 2, 3), storage=url)
    cmd = [sys.executable, "-m", "sweeper", "run", str(sweep), "--quiet", "--no-report"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(), stderr=subprocess.PIPE, text=True) for _ in range(2)]
    codes = [p.wait(timeout=PATIENCE_S) for p in procs]
    assert codes == [0, 0], [p.stderr.read() for p in procs if p.stderr]


def completed_once(url: str, name: str) -> Counter[Any]:
    study = optuna.load_study(study_name=name, storage=make_storage(url, readonly=True))
    return Counter(t.params["model__units"] for t in study.get_trials() if t.state == TrialState.COMPLETE)


def test_two_first_runs_on_a_new_sqlite_store_both_succeed(tmp_path: Path) -> None:
    for i in range(2):  # (without the schema lock: 'UNIQUE constraint failed: alembic_version' in 1 try of 3)
        url = f"sqlite:///{tmp_path / f'new{i}.db'}"
        race(tmp_path, url, f"race{i}")
        assert completed_once(url, f"race{i}") == Counter([1, 2, 3])


def test_two_processes_opening_a_new_sqlite_store_at_once_both_succeed(tmp_path: Path) -> None:
    """The schema race alone, more rounds for the price: two processes open one new store."""
    code = "import sys; from sweeper.store.storage import make_storage; make_storage(sys.argv[1], heartbeat=None)"
    for i in range(4):  # (without the schema lock this test failed in 3 tries of 3)
        url = f"sqlite:///{tmp_path / f'open{i}.db'}"
        procs = [subprocess.Popen([sys.executable, "-c", code, url], env=cli_env(), stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        assert [p.wait(timeout=PATIENCE_S) for p in procs] == [0, 0], [p.stderr.read() for p in procs if p.stderr]
        assert make_storage(url, heartbeat=None, must_exist=True, readonly=True).get_all_studies() == []


def test_two_first_runs_on_a_new_postgresql_store_both_succeed(tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    race(tmp_path, postgres_url, "race")  # (without the advisory lock: duplicate pg_type, 4 times in 5)
    assert completed_once(postgres_url, "race") == Counter([1, 2, 3])


# --------------------------------------------------------------------------- 5. schemes, drivers
def test_driver_hints_and_unknown_schemes(tmp_path: Path) -> None:
    import importlib.util

    urls = ["mysql://root@127.0.0.1/test"]
    if importlib.util.find_spec("pymysql") is None:
        urls.append("mysql+pymysql://root@127.0.0.1/test")
    for url in urls:
        proc = run_cli("ls", "--storage", url, cwd=tmp_path)
        one_line_refusal(proc, "missing driver", "pip install pymysql")
        assert "psycopg" not in proc.stderr
    one_line_refusal(run_cli("ls", "--storage", "foo://bar", cwd=tmp_path), "scheme 'foo' is not supported")
    one_line_refusal(run_cli("ls", "--storage", "grpc://localhost", cwd=tmp_path), "grpc://HOST:PORT")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_postgres_scheme_is_postgresql(postgres_url: str) -> None:  # noqa: F811
    url = "postgres://" + postgres_url.partition("://")[2]  # (SQLAlchemy itself knows no 'postgres' dialect)
    optuna.create_study(study_name="p", storage=make_storage(url, heartbeat=None))
    assert [s.study_name for s in make_storage(url, must_exist=True).get_all_studies()] == ["p"]


# --------------------------------------------------------------------------- 6. serve's bad paths
@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    from support import synthetic

    from sweeper.cli.server import ReportServer, make_server

    url = f"sqlite:///{tmp_path / 'store.db'}"
    synthetic.make_study(synthetic.make_spec("s", params={"model__units": [1, 2]}), url, 2)
    optuna.create_study(study_name="plain", storage=url).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    httpd = make_server(ReportServer(url, tmp_path / "out"), port=0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def status(host: str, path: str) -> int:
    conn = http.client.HTTPConnection(host, timeout=60)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)  # the path sent as it is
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def test_serve_answers_bad_paths_with_400_or_404_never_500(server: str) -> None:
    assert status(server, "/study/s/") == 200 and status(server, "/study/s/index.html") == 200
    for path in ("/%00", "/study/s%00/", "/study/s/index.html%00.png", "/api/version/s%00", "/study/s/%0a.html",
                 "/study/%ff/", "/%c0%ae%c0%ae/", "http://[::1/study/s/"):
        assert status(server, path) == 400, path
    for path in ("/study/s/" + "a" * 5000 + ".html", "/study/s/" + "%2e%2e/" * 8 + "etc/passwd",
                 "/study/plain/", "/study/plain/index.html", "/study/nope/", "/api/version/nope", "/x.db"):
        assert status(server, path) == 404, path
