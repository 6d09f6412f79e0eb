"""``/api/jobs``: the read side of jobs - one JobRead, and the paginated, filtered list.

Changing jobs (PATCH), ground-truth job creation and deletion, and job media live in
other modules; they register their own routes on the same paths.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web

from framesvc.access import get_job_for, visible_jobs
from framesvc.app import services
from framesvc.http.context import current_user
from framesvc.http.errors import ApiError, json_response
from framesvc.http.pagination import paginate
from framesvc.http.routing import int_param
from framesvc.http.serializers import serialize_jobs
from framesvc.store.jobs import JOB_FIELDS
from framesvc.store.listing import ListQueryError, apply_list_query
from framesvc.store.schema import jobs


async def list_jobs(request: web.Request) -> web.Response:
    """``GET /api/jobs``: visible jobs, ``-id`` first, with CVAT's filters/sort/search."""
    user = current_user(request)
    query = sa.select(jobs).where(visible_jobs(user))
    try:
        query = apply_list_query(query, JOB_FIELDS, request.query)
    except ListQueryError as exc:
        raise ApiError(400, exc.body) from exc
    async with services(request).engine.connect() as conn:

        async def serialize(rows: Any) -> list[dict[str, Any]]:
            return await serialize_jobs(request, conn, user, rows)

        return json_response(await paginate(request, conn, query, serialize))


async def retrieve_job(request: web.Request) -> web.Response:
    user = current_user(request)
    async with services(request).engine.connect() as conn:
        row = await get_job_for(conn, user, int_param(request))
        return json_response((await serialize_jobs(request, conn, user, [row]))[0])


routes = [
    ("GET", "/api/jobs", list_jobs),
    ("GET", "/api/jobs/{id}", retrieve_job),
]
