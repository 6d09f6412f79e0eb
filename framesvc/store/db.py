"""Engine creation and schema migration.

The service talks to the database through SQLAlchemy's asyncio engine so that queries
never block the event loop.  Migrations are Alembic revisions shipped inside the
package and applied at start (and by every CLI command that opens the store), so an
old data dir is upgraded in place.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

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
