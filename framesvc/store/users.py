"""User rows and the queries other modules need about users."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from framesvc.store.schema import users


@dataclass(frozen=True)
class User:
    id: int
    username: str
    email: str
    first_name: str
    last_name: str
    is_superuser: bool
    is_active: bool
    date_joined: dt.datetime
    last_login: dt.datetime | None


def user_from_row(row: Any) -> User:
    m = row._mapping
    return User(
        id=m["id"],
        username=m["username"],
        email=m["email"],
        first_name=m["first_name"],
        last_name=m["last_name"],
        is_superuser=bool(m["is_superuser"]),
        is_active=bool(m["is_active"]),
        date_joined=m["date_joined"],
        last_login=m["last_login"],
    )


async def get_user(conn: AsyncConnection, user_id: int) -> User | None:
    row = (await conn.execute(sa.select(users).where(users.c.id == user_id))).first()
    return user_from_row(row) if row else None


async def get_users(conn: AsyncConnection, ids: Iterable[int | None]) -> dict[int, User]:
    """Users by id, for serializing owners/assignees of many rows in one query."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = await conn.execute(sa.select(users).where(users.c.id.in_(wanted)))
    return {u.id: u for u in map(user_from_row, rows)}
