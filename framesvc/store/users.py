"""User rows and the queries other modules need about users."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from framesvc.store.db import utcnow
from framesvc.store.schema import unstorable, users


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


# --- Account management (auth, CLI, registration) ---------------------------------------

#: Django's ``UnicodeUsernameValidator`` (and the SDK's model check): letters, digits, @.+-_.
USERNAME_RE = re.compile(r"^[\w.@+-]+\Z")
USERNAME_MAX_LENGTH = 150


class UserExistsError(Exception):
    """A user with this username (or e-mail) already exists; ``field`` says which."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def username_error(username: str) -> str | None:
    """Why ``username`` is not acceptable (Django's messages), or None."""
    if not username:
        return "This field may not be blank."
    if len(username) > USERNAME_MAX_LENGTH:
        return f"Ensure this field has no more than {USERNAME_MAX_LENGTH} characters."
    if not USERNAME_RE.match(username):
        return ("Enter a valid username. This value may contain only letters, numbers, "
                "and @/./+/-/_ characters.")
    return None


async def get_user_by_username(conn: AsyncConnection, username: str) -> User | None:
    """The user with exactly this username (usernames are case-sensitive, as in Django)."""
    if unstorable(username):  # no stored name has such text; PostgreSQL cannot compare it
        return None
    row = (await conn.execute(sa.select(users).where(users.c.username == username))).first()
    return user_from_row(row) if row else None


async def get_user_by_email(conn: AsyncConnection, email: str) -> User | None:
    """The one user with this e-mail (case-insensitive); None when none or several match."""
    if not email or unstorable(email):
        return None
    rows = (
        await conn.execute(
            sa.select(users).where(sa.func.lower(users.c.email) == email.lower()).limit(2)
        )
    ).all()
    return user_from_row(rows[0]) if len(rows) == 1 else None


async def get_password_hash(conn: AsyncConnection, user_id: int) -> str | None:
    return (
        await conn.execute(sa.select(users.c.password_hash).where(users.c.id == user_id))
    ).scalar_one_or_none()


async def count_users(conn: AsyncConnection) -> int:
    return (await conn.execute(sa.select(sa.func.count()).select_from(users))).scalar_one()


async def list_users(conn: AsyncConnection) -> list[User]:
    """All users by id (for ``framesvc user list``; HTTP lists page with ``user_list_query``)."""
    rows = await conn.execute(sa.select(users).order_by(users.c.id))
    return [user_from_row(r) for r in rows]


async def create_user(
    conn: AsyncConnection,
    *,
    username: str,
    password_hash: str,
    email: str = "",
    first_name: str = "",
    last_name: str = "",
    is_superuser: bool = False,
    is_active: bool = True,
) -> User:
    """Insert a user; the caller hashes the password (``framesvc.security.hash_password``).

    Raises :class:`UserExistsError` when the username (compared case-insensitively, so
    ``Admin`` cannot shadow ``admin``) or a non-empty e-mail is taken, and ValueError for
    an invalid username.  The caller commits.
    """
    problem = username_error(username)
    if problem:
        raise ValueError(problem)
    taken = (
        await conn.execute(
            sa.select(users.c.id).where(sa.func.lower(users.c.username) == username.lower())
        )
    ).first()
    if taken:
        raise UserExistsError("username", "A user with that username already exists.")
    if email:
        taken = (
            await conn.execute(
                sa.select(users.c.id).where(sa.func.lower(users.c.email) == email.lower())
            )
        ).first()
        if taken:
            raise UserExistsError(
                "email", "A user is already registered with this e-mail address."
            )
    try:
        result = await conn.execute(
            sa.insert(users).values(
                username=username,
                email=email,
                first_name=first_name,
                last_name=last_name,
                password_hash=password_hash,
                is_superuser=is_superuser,
                is_active=is_active,
                date_joined=utcnow(),
                last_login=None,
            )
        )
    except sa.exc.IntegrityError as exc:  # a concurrent insert of the same username
        raise UserExistsError("username", "A user with that username already exists.") from exc
    user = await get_user(conn, result.inserted_primary_key[0])
    assert user is not None
    return user


async def set_password_hash(conn: AsyncConnection, user_id: int, password_hash: str) -> bool:
    """Replace a user's password hash; False when there is no such user."""
    result = await conn.execute(
        sa.update(users).where(users.c.id == user_id).values(password_hash=password_hash)
    )
    return result.rowcount > 0


async def set_last_login(conn: AsyncConnection, user_id: int, when: dt.datetime) -> None:
    await conn.execute(sa.update(users).where(users.c.id == user_id).values(last_login=when))


#: Columns ``GET /api/users`` may filter and sort by (CVAT's ``filter_fields``).
USER_LIST_FIELDS: dict[str, sa.ColumnElement[Any]] = {
    "id": users.c.id,
    "username": users.c.username,
    "first_name": users.c.first_name,
    "last_name": users.c.last_name,
    "is_active": users.c.is_active,
}
#: CVAT's ``search_fields``: ``search`` matches any of them, case-insensitively.
USER_SEARCH_FIELDS = ("username", "first_name", "last_name")


def user_list_query(
    *,
    search: str = "",
    equals: Mapping[str, Any] | None = None,
    where: Iterable[sa.ColumnElement[bool]] = (),
    order: Iterable[tuple[str, bool]] = (("id", True),),
) -> sa.Select[Any]:
    """A filtered, ordered SELECT over users, ready for ``http.pagination.paginate``.

    ``search`` follows DRF's SearchFilter: every whitespace/comma separated term must be
    contained (case-insensitively) in one of the search fields.  ``equals`` maps fields
    of :data:`USER_LIST_FIELDS` to exact values; ``order`` is ``(field, descending)`` pairs,
    and ``id`` is always appended as a tie-breaker so pages are stable.
    """
    query = sa.select(users)
    if unstorable(search):  # no name has such text; PostgreSQL cannot compare it
        query = query.where(sa.false())
        search = ""
    for term in re.split(r"[\s,]+", search.strip()):
        if term:
            pattern = "%" + term.lower().replace("\\", "\\\\").replace("%", "\\%").replace(
                "_", "\\_") + "%"
            query = query.where(
                sa.or_(
                    *(sa.func.lower(USER_LIST_FIELDS[f]).like(pattern, escape="\\")
                      for f in USER_SEARCH_FIELDS)
                )
            )
    for field_name, value in (equals or {}).items():
        query = query.where(USER_LIST_FIELDS[field_name] == value)
    for clause in where:
        query = query.where(clause)
    ordering = []
    seen_id = False
    for field_name, descending in order:
        column = USER_LIST_FIELDS[field_name]
        ordering.append(column.desc() if descending else column.asc())
        seen_id = seen_id or field_name == "id"
    if not seen_id:
        ordering.append(users.c.id.asc())
    return query.order_by(*ordering)


async def get_user_and_hash(
    conn: AsyncConnection, *, username: str = "", email: str = ""
) -> tuple[User, str] | None:
    """The user to check a password against, with its stored hash.

    By exact username, or by e-mail (case-insensitive, only when exactly one user has it,
    like allauth's ``filter_users_by_email``).  Login and Basic auth accept either.
    """
    if unstorable(username, email):  # matches no user; PostgreSQL cannot even compare it
        return None
    if username:
        cond: sa.ColumnElement[bool] = users.c.username == username
    elif email:
        cond = sa.func.lower(users.c.email) == email.lower()
    else:
        return None
    rows = (await conn.execute(sa.select(users).where(cond).limit(2))).all()
    if len(rows) != 1:
        return None
    return user_from_row(rows[0]), rows[0]._mapping["password_hash"]
