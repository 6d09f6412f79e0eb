"""Engine creation and schema migration.

The service talks to the database through SQLAlchemy's asyncio engine so that queries
never block the event loop.  Migrations are Alembic revisions shipped inside the
package and applied at start (and by every CLI command that opens the store), so an
old data dir is upgraded in place.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def sync_url(async_url: str) -> str:
    """The synchronous driver URL for the same database (Alembic runs synchronously)."""
    url = sa.engine.make_url(async_url)
    driver = {"sqlite+aiosqlite": "sqlite", "postgresql+asyncpg": "postgresql+psycopg"}
    return url.set(drivername=driver.get(url.drivername, url.drivername)).render_as_string(
        hide_password=False
    )


def _alembic_config(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(async_url: str) -> None:
    """Bring the database at ``async_url`` to the newest schema revision."""
    url = sa.engine.make_url(async_url)
    if url.get_backend_name() == "sqlite" and url.database:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(_alembic_config(sync_url(async_url)), "head")


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL lets readers proceed while the ingest writes; foreign keys are off by default.
    # synchronous=FULL syncs the WAL at every commit, so what the service acknowledged (an
    # annotation save, an upload's row or offset) survives a power loss too, as with
    # PostgreSQL's default synchronous_commit; NORMAL survives only a process crash.
    # Measured cost (docs/security.md, "Crash safety"): a few ms per write transaction.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_engine(async_url: str) -> AsyncEngine:
    url = sa.engine.make_url(async_url)
    if url.get_backend_name() == "sqlite":
        engine = create_async_engine(url, connect_args={"timeout": 30})
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True)


class StoreGeneration:
    """An exact in-process signal that the store changed: ``value`` grows after every
    committed transaction that wrote anything through the engine it tracks.

    In-process caches of what a request resolved (the caller of a token, a job's media
    scope and access decision) keep the generation they were computed at and are valid
    only while it is unchanged, so a PATCH, a logout or a reassignment in this process
    takes effect on the very next request.  Writes by *other* processes (the CLI, another
    server) are not seen by the counter; for SQLite :meth:`token` adds the database's
    ``PRAGMA data_version`` read on a private connection (~6 µs, no thread hop), which
    changes whenever any other connection commits.  On other databases callers bound
    their entries with a short TTL as well.

    The bump happens *after* the DBAPI commit returned (``Dialect.do_commit`` is wrapped;
    SQLAlchemy's ``commit`` event fires before the commit): an entry computed from the
    old state is then always keyed by an older generation than the one after the commit.
    """

    def __init__(self, sqlite_path: str | None = None) -> None:
        self.value = 0
        self._dirty: set[int] = set()
        self._lock = threading.Lock()
        self._sqlite_path = sqlite_path
        self._watch: sqlite3.Connection | None = None

    def bump(self) -> None:
        with self._lock:
            self.value += 1

    # The DBAPI connection arrives raw or wrapped in the pool's fairy, depending on the
    # caller (a Connection's commit vs. the pool's reset-on-return); key by the raw one.

    def mark_dirty(self, dbapi_connection: object) -> None:
        with self._lock:
            self._dirty.add(_raw_id(dbapi_connection))

    def committed(self, dbapi_connection: object) -> None:
        with self._lock:
            key = _raw_id(dbapi_connection)
            if key in self._dirty:
                self._dirty.discard(key)
                self.value += 1

    def rolled_back(self, dbapi_connection: object) -> None:
        with self._lock:
            self._dirty.discard(_raw_id(dbapi_connection))

    def external(self) -> int:
        """SQLite's ``data_version`` (changes on any other connection's commit); -1 if
        unknown (not SQLite, or the read failed: then every call differs, i.e. no caching
        can rely on it)."""
        if self._sqlite_path is None:
            return 0
        try:
            if self._watch is None:
                uri = f"{Path(self._sqlite_path).as_uri()}?mode=ro"
                self._watch = sqlite3.connect(uri, uri=True, check_same_thread=False,
                                              timeout=0)
            return int(self._watch.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            self.close()
            self.bump()  # treat a failed read as "changed"
            return -1

    @property
    def cross_process(self) -> bool:
        """Whether :meth:`token` also sees other processes' writes (SQLite only)."""
        return self._sqlite_path is not None

    def token(self) -> tuple[int, int]:
        """What a cached resolution is keyed by: equal tokens mean no write in between."""
        external = self.external()
        return self.value, external

    def close(self) -> None:
        if self._watch is not None:
            with contextlib.suppress(sqlite3.Error):
                self._watch.close()
            self._watch = None


def _raw_id(connection: object) -> int:
    return id(getattr(connection, "dbapi_connection", None) or connection)


def _is_write(statement: str) -> bool:
    head = statement.lstrip()[:8].upper()
    return not (head.startswith("SELECT") or head.startswith("PRAGMA"))


def track_writes(engine: AsyncEngine) -> StoreGeneration:
    """A :class:`StoreGeneration` bumped by every committed write through ``engine``."""
    url = engine.url
    path = (url.database if url.get_backend_name() == "sqlite" and url.database
            and url.database != ":memory:" else None)
    generation = StoreGeneration(str(Path(path).resolve()) if path else None)
    sync = engine.sync_engine

    def after_cursor_execute(conn, cursor, statement, parameters, context,  # type: ignore[no-untyped-def]
                             executemany) -> None:
        if _is_write(statement):
            generation.mark_dirty(conn.connection.dbapi_connection)

    sa.event.listen(sync, "after_cursor_execute", after_cursor_execute)
    dialect = sync.dialect
    do_commit, do_rollback = dialect.do_commit, dialect.do_rollback

    def commit(dbapi_connection: Any) -> None:
        do_commit(dbapi_connection)
        generation.committed(dbapi_connection)

    def rollback(dbapi_connection: Any) -> None:
        try:
            do_rollback(dbapi_connection)
        finally:
            generation.rolled_back(dbapi_connection)

    dialect.do_commit = commit  # type: ignore[method-assign]
    dialect.do_rollback = rollback  # type: ignore[method-assign]
    return generation
