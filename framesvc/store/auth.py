"""Credentials other than passwords: API token keys, sessions and personal access tokens.

* ``auth_tokens``: one DRF-style key per user (``Authorization: Token <key>``), returned by
  every login as ``{"key": ...}``.  It is kept as is because login must return the same
  key again, as DRF does.
* ``sessions``: the ``sessionid`` cookie.  Only the SHA-256 of the session id is stored;
  the row also holds the session's CSRF token, created once and never rotated (the SDK
  copies it into ``X-CSRFToken`` once per login).  Sessions expire after a fixed age, like
  Django's ``SESSION_COOKIE_AGE`` without ``SESSION_SAVE_EVERY_REQUEST``.
* ``access_tokens``: personal access tokens (``Authorization: Bearer``); only the digest of
  the secret is stored, so the secret is shown once, when minted.

Callers commit: functions take an ``AsyncConnection`` and never open transactions.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from framesvc.security import digest, new_access_token, new_csrf_token, new_session_key
from framesvc.security import new_token_key as _new_token_key
from framesvc.store.db import utcnow
from framesvc.store.schema import access_tokens, auth_tokens, sessions, unstorable, users
from framesvc.store.users import User, user_from_row

#: Django's default ``SESSION_COOKIE_AGE``: two weeks.
SESSION_AGE = dt.timedelta(days=14)

#: ``access_tokens.last_used`` is refreshed at most this often, so authenticated reads do
#: not turn into a database write each.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes that are UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


# --- API token keys ---------------------------------------------------------------------


async def get_or_create_auth_token(conn: AsyncConnection, user_id: int) -> str:
    """The user's token key, created on first use (DRF's ``Token.objects.get_or_create``)."""
    key = (
        await conn.execute(sa.select(auth_tokens.c.key).where(auth_tokens.c.user_id == user_id))
    ).scalar_one_or_none()
    if key is not None:
        return key
    key = _new_token_key()
    await conn.execute(sa.insert(auth_tokens).values(key=key, user_id=user_id, created=utcnow()))
    return key


async def user_for_auth_token(conn: AsyncConnection, key: str) -> User | None:
    if unstorable(key):  # no key has such text; PostgreSQL cannot compare it
        return None
    row = (
        await conn.execute(
            sa.select(users).join(auth_tokens, auth_tokens.c.user_id == users.c.id)
            .where(auth_tokens.c.key == key)
        )
    ).first()
    return user_from_row(row) if row else None


async def delete_auth_tokens(conn: AsyncConnection, user_id: int) -> int:
    """Drop the user's token key (dj-rest-auth does this on logout)."""
    result = await conn.execute(sa.delete(auth_tokens).where(auth_tokens.c.user_id == user_id))
    return result.rowcount


# --- Sessions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    #: The cookie value; only known right after ``create_session``.
    key: str
    user_id: int
    csrf_token: str
    expires: dt.datetime


async def create_session(
    conn: AsyncConnection, user_id: int, *, age: dt.timedelta = SESSION_AGE
) -> Session:
    key = new_session_key()
    now = utcnow()
    session = Session(key=key, user_id=user_id, csrf_token=new_csrf_token(), expires=now + age)
    await conn.execute(
        sa.insert(sessions).values(
            session_key=digest(key),
            user_id=user_id,
            csrf_token=session.csrf_token,
            created=now,
            expires=session.expires,
        )
    )
    return session


async def get_session(conn: AsyncConnection, key: str) -> tuple[Session, User] | None:
    """The live session with this cookie value and its user; None if unknown or expired."""
    if not key or len(key) > 128:
        return None
    row = (
        await conn.execute(
            sa.select(users, sessions.c.csrf_token, sessions.c.expires)
            .join(sessions, sessions.c.user_id == users.c.id)
            .where(sessions.c.session_key == digest(key))
        )
    ).first()
    if row is None:
        return None
    expires = _aware(row._mapping["expires"])
    assert expires is not None
    if expires <= utcnow():
        return None
    session = Session(key=key, user_id=row._mapping["id"],
                      csrf_token=row._mapping["csrf_token"], expires=expires)
    return session, user_from_row(row)


