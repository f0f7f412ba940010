"""The storage URL, parsed once, and the Optuna storage it opens.

sqlite:/// and postgresql:// open Optuna's RDB storage (with heartbeats), grpc://host:port the
gRPC storage proxy through which local workers share one SQLite file, journal:///path a journal
file. Every command takes the same URL; what kind of store it names is decided here only.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import optuna
from optuna.storages import BaseStorage

from sweeper.config.spec import DEFAULT_STORAGE
from sweeper.errors import StudyError
from sweeper.store import optuna_internals as oi
from sweeper.store.keys import HEARTBEAT_S


@dataclass(frozen=True)
class StoreURL:
    url: str
    kind: str  # sqlite | postgresql | mysql | grpc | journal | other
    path: str | None = None  # the file of a sqlite or journal store

    @property
    def has_server(self) -> bool:
        """A database server or proxy that serialises writers itself (workers connect directly)."""
        return self.kind in ("postgresql", "mysql", "grpc")

    @property
    def is_file(self) -> bool:
        return self.kind in ("sqlite", "journal") and self.path not in (None, "", ":memory:")


def parse_url(url: str) -> StoreURL:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise StudyError(f"storage {url!r}: not a storage URL (e.g. {DEFAULT_STORAGE})")
    base = scheme.split("+", 1)[0].lower()
    if base == "sqlite":
        return StoreURL(url, "sqlite", _sqlite_file(url))
    if base in ("postgresql", "postgres"):
        return StoreURL(url, "postgresql")
    if base in ("mysql", "mariadb"):
        return StoreURL(url, "mysql")
    if base == "grpc":
        return StoreURL(url, "grpc")
    if base == "journal":
        return StoreURL(url, "journal", rest)
    return StoreURL(url, "other")


def _sqlite_file(url: str) -> str:
    """The file SQLAlchemy will open, decoded as SQLAlchemy decodes it (sqlite:///p%41.db opens pA.db,
    sqlite:///a#b.db opens a#b.db): the file checked must be the file written."""
    import urllib.parse

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise StudyError(f"storage {url}: not a valid SQLite URL (e.g. {DEFAULT_STORAGE})") from None
    database = parsed.database or ""
    if str(parsed.query.get("uri", "")).lower() in ("true", "1") and database.startswith("file:"):
        database = urllib.parse.unquote(urllib.parse.urlsplit(database).path)  # sqlite:///file:x.db?uri=true
    return database


DRIVER_HINTS = {"postgresql": "pip install psycopg2-binary", "mysql": "pip install pymysql (and use mysql+pymysql://)"}


def make_storage(url: str, heartbeat: int | None = HEARTBEAT_S, must_exist: bool = False,
                 readonly: bool = False) -> BaseStorage:
    """Open the store a URL names. ``must_exist``: the store must be there already (every command
    but ``run``, ``worker`` and ``copy``'s destination); ``readonly``: the command only reads
    (ls, show, export, report, best, serve). A file that is not a sweeper/Optuna store is refused
    untouched, and only ``run`` gives a missing or empty SQLite file its schema."""
    from sweeper.store.trials import requeue_stale

    where = parse_url(url)
    if where.kind == "grpc":
        host, _, port = url.partition("://")[2].rstrip("/").rpartition(":")
        if not port.isdigit():
            raise StudyError(f"storage {url}: expected grpc://HOST:PORT")
        proxy = optuna.storages.GrpcStorageProxy(host=host or "127.0.0.1", port=int(port))
        try:
            proxy.wait_server_ready(timeout=30)
        except Exception:
            raise StudyError(f"storage {url}: no storage server answers there") from None
        return proxy
    if where.kind == "journal":
        from optuna.storages.journal import JournalFileBackend

        if not where.is_file:
            raise StudyError(f"storage {url}: expected journal:///FILE")
        _check_journal_file(url, Path(where.path or ""), must_exist, readonly)
        return optuna.storages.JournalStorage(JournalFileBackend(where.path or ""))
    if where.kind == "other":
        scheme = url.partition("://")[0]
        raise StudyError(f"storage {url}: scheme {scheme!r} is not supported (sqlite:///FILE, postgresql://..., "
                         "mysql+pymysql://..., grpc://HOST:PORT, journal:///FILE)")
    if where.kind == "sqlite" and where.is_file:
        _check_sqlite_file(url, Path(where.path or ""), must_exist, readonly)
    engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if where.kind == "sqlite" else {}
    try:
        if must_exist and where.kind in ("postgresql", "mysql"):
            _check_server_store(url, where)
        with _schema_lock(where):  # two first runs on a new store would both create the schema
            rdb = optuna.storages.RDBStorage(
                _with_driver(url, where),
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat,
                grace_period=3 * heartbeat if heartbeat else None,
                heartbeat_stale_trial_callback=requeue_stale,
            )
    except ImportError as exc:  # Optuna re-raises the driver's ModuleNotFoundError as ImportError
        missing = getattr(exc, "name", None) or getattr(exc.__cause__, "name", None) or "a database driver"
        hint = DRIVER_HINTS.get(where.kind, "install the database driver SQLAlchemy names")
        raise StudyError(f"storage {url}: missing driver ({missing}); {hint}") from None
    except StudyError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StudyError(f"storage {url}: cannot open ({first})") from None
    db = rdb.engine.url.database
    if rdb.engine.name == "sqlite" and db not in (None, "", ":memory:") and os.access(db, os.W_OK):
        _serialize_sqlite_transactions(rdb.engine)  # (a read-only file has no updates to race)
    return optuna.storages.get_storage(rdb)


def _check_sqlite_file(url: str, path: Path, must_exist: bool, readonly: bool) -> None:
    """Refuse, with one line and without writing a byte, a file that is not a sweeper store."""
    folder = path.parent if str(path.parent) else Path(".")
    if not path.exists():
        if must_exist:
            raise StudyError(f"storage {url}: no such file (run a sweep first, or pass --storage)")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise StudyError(f"storage {url}: read-only folder {folder} (cannot create {path.name} there)")
        return
    if path.is_dir():
        raise StudyError(f"storage {url}: {path} is a folder, not a store file")
    if path.stat().st_size == 0:
        if must_exist:
            raise StudyError(f"storage {url}: {path} is empty, not a sweeper store (run a sweep first)")
    else:
        _check_sqlite_schema(url, path, must_exist)
    if readonly:
        return
    if not os.access(path, os.W_OK):
        raise StudyError(f"storage {url}: read-only (cannot write {path}); {READERS} can still read it")
    if not os.access(folder, os.W_OK | os.X_OK):  # SQLite writes its journal beside the file
        raise StudyError(f"storage {url}: read-only folder {folder} (SQLite cannot write its journal beside "
                         f"{path.name}); {READERS} can still read it")


def _check_journal_file(url: str, path: Path, must_exist: bool, readonly: bool) -> None:
    """As for SQLite: Optuna's journal backend creates a missing file and appends to any file."""
    import json

    if path.exists() and not path.is_file():
        raise StudyError(f"storage {url}: {path} is not a file")
    size = path.stat().st_size if path.exists() else None
    if size:
        try:
            with path.open("rb") as f:
                record = json.loads(f.readline(1 << 16))
        except OSError as exc:
            raise StudyError(f"storage {url}: cannot read {path} ({exc.strerror})") from None
        except ValueError:
            record = None
        if not isinstance(record, dict) or "op_code" not in record:
            raise StudyError(f"storage {url}: {path} is not an Optuna journal; pass another --storage")
    elif must_exist:
        state = "no such file" if size is None else f"{path} is empty, not a sweeper store"
        raise StudyError(f"storage {url}: {state} (run a sweep first, or pass --storage)")
    folder = path.parent if str(path.parent) else Path(".")
    if not readonly and (size is not None and not os.access(path, os.W_OK) or not os.access(folder, os.W_OK)):
        raise StudyError(f"storage {url}: read-only (cannot write {path} and its lock file beside it); "
                         f"{READERS} can still read it")


READERS = "'ls', 'show', 'export' and 'report'"
OPTUNA_CORE = {"studies", "trials", "version_info", "alembic_version"}  # what a finished schema has


def _check_sqlite_schema(url: str, path: Path, must_exist: bool) -> None:
    """A complete Optuna schema (other tables beside it or not) is a store; only Optuna's tables,
    some missing, is one whose creation was interrupted (``run`` finishes it); anything else is
    another program's file."""
    import sqlite3

    try:
        with path.open("rb") as f:
            header = f.read(100)
    except OSError as exc:
        raise StudyError(f"storage {url}: cannot read {path} ({exc.strerror})") from None
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        raise StudyError(f"storage {url}: {path} is not a SQLite database; pass another --storage")
    try:
        tables, marks = _read_schema(path, wal_mode=header[18] == 2)
    except sqlite3.DatabaseError as exc:
        if "malformed" in str(exc) or "corrupt" in str(exc):
            raise StudyError(f"storage {url}: {path} is a damaged SQLite database ({exc})") from None
        raise StudyError(f"storage {url}: cannot read {path} ({exc})") from None
    if OPTUNA_CORE <= tables:
        return
    foreign = sorted(tables - oi.schema_tables())
    if foreign or marks:  # (Optuna sets neither application_id nor user_version)
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        what = f"it has tables: {shown}" if foreign else "marked " + ", ".join(marks)
        raise StudyError(f"storage {url}: {path} is not a sweeper/Optuna store ({what}); sweeper writes only "
                         "into its own stores: pass another --storage")
    if must_exist:
        raise StudyError(f"storage {url}: {path} holds no sweeper store yet, or one whose creation was "
                         "interrupted (a sweep's 'run' finishes it)")


def _read_schema(path: Path, wal_mode: bool) -> tuple[set[str], list[str]]:
    """The tables of a SQLite file and the marks another program may have set, read without
    writing a byte (mode=ro; the path quoted, as a '#' or '?' in a name would end it)."""
    import sqlite3
    import urllib.parse

    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
    wal = Path(f"{path}-wal")
    # immutable=1 takes no locks, and reads half-written pages while another process commits
    # ('malformed'): only where nothing can be writing: a WAL-mode file with no WAL (sweeper never
    # uses WAL; a read-only connection would leave -wal and -shm files beside it) ...
    immutable = wal_mode and not (wal.exists() and wal.stat().st_size > 0)

    def read(uri: str) -> tuple[set[str], list[str]]:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            marks = [f"{p}={v}" for p in ("application_id", "user_version") for (v,) in conn.execute(f"PRAGMA {p}")
                     if v]
        return tables, marks

    try:
        return read(uri + ("&immutable=1" if immutable else ""))
    except sqlite3.OperationalError as exc:
        # ... or a hot journal left by a process killed mid-transaction: read-only access may not
        # roll it back (the next writer does), so read the file as it is.
        if immutable or getattr(exc, "sqlite_errorname", "") != "SQLITE_READONLY_ROLLBACK":
            raise
        return read(uri + "&immutable=1")


def _check_server_store(url: str, where: StoreURL) -> None:
    """A read-only command on a database server: Optuna would give a database without its tables
    the whole schema, so look first (only ``run`` and a copy's destination create a store)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(_with_driver(url, where), poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            tables = set(sqlalchemy.inspect(conn).get_table_names())
    finally:
        engine.dispose()
    if not OPTUNA_CORE <= tables:
        raise StudyError(f"storage {url}: this database holds no sweeper store (run a sweep first, or pass "
                         "--storage)")


def lock_path(database: str) -> Path:
    """A lock file for a SQLite store, kept out of the user's folder (SQLite stores are one-host)."""
    import hashlib
    import tempfile

    folder = Path(tempfile.gettempdir()) / "sweeper-locks"
    if not folder.exists():
        folder.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):
            folder.chmod(0o1777)  # shared by every user of the machine, as the temp folder is
    key = hashlib.sha256(str(Path(database).resolve()).encode()).hexdigest()[:24]
    return folder / f"{key}.lock"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    # Read-only is enough for flock, and lets another user lock a file this one created.
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _schema_lock(where: StoreURL) -> Iterator[None]:
    """Serialise Optuna's schema creation between processes opening one store for the first time
    (SQLite: 'UNIQUE constraint failed: alembic_version'; PostgreSQL: a duplicate pg_type)."""
    if where.kind == "sqlite" and where.is_file:
        with _file_lock(lock_path(where.path or "")):
            yield
        return
    if where.kind == "postgresql":
        import zlib

        import sqlalchemy

        engine = sqlalchemy.create_engine(_with_driver(where.url, where), poolclass=sqlalchemy.pool.NullPool)
        key = zlib.crc32(b"sweeper:schema")
        try:
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
                try:
                    yield
                finally:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
        finally:
            engine.dispose()
        return
    yield


