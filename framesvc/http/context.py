"""Per-request helpers shared by all handlers: the caller, absolute URLs, date rendering."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from framesvc.http.errors import not_authenticated
from framesvc.store.users import User

#: ``request[USER]`` is the authenticated :class:`User`, set by the auth middleware.
USER = "user"


def current_user(request: web.Request) -> User:
    user = request.get(USER)
    if user is None:
        raise not_authenticated()
    return user


def absolute_url(request: web.Request, path: str) -> str:
    """CVAT's ``url`` fields are absolute (``request.build_absolute_uri``)."""
    return f"{request.scheme}://{request.host}{path}"


def iso(value: dt.datetime | None) -> str | None:
    """Full ISO-8601 in UTC with ``Z``, as DRF renders it.  SQLite returns naive UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def basic_user(request: web.Request, user: User | None) -> dict[str, Any] | None:
    """CVAT's ``BasicUser`` object (owner/assignee fields), or null."""
    if user is None:
        return None
    return {
        "url": absolute_url(request, f"/api/users/{user.id}"),
        "id": user.id,
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
    }
