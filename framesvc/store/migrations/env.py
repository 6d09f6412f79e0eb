"""Alembic environment: runs revisions against the URL the service configured."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context

from framesvc.store import schema
from framesvc.store.schema import metadata

config = context.config


def _render_item(kind: str, obj: Any, _context: Any) -> str | bool:
    """New revisions spell the schema's own column types (``Int32``, ``String``, ``Text``:
    checks in Python around a standard type) as the standard type they create, so
    revisions do not depend on this package (False: Alembic renders the rest)."""
    if kind == "type" and isinstance(obj, sa.TypeDecorator) and obj.__module__ == schema.__name__:
        return f"sa.{obj.impl!r}"
    return False


def run() -> None:
    connectable = sa.create_engine(config.get_main_option("sqlalchemy.url") or "")
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            render_item=_render_item,
        )
        with context.begin_transaction():
            context.run_migrations()
    connectable.dispose()


run()
