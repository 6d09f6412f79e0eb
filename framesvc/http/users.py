"""``/api/users``: the current user, the user list and one user, in CVAT's shapes.

Administrators (and a user looking at themself) get CVAT's full ``User`` object; other
users get ``BasicUser`` (url, id, username, first_name, last_name), which is all the
SDK and the UI need to pick an assignee.  Viewing another user's record is an
administrator's right, as in CVAT's ``users.rego`` (404 before 403, as DRF checks
existence first).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from framesvc.app import services
from framesvc.http.context import absolute_url, basic_user, current_user, iso
from framesvc.http.errors import forbidden, json_response, not_found
from framesvc.http.pagination import list_params_applied, paginate
from framesvc.http.routing import int_param
from framesvc.openapi import models
from framesvc.openapi.operations import cvat_json, errors, list_query, operation, paginated
from framesvc.store.listing import ListFields
from framesvc.store.schema import users
from framesvc.store.users import (
    USER_LIST_FIELDS,
    USER_SEARCH_FIELDS,
    User,
    get_user,
    user_from_row,
)

#: Query parameters filtering ``GET /api/users`` by exact value (CVAT's simple filters + id).
SIMPLE_FILTERS = ("id", "username", "first_name", "last_name", "is_active")


def full_user(request: web.Request, user: User) -> dict[str, Any]:
    """CVAT's ``User`` serializer (``MetaUser`` in the SDK) for admins and oneself."""
    return {
        "url": absolute_url(request, f"/api/users/{user.id}"),
        "id": user.id,
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "groups": ["admin"] if user.is_superuser else ["user"],
        # framesvc has one privilege flag; Django's staff and superuser flags coincide here.
        "is_staff": user.is_superuser,
        "is_superuser": user.is_superuser,
        "is_active": user.is_active,
        "last_login": iso(user.last_login),
        "date_joined": iso(user.date_joined),
        "has_analytics_access": user.is_superuser,
    }


def visible_user(request: web.Request, caller: User, user: User) -> dict[str, Any]:
    if caller.is_superuser or caller.id == user.id:
        return full_user(request, user)
    body = basic_user(request, user)
    assert body is not None
    return body


@operation("users_retrieve_self", "Get details of the current user",
           responses={200: cvat_json(models.User)})
async def users_self(request: web.Request) -> web.Response:
    return json_response(full_user(request, current_user(request)))


@operation("users_retrieve", "Get user details",
           responses={200: cvat_json(models.User), **errors(403, 404)})
async def users_retrieve(request: web.Request) -> web.Response:
    caller = current_user(request)
    user_id = int_param(request)
    async with services(request).engine.connect() as conn:
        user = await get_user(conn, user_id)
    if user is None:
        raise not_found("No User matches the given query.")
    if not (caller.is_superuser or caller.id == user.id):
        raise forbidden()
    return json_response(full_user(request, user))


# --- Listing ------------------------------------------------------------------------------

#: ``GET /api/users`` in CVAT's list language (``store/listing.py``, ``store/filters.py``):
#: sort and JSON-Logic over every listed field, simple filters and ``search`` as in CVAT.
USER_FIELDS = ListFields(
    columns=USER_LIST_FIELDS,
    sortable=tuple(USER_LIST_FIELDS),
    simple=SIMPLE_FILTERS,
    search=USER_SEARCH_FIELDS,
    pk=users.c.id,
)


@operation("users_list", "List users",
           query=list_query("UsersListQuery", USER_FIELDS),
           responses={200: cvat_json(paginated(models.MetaUser)), **errors(400, 404)})
async def users_list(request: web.Request) -> web.Response:
    caller = current_user(request)
    query = list_params_applied(sa.select(users), USER_FIELDS, request.query)

    async def serialize(rows: Sequence[sa.Row[Any]]) -> list[dict[str, Any]]:
        return [visible_user(request, caller, user_from_row(r)) for r in rows]

    async with services(request).engine.connect() as conn:
        page = await paginate(request, conn, query, serialize)
    return json_response(page)


routes = [
    ("GET", "/api/users/self", users_self),
    ("GET", "/api/users", users_list),
    ("GET", "/api/users/{id}", users_retrieve),
]

__all__ = ["USER_FIELDS", "full_user", "routes", "visible_user"]
