"""never reuse ids: AUTOINCREMENT on SQLite for every table whose id a client sees

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 22:55:00

SQLite's plain ``INTEGER PRIMARY KEY`` hands out ``max(id) + 1``, so deleting the newest
job (a ground-truth job, say) and creating another gives the new one the old id: a client
that kept the id would silently address a different object.  CVAT (PostgreSQL sequences)
never reuses ids.  ``AUTOINCREMENT`` cannot be added by ALTER TABLE, so the tables are
rebuilt with Alembic's batch mode (foreign keys are not enforced on the migration
connection, so the copy-drop-rename keeps every reference).  PostgreSQL's sequences
already never reuse ids: there this revision does nothing.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = (
    "users",
    "access_tokens",
    "data",
    "tasks",
    "labels",
    "images",
    "related_files",
    "videos",
    "segments",
    "jobs",
)


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