def _with_driver(url: str, where: StoreURL) -> str:
    """``postgresql://`` names no driver, and SQLAlchemy >= 2.1 then wants psycopg (3), which sweeper
    does not install: use psycopg2 (a dependency) when psycopg is absent. ``postgres://`` (Heroku's
    spelling) is ``postgresql://`` to SQLAlchemy."""
    import importlib.util

    scheme, _, rest = url.partition("://")
    if where.kind != "postgresql":
        return url
    _, plus, driver = scheme.partition("+")
    if not plus and importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return f"postgresql+psycopg2://{rest}"
    return f"postgresql{plus}{driver}://{rest}"


def _serialize_sqlite_transactions(engine: Any) -> None:
    """Every transaction on a SQLite store starts with BEGIN IMMEDIATE (SQLAlchemy's pysqlite
    recipe). pysqlite otherwise begins a transaction only at the first write, so Optuna's
    read-check-write state updates (no FOR UPDATE in SQLite) race between connections: two
    clients both moved one WAITING trial to RUNNING, two reapers both failed and re-queued one
    dead trial. With the write lock taken first, the second one sees the first one's update."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # let the BEGIN below be the only one

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections pooled while Optuna created the tables predate the hooks


@contextlib.contextmanager
def study_lock(storage: BaseStorage, name: str) -> Iterator[None]:
    """Serialise study creation and grid queueing between processes (two `run`/`resume` at
    once would otherwise queue points twice): a PostgreSQL advisory lock, or a file lock next
    to a SQLite file. Other storages are written by one process (the gRPC proxy's owner)."""
    engine = oi.rdb_engine(storage)
    if engine is None:
        yield
        return
    if engine.name == "postgresql":
        import zlib

        from sqlalchemy import text

        key = zlib.crc32(f"sweeper:{name}".encode())
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    database = engine.url.database
    if engine.name == "sqlite" and database and database != ":memory:":
        with _file_lock(lock_path(database)):
            yield
        return
    yield
