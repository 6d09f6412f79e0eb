"""``/api/users``: the current user, the user list and one user, in CVAT's shapes.

Administrators (and a user looking at themself) get CVAT's full ``User`` object; other
users get ``BasicUser`` (url, id, username, first_name, last_name), which is all the
SDK and the UI need to pick an assignee.  Viewing another user's record is an
administrator's right, as in CVAT's ``users.rego`` (404 before 403, as DRF checks
existence first).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from framesvc.app import services
from framesvc.http.context import absolute_url, basic_user, current_user, iso
from framesvc.http.errors import bad_request, field_errors, forbidden, json_response, not_found
from framesvc.http.pagination import paginate
from framesvc.http.routing import int_param
from framesvc.store.users import USER_LIST_FIELDS, User, get_user, user_from_row, user_list_query

#: Query parameters filtering ``GET /api/users`` by exact value (CVAT's simple filters + id).
SIMPLE_FILTERS = ("id", "username", "first_name", "last_name", "is_active")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


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


async def users_self(request: web.Request) -> web.Response:
    return json_response(full_user(request, current_user(request)))


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


def _parse_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise field_errors({name: ["Must be a valid boolean."]})


def _simple_filters(request: web.Request) -> dict[str, Any]:
    equals: dict[str, Any] = {}
    for name in SIMPLE_FILTERS:
        if name not in request.query:
            continue
        raw = request.query[name]
        if name == "id":
            try:
                equals[name] = int(raw)
            except ValueError as exc:
                raise field_errors({name: ["Enter a number."]}) from exc
        elif name == "is_active":
            equals[name] = _parse_bool(name, raw)
        else:
            equals[name] = raw
    return equals


def _ordering(request: web.Request) -> list[tuple[str, bool]]:
    """``sort=username,-id``; unknown fields are dropped (DRF's OrderingFilter)."""
    order = []
    for term in request.query.get("sort", "").split(","):
        term = term.strip()
        name = term.lstrip("-")
        if name in USER_LIST_FIELDS:
            order.append((name, term.startswith("-")))
    return order or [("id", True)]  # CVAT's default ordering is "-id"


def _filter_value(name: str, value: Any) -> Any:
    """A JSON-logic operand for ``name``, of the column's type (else 400)."""
    if name == "is_active":
        ok = isinstance(value, bool)
    elif name == "id":
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise bad_request(f"filter: {value!r} is not a valid value for {name!r}")
    return value


def _var(node: Any) -> str | None:
    if isinstance(node, dict) and set(node) == {"var"}:
        name = node["var"]
        if not isinstance(name, str) or name not in USER_LIST_FIELDS:
            raise bad_request(f"filter: unsupported variable {name!r}; supported: "
                              + ", ".join(USER_LIST_FIELDS))
        return name
    return None


_COMPARE = {
    "==": lambda c, v: c == v,
    "<": lambda c, v: c < v,
    "<=": lambda c, v: c <= v,
    ">": lambda c, v: c > v,
    ">=": lambda c, v: c >= v,
}
_MIRROR = {"==": "==", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def jsonlogic_clause(node: Any) -> sa.ColumnElement[bool]:
    """CVAT's JSON-logic subset over the user fields: and, or, !, !!, var, ==, <, <=, >,
    >=, two-argument ``in`` (membership or substring) and three-argument ``<=`` (between).
    """
    if not isinstance(node, dict) or len(node) != 1:
        raise bad_request("filter: each rule must be an object with one operator")
    name = _var(node)
    if name is not None:
        column = USER_LIST_FIELDS[name]
        return column.is_(True) if name == "is_active" else column.is_not(None)
    op, args = next(iter(node.items()))
    if op in ("and", "or"):
        if not isinstance(args, list) or not args:
            raise bad_request(f"filter: '{op}' expects a non-empty list")
        clauses = [jsonlogic_clause(a) for a in args]
        return sa.and_(*clauses) if op == "and" else sa.or_(*clauses)
    if op in ("!", "!!"):
        inner = args[0] if isinstance(args, list) and len(args) == 1 else args
        clause = jsonlogic_clause(inner)
        return sa.not_(clause) if op == "!" else clause
    if not isinstance(args, list):
        raise bad_request(f"filter: '{op}' expects a list of arguments")
    if op == "<=" and len(args) == 3:
        name = _var(args[1])
        if name is None:
            raise bad_request("filter: three-argument '<=' needs a variable in the middle")
        column = USER_LIST_FIELDS[name]
        return sa.and_(column >= _filter_value(name, args[0]),
                       column <= _filter_value(name, args[2]))
    if op in _COMPARE and len(args) == 2:
        left, right = _var(args[0]), _var(args[1])
        if left is not None and right is None:
            return _COMPARE[op](USER_LIST_FIELDS[left], _filter_value(left, args[1]))
        if right is not None and left is None:
            return _COMPARE[_MIRROR[op]](USER_LIST_FIELDS[right], _filter_value(right, args[0]))
        raise bad_request(f"filter: '{op}' compares one variable with one value")
    if op == "in" and len(args) == 2:
        left, right = _var(args[0]), _var(args[1])
        if left is not None and isinstance(args[1], list):
            return USER_LIST_FIELDS[left].in_([_filter_value(left, v) for v in args[1]])
        if right is not None and isinstance(args[0], str) and right not in ("id", "is_active"):
            pattern = "%" + args[0].lower().replace("\\", "\\\\").replace(
                "%", "\\%").replace("_", "\\_") + "%"
            return sa.func.lower(USER_LIST_FIELDS[right]).like(pattern, escape="\\")
        raise bad_request("filter: 'in' expects [variable, list] or [string, variable]")
    raise bad_request(f"filter: unsupported operation {op!r}")


def _jsonlogic_filter(request: web.Request) -> list[sa.ColumnElement[bool]]:
    raw = request.query.get("filter", "")
    if not raw.strip():
        return []
    try:
        node = json.loads(raw)
    except ValueError as exc:
        raise bad_request(f"filter: invalid JSON - {exc}") from exc
    try:
        return [jsonlogic_clause(node)]
    except RecursionError as exc:
        raise bad_request("filter: nested too deeply") from exc


async def users_list(request: web.Request) -> web.Response:
    caller = current_user(request)
    query = user_list_query(
        search=request.query.get("search", ""),
        equals=_simple_filters(request),
        where=_jsonlogic_filter(request),
        order=_ordering(request),
    )

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

__all__ = ["full_user", "jsonlogic_clause", "routes", "visible_user"]
