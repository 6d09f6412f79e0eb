"""The Alembic revisions and ``store/schema.py`` describe the same database.

Upgrading an empty database to ``head`` must yield exactly ``schema.metadata``: no
table, column, index, foreign key or type that one has and the other lacks.  A schema
change without its revision (or the other way round) fails here.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from framesvc.store.db import _alembic_config, migrate
from framesvc.store.schema import metadata


def _upgraded(tmp_path: Path) -> sa.Engine:
    """An empty store upgraded to head: SQLite, or PostgreSQL under make test-postgres."""
    from conftest import database_url_for, sync_engine

    (tmp_path / "data").mkdir(exist_ok=True)
    url = database_url_for(tmp_path)
    migrate(url)
    return sync_engine(url)


def test_upgrade_from_empty_matches_metadata(tmp_path: Path) -> None:
    engine = _upgraded(tmp_path)
    try:
        with engine.connect() as conn:
            # Server defaults are not compared: SQLite reflects them re-quoted ('' vs
            # "''"), which Alembic reports as changes that are none.
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_upgrade_reaches_the_single_head(tmp_path: Path) -> None:
    engine = _upgraded(tmp_path)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
    script = ScriptDirectory.from_config(_alembic_config("sqlite://"))
    heads = script.get_heads()
    assert len(heads) == 1, f"several migration heads: {heads}"
    assert current == heads[0]
    assert set(metadata.tables) <= set(sa.inspect(engine).get_table_names())


def test_revisions_form_one_chain() -> None:
    script = ScriptDirectory.from_config(_alembic_config("sqlite://"))
    revisions = list(script.walk_revisions())
    assert revisions[-1].down_revision is None
    for newer, older in itertools.pairwise(revisions):
        assert newer.down_revision == older.revision


def test_upgrade_to_autoincrement_keeps_rows_and_stops_id_reuse(tmp_path: Path) -> None:
    """0003 rebuilds tables in place: rows, references and cascades survive, ids never recur."""
    from alembic import command

    path = tmp_path / "db.sqlite3"
    url = f"sqlite:///{path}"
    command.upgrade(_alembic_config(url), "0002")
    engine = sa.create_engine(url)
    now = "2026-01-01 00:00:00"
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO users (id, username, password_hash, date_joined) "
            f"VALUES (1, 'u', 'x', '{now}')"
        )
        conn.exec_driver_sql(
            "INSERT INTO tasks (id, name, owner_id, created_date, updated_date) "
            f"VALUES (7, 't', 1, '{now}', '{now}')"
        )
        conn.exec_driver_sql(
            "INSERT INTO segments (id, task_id, start_frame, stop_frame, chunks_updated_date) "
            f"VALUES (3, 7, 0, 9, '{now}')"
        )
        for job_id in (10, 11):
            conn.exec_driver_sql(
                "INSERT INTO jobs (id, segment_id, task_id, created_date, updated_date) "
                f"VALUES ({job_id}, 3, 7, '{now}', '{now}')"
            )
    engine.dispose()

    command.upgrade(_alembic_config(url), "head")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            assert conn.exec_driver_sql("SELECT id FROM jobs ORDER BY id").scalars().all() == [
                10,
                11,
            ]
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
            conn.exec_driver_sql("DELETE FROM jobs WHERE id = 11")
            conn.exec_driver_sql(
                "INSERT INTO jobs (segment_id, task_id, created_date, updated_date) "
                f"VALUES (3, 7, '{now}', '{now}')"
            )
            assert conn.exec_driver_sql("SELECT max(id) FROM jobs").scalar() == 12
            conn.exec_driver_sql("DELETE FROM tasks WHERE id = 7")
            assert conn.exec_driver_sql("SELECT count(*) FROM jobs").scalar() == 0
    finally:
        engine.dispose()
