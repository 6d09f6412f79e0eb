"""Alembic environment: runs revisions against the URL the service configured."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from framesvc.store.schema import metadata

config = context.config


def run() -> None:
    connectable = sa.create_engine(config.get_main_option("sqlalchemy.url") or "")
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    connectable.dispose()


run()