async def delete_session(conn: AsyncConnection, key: str) -> bool:
    result = await conn.execute(
        sa.delete(sessions).where(sessions.c.session_key == digest(key))
    )
    return result.rowcount > 0


async def delete_user_sessions(conn: AsyncConnection, user_id: int) -> int:
    """Log a user out everywhere (after a password change, for instance)."""
    result = await conn.execute(sa.delete(sessions).where(sessions.c.user_id == user_id))
    return result.rowcount


async def delete_expired_sessions(conn: AsyncConnection) -> int:
    """Housekeeping: expired rows are already rejected, this only reclaims space."""
    result = await conn.execute(sa.delete(sessions).where(sessions.c.expires <= utcnow()))
    return result.rowcount


# --- Personal access tokens ---------------------------------------------------------------


@dataclass(frozen=True)
class AccessToken:
    id: int
    user_id: int
    name: str
    created: dt.datetime
    expires: dt.datetime | None
    last_used: dt.datetime | None


def _access_token_from_row(row: Any) -> AccessToken:
    m = row._mapping
    return AccessToken(
        id=m["id"],
        user_id=m["user_id"],
        name=m["name"],
        created=_aware(m["created"]),  # type: ignore[arg-type]
        expires=_aware(m["expires"]),
        last_used=_aware(m["last_used"]),
    )


async def create_access_token(
    conn: AsyncConnection, user_id: int, name: str, *, expires: dt.datetime | None = None
) -> tuple[AccessToken, str]:
    """Mint a token; returns its row and the secret, which is not stored and not recoverable."""
    secret = new_access_token()
    now = utcnow()
    result = await conn.execute(
        sa.insert(access_tokens).values(
            user_id=user_id, name=name, digest=digest(secret), created=now, expires=expires,
            last_used=None,
        )
    )
    token = AccessToken(id=result.inserted_primary_key[0], user_id=user_id, name=name,
                        created=now, expires=expires, last_used=None)
    return token, secret


async def user_for_access_token(conn: AsyncConnection, secret: str) -> User | None:
    """The owner of a live (known, unexpired) token; notes when the token was last used."""
    if not secret or len(secret) > 256:
        return None
    row = (
        await conn.execute(
            sa.select(users, access_tokens.c.id.label("token_id"), access_tokens.c.expires,
                      access_tokens.c.last_used)
            .join(access_tokens, access_tokens.c.user_id == users.c.id)
            .where(access_tokens.c.digest == digest(secret))
        )
    ).first()
    if row is None:
        return None
    m = row._mapping
    now = utcnow()
    expires = _aware(m["expires"])
    if expires is not None and expires <= now:
        return None
    last_used = _aware(m["last_used"])
    if last_used is None or now - last_used >= LAST_USED_RESOLUTION:
        await conn.execute(
            sa.update(access_tokens).where(access_tokens.c.id == m["token_id"])
            .values(last_used=now)
        )
    return user_from_row(row)


async def list_access_tokens(conn: AsyncConnection, user_id: int) -> list[AccessToken]:
    rows = await conn.execute(
        sa.select(access_tokens).where(access_tokens.c.user_id == user_id)
        .order_by(access_tokens.c.id)
    )
    return [_access_token_from_row(r) for r in rows]


async def delete_access_token(conn: AsyncConnection, token_id: int, user_id: int) -> bool:
    """Revoke one of ``user_id``'s tokens; False when it has no such token."""
    result = await conn.execute(
        sa.delete(access_tokens).where(
            access_tokens.c.id == token_id, access_tokens.c.user_id == user_id
        )
    )
    return result.rowcount > 0
