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
    path = tmp_path / "db.sqlite3"
    migrate(f"sqlite+aiosqlite:///{path}")
    return sa.create_engine(f"sqlite:///{path}")


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
    assert set(metadata.tables) <= set(sa.inspect(sa.create_engine(
        f"sqlite:///{tmp_path / 'db.sqlite3'}")).get_table_names())


def test_revisions_form_one_chain() -> None:
    script = ScriptDirectory.from_config(_alembic_config("sqlite://"))
    revisions = list(script.walk_revisions())
    assert revisions[-1].down_revision is None
    for newer, older in itertools.pairwise(revisions):
        assert newer.down_revision == older.revision
