"""``/api/jobs/{id}/annotations/`` and ``/api/tasks/{id}/annotations/``: GET, PUT, PATCH, DELETE.

As CVAT's ``JobViewSet.annotations`` / ``TaskViewSet.annotations``:

* GET -> 200 LabeledData (attribute defaults filled in).  The old export parameters
  (``format``, ``filename``, ``location``, ``action``, ``cloud_storage_id``) -> 410 with
  CVAT's text pointing to the export API.  A task without data -> 400.
* PUT (replace everything) -> 200 with the saved data; ``format`` or ``rq_id`` -> 410.
* PATCH ``?action=create|update|delete`` -> 200 with the objects written (or deleted);
  any other action -> 400 ``["Please specify a correct 'action' for the request"]``.
* DELETE -> 204.

Every write is parsed (``annotations.parse``) and validated against the labels and
frames (``annotations.validate``) before the database is touched, then applied in one
transaction (``annotations.writes``), so a rejected request changes nothing, not even
the version.  Parsing, checking, merging and rendering are CPU work on possibly large
bodies; they run in the worker pool, off the event loop.  Importing annotation files
(POST) is not implemented.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.exc import IntegrityError

from framesvc.access import get_job_for, get_task_for
from framesvc.annotations import writes
from framesvc.annotations.merge import JobPart, merge_jobs
from framesvc.annotations.model import LabeledData, data_json
from framesvc.annotations.parse import ACTIONS, parse_labeled_data
from framesvc.annotations.tracks import normalize_tracks
from framesvc.annotations.validate import (
    AnnotationError,
    LabelInfo,
    Scope,
    extend_attributes,
    validate_data,
)
from framesvc.app import services
from framesvc.http.context import current_user
from framesvc.http.errors import JSON_CONTENT_TYPE, ApiError, bad_request, not_found
from framesvc.http.routing import int_param
from framesvc.http.security import loads_json
from framesvc.http.serializers import Invalid
from framesvc.openapi import models
from framesvc.openapi.operations import cvat_json, errors, no_body, operation, text
from framesvc.store import annotations as store
from framesvc.store.schema import jobs
from framesvc.store.users import User

EXPORT_PARAMS = frozenset({"format", "filename", "location", "action", "cloud_storage_id"})
IMPORT_STATUS_PARAMS = frozenset({"format", "rq_id"})
BAD_ACTION = "Please specify a correct 'action' for the request"
NO_DATA = "Exporting annotations from a task without data is not allowed"


def _gone(text: str) -> web.Response:
    return web.Response(status=410, text=textwrap.dedent(text), content_type="text/plain")


def _export_gone(kind: str) -> web.Response:
    return _gone(f"""\
        This endpoint is no longer supported.
        To initiate the export process, use POST /api/{kind}/id/dataset/export?save_images=False.
        To check the process status, use GET /api/requests/rq_id,
        where rq_id is obtained from the response of the previous request.
        To download the prepared file, use the result_url obtained from the response of the previous request.
        """)  # noqa: E501


def _import_gone() -> web.Response:
    return _gone("""\
        This endpoint no longer supports checking the status of the import process.
        The common requests API should be used instead: GET /api/requests/rq_id,
        where rq_id is obtained from the response of the initializing request.
        """)


def _prepare(raw: bytes, action: str, labels: dict[int, LabelInfo], frames: frozenset[int],
             name: str) -> LabeledData:
    """Body bytes -> checked LabeledData (CPU work: runs in the worker pool).

    An empty body is an empty object (DRF's ``request.data``).  Writes other than
    deletes get CVAT's track frame corrections and the label/attribute/frame checks.
    """
    try:
        payload = loads_json(raw, max_depth=None) if raw.strip() else {}
    except ValueError as exc:  # also UnicodeDecodeError, NaN and RecursionError's nesting
        raise ApiError(400, {"detail": f"JSON parse error - {exc}"}) from exc
    try:
        data = parse_labeled_data(payload, action)
    except Invalid as exc:
        raise ApiError(400, exc.detail) from exc
    if action != "delete":
        normalize_tracks(data.tracks)
        try:
            validate_data(data, Scope(labels, frames, name))
        except AnnotationError as exc:
            raise bad_request(str(exc)) from exc
    return data


async def _checked(request: web.Request, action: str, labels: dict[int, LabelInfo],
                   frames: frozenset[int], name: str) -> LabeledData:
    raw = await request.read()
    return await services(request).pool.run(_prepare, raw, action, labels, frames, name)


def _render(data: LabeledData, labels: dict[int, LabelInfo] | None = None) -> bytes:
    """LabeledData -> response bytes, with attribute defaults when ``labels`` are given."""
    if labels is not None:
        extend_attributes(data, labels)
    return json.dumps(data_json(data), separators=(",", ":"), ensure_ascii=False).encode()


async def _respond(request: web.Request, data: LabeledData,
                   labels: dict[int, LabelInfo] | None = None) -> web.Response:
    body = await services(request).pool.run(_render, data, labels)
    return web.Response(body=body, content_type=JSON_CONTENT_TYPE)


def _action(request: web.Request) -> str:
    action = request.query.get("action")
    if action not in ACTIONS:
        raise bad_request(BAD_ACTION)
    return action


async def _apply(request: web.Request, task_id: int, write: Any) -> LabeledData:
    """Run ``write(conn)`` in one transaction that starts by locking the task."""
    try:
        async with services(request).engine.begin() as conn:
            if not await store.lock_task(conn, task_id):
                raise not_found()
            return await write(conn)
    except AnnotationError as exc:
        raise bad_request(str(exc)) from exc
    except IntegrityError as exc:
        # e.g. a label deleted while the request was validated (CVAT: 400 with the text)
        raise bad_request(str(exc.orig)) from exc


# Jobs -------------------------------------------------------------------------------------


async def _job_context(request: web.Request, user: User, *, write: bool
                       ) -> tuple[Any, dict[int, LabelInfo], JobPart]:
    async with services(request).engine.connect() as conn:
        job = await get_job_for(conn, user, int_param(request), write=write)
        labels = await store.task_labels(conn, job.task_id)
        parts = await store.job_parts(conn, job.task_id, [job.id])
    part = parts[0] if parts else JobPart(job.id, 0, -1, frozenset())
    return job, labels, part


async def _write_job(request: web.Request, job: Any, action: str,
                     payload: LabeledData) -> web.Response:
    async def write(conn: Any) -> LabeledData:
        exists = (await conn.execute(sa.select(jobs.c.id).where(jobs.c.id == job.id))).first()
        if exists is None:
            raise not_found()
        return await writes.write_job(conn, job.id, action, payload)

    return await _respond(request, await _apply(request, job.task_id, write))


_GET_QUERY, _PUT_QUERY, _PATCH_QUERY = models.annotation_queries(
    sorted(EXPORT_PARAMS), sorted(IMPORT_STATUS_PARAMS), ACTIONS)
_READ = {200: cvat_json(models.LabeledData), **errors(400, 404),
         410: text("An export parameter: use the dataset export API")}
_WRITE = {200: cvat_json(models.LabeledData, "The objects written"), **errors(400, 403, 404)}
_BODY = models.LabeledDataRequest


@operation("jobs_retrieve_annotations", "Get job annotations", query=_GET_QUERY,
           responses=_READ)
async def get_job_annotations(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    async with services(request).engine.connect() as conn:
        job = await get_job_for(conn, user, int_param(request))
        if EXPORT_PARAMS & request.query.keys():
            return _export_gone("jobs")
        labels = await store.task_labels(conn, job.task_id)
        stored = (await store.load(conn, [job.id]))[job.id]
    return await _respond(request, stored, labels)


@operation("jobs_update_annotations", "Replace job annotations", query=_PUT_QUERY,
           body=_BODY, body_required=False,
           responses={**_WRITE, 410: text("An import parameter: use the requests API")})
async def put_job_annotations(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    job, labels, part = await _job_context(request, user, write=True)
    if IMPORT_STATUS_PARAMS & request.query.keys():
        return _import_gone()
    payload = await _checked(request, "create", labels, part.frames, "job")
    return await _write_job(request, job, "put", payload)


@operation("jobs_partial_update_annotations", "Update job annotations", query=_PATCH_QUERY,
           body=_BODY, body_required=False, responses=_WRITE)
async def patch_job_annotations(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    job, labels, part = await _job_context(request, user, write=True)
    action = _action(request)
    payload = await _checked(request, action, labels, part.frames, "job")
    return await _write_job(request, job, action, payload)


@operation("jobs_destroy_annotations", "Delete job annotations",
           responses={204: no_body("The annotations have been deleted"),
                      **errors(403, 404)})
async def delete_job_annotations(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    job, _, _ = await _job_context(request, user, write=True)

    async def write(conn: Any) -> LabeledData:
        return await writes.write_job(conn, job.id, "put", LabeledData())

    await _apply(request, job.task_id, write)
    return web.Response(status=204)


# Tasks ------------------------------------------------------------------------------------


async def _task_context(request: web.Request, user: User, *, write: bool
                        ) -> tuple[Any, dict[int, LabelInfo], list[JobPart]]:
    async with services(request).engine.connect() as conn:
        task = await get_task_for(conn, user, int_param(request), write=write)
        labels = await store.task_labels(conn, task.id)
        parts = await store.job_parts(conn, task.id)
    return task, labels, parts


def _task_frames(parts: list[JobPart]) -> frozenset[int]:
    return frozenset().union(*(p.frames for p in parts)) if parts else frozenset()


async def _write_task(request: web.Request, task: Any, action: str,
                      payload: LabeledData) -> web.Response:
    async def write(conn: Any) -> LabeledData:
        # The jobs again, inside the transaction: what the write distributes to.
        parts = await store.job_parts(conn, task.id)
        return await writes.write_task(conn, parts, action, payload)

    return await _respond(request, await _apply(request, task.id, write))


@operation("tasks_retrieve_annotations", "Get task annotations", query=_GET_QUERY,
           responses=_READ)
async def get_task_annotations(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    async with services(request).engine.connect() as conn:
        task = await get_task_for(conn, user, int_param(request))
        if task.data_id is None:
            raise bad_request(NO_DATA)
        if EXPORT_PARAMS & request.query.keys():
            return _export_gone("tasks")
        labels = await store.task_labels(conn, task.id)
        parts = await store.job_parts(conn, task.id)
        stored = await store.load(conn, [p.job_id for p in parts])

    def render() -> bytes:
        view = merge_jobs((p, stored[p.job_id]) for p in parts)
        return _render(view.data, labels)

    body = await services(request).pool.run(render)
    return web.Response(body=body, content_type=JSON_CONTENT_TYPE)


@operation("tasks_update_annotations", "Replace task annotations", query=_PUT_QUERY,
           body=_BODY, body_required=False,
           responses={**_WRITE, 410: text("An import parameter: use the requests API")})
async def put_task_annotations(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    task, labels, parts = await _task_context(request, user, write=True)
    if IMPORT_STATUS_PARAMS & request.query.keys():
        return _import_gone()
    payload = await _checked(request, "create", labels, _task_frames(parts), "task")
    return await _write_task(request, task, "put", payload)


@operation("tasks_partial_update_annotations", "Update task annotations",
           query=_PATCH_QUERY, body=_BODY, body_required=False, responses=_WRITE)
async def patch_task_annotations(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    task, labels, parts = await _task_context(request, user, write=True)
    action = _action(request)
    payload = await _checked(request, action, labels, _task_frames(parts), "task")
    return await _write_task(request, task, action, payload)


@operation("tasks_destroy_annotations", "Delete task annotations",
           responses={204: no_body("The annotations have been deleted"),
                      **errors(403, 404)})
async def delete_task_annotations(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    task, _, _ = await _task_context(request, user, write=True)

    async def write(conn: Any) -> LabeledData:
        await writes.delete_task_annotations(conn, await store.job_parts(conn, task.id))
        return LabeledData()

    await _apply(request, task.id, write)
    return web.Response(status=204)


routes = [
    ("GET", "/api/jobs/{id}/annotations", get_job_annotations),
    ("PUT", "/api/jobs/{id}/annotations", put_job_annotations),
    ("PATCH", "/api/jobs/{id}/annotations", patch_job_annotations),
    ("DELETE", "/api/jobs/{id}/annotations", delete_job_annotations),
    ("GET", "/api/tasks/{id}/annotations", get_task_annotations),
    ("PUT", "/api/tasks/{id}/annotations", put_task_annotations),
    ("PATCH", "/api/tasks/{id}/annotations", patch_task_annotations),
    ("DELETE", "/api/tasks/{id}/annotations", delete_task_annotations),
]
