"""DRF-style page-number pagination: ``page``, ``page_size`` and the list envelope.

CVAT answers ``{"count", "next", "previous", "results"}``; ``next``/``previous`` are
absolute URLs or null, a page past the end is 404 (``Invalid page.``), and
``page_size`` accepts ``all`` while an invalid or non-positive size falls back to the
default of 10.  The SDK loops while ``next`` is truthy, so the last page must say null.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from framesvc.http.context import absolute_url
from framesvc.http.errors import ApiError, not_found
from framesvc.store.listing import ListFields, ListQueryError, apply_list_query

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 10_000


@dataclass(frozen=True)
class PageRequest:
    number: int
    #: None means "all".
    size: int | None


def parse_page(request: web.Request) -> PageRequest:
    raw_page = request.query.get("page", "1")
    try:
        number = int(raw_page)
    except ValueError:
        number = 0 if raw_page != "last" else -1
    if number == 0 or number < -1:
        raise not_found("Invalid page.")
    raw_size = request.query.get("page_size", "")
    size: int | None
    if raw_size.lower() == "all":
        size = None
    else:
        try:
            size = int(raw_size)
        except ValueError:
            size = DEFAULT_PAGE_SIZE
        if size <= 0:
            size = DEFAULT_PAGE_SIZE
        size = min(size, MAX_PAGE_SIZE)
    return PageRequest(number, size)


def list_params_applied(
    query: sa.Select[Any], fields: ListFields, params: Mapping[str, str]
) -> sa.Select[Any]:
    """``query`` with the list parameters (sort, search, filters, JSON-Logic) applied.

    Bad list parameters are the client's mistake: 400 with the translator's body.
    """
    try:
        return apply_list_query(query, fields, params)
    except ListQueryError as exc:
        raise ApiError(400, exc.body) from exc


def _page_url(request: web.Request, number: int | None) -> str:
    query = dict(request.query)
    if number is None or number == 1:
        query.pop("page", None)
    else:
        query["page"] = str(number)
    return absolute_url(request, str(request.rel_url.with_query(query)))


async def paginate(
    request: web.Request,
    conn: AsyncConnection,
    query: sa.Select[Any],
    serialize: Callable[[Sequence[sa.Row[Any]]], Awaitable[list[dict[str, Any]]]],
) -> dict[str, Any]:
    """Run ``query`` (already filtered and ordered) for the requested page."""
    page = parse_page(request)
    count = (
        await conn.execute(sa.select(sa.func.count()).select_from(query.order_by(None).subquery()))
    ).scalar_one()
    if page.size is None:
        pages, size = 1, max(count, 1)
    else:
        size = page.size
        pages = max(1, math.ceil(count / size))
    number = pages if page.number == -1 else page.number
    if number > pages:
        raise not_found("Invalid page.")
    rows = (await conn.execute(query.limit(size).offset((number - 1) * size))).all()
    return {
        "count": count,
        "next": _page_url(request, number + 1) if number < pages else None,
        "previous": (
            None if number == 1 else _page_url(request, number - 1)
        ),
        "results": await serialize(rows),
    }
