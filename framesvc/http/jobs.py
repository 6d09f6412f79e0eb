"""``/api/jobs``: list, read, change, create (ground truth) and delete jobs (CVAT's JobViewSet).

* ``GET /api/jobs`` - the jobs the caller may see, in CVAT's list language (pages,
  ``sort``, simple filters, ``search``, JSON-Logic ``filter``; ``org``/``org_id`` and
  ``X-Organization`` are ignored: framesvc has no organizations).
* ``GET /api/jobs/{id}`` - one JobRead.
* ``PATCH /api/jobs/{id}`` - ``stage``, ``state``, ``assignee`` (``JobWriteSerializer``);
  the write-once fields of JobWriteRequest are ignored, as in CVAT.
* ``POST /api/jobs`` - a ground-truth job, its frames chosen by ``model/gt.py`` exactly
  as CVAT chooses them for the same ``random_seed``.
* ``DELETE /api/jobs/{id}`` - ground-truth jobs only.

Permissions come from ``framesvc/access.py`` and are checked before the body's values,
as DRF does (so a caller who may not change a job learns nothing from a 400).
Validation errors have DRF's shapes: per-field ``{"field": [...]}`` from field parsing,
``{"non_field_errors": [...]}`` from the serializer's ``validate()``, and ``[...]`` from
its ``create()``.
"""

from __future__ import annotations

import math
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from framesvc.access import can_own_job, can_view_task, get_job_for, visible_jobs
from framesvc.app import services
from framesvc.http.context import current_user
from framesvc.http.errors import ApiError, bad_request, field_errors, forbidden, json_response
from framesvc.http.pagination import list_params_applied, paginate
from framesvc.http.routing import int_param
from framesvc.http.serializers import (
    Fields,
    Invalid,
    choice_field,
    int_field,
    list_field,
    read_json,
    serialize_jobs,
)
from framesvc.model import gt
from framesvc.model.frames import FrameSpace, parse_frame_filter
from framesvc.openapi import models
from framesvc.openapi.operations import (
    cvat_json,
    errors,
    list_query,
    no_body,
    operation,
    paginated,
)
from framesvc.store.jobs import (
    JOB_FIELDS,
    STAGES,
    STATES,
    create_ground_truth_job,
    delete_job_and_segment,
    ground_truth_count,
    lock_task,
    range_segments,
    update_job,
)
from framesvc.store.schema import data, jobs, tasks
from framesvc.store.tasks import refresh_task_status
from framesvc.store.users import User, get_user

JOB_TYPES = ("annotation", "ground_truth", "consensus_replica")
METHODS = ("random_uniform", "random_per_job", "manual")
#: Selection parameters each method uses; any other one sent is refused.
METHOD_PARAMS = {
    "random_uniform": ("frame_count", "frame_share", "random_seed"),
    "random_per_job": ("frames_per_job_count", "frames_per_job_share", "random_seed"),
    "manual": ("frames",),
}
SELECTION_PARAMS = ("frame_count", "frame_share", "frames_per_job_count",
                    "frames_per_job_share", "random_seed", "frames")


# Reads ------------------------------------------------------------------------------------


@operation("jobs_list", "List jobs", query=list_query("JobsListQuery", JOB_FIELDS),
           responses={200: cvat_json(paginated(models.JobRead)), **errors(400, 404)})
async def list_jobs(request: web.Request) -> web.Response:
    """``GET /api/jobs``: visible jobs, ``-id`` first, with CVAT's filters/sort/search."""
    user = current_user(request)
    query = sa.select(jobs).where(visible_jobs(user))
    query = list_params_applied(query, JOB_FIELDS, request.query)
    async with services(request).engine.connect() as conn:

        async def serialize(rows: Any) -> list[dict[str, Any]]:
            return await serialize_jobs(request, conn, user, rows)

        return json_response(await paginate(request, conn, query, serialize))


async def _job_read(request: web.Request, conn: AsyncConnection, user: User,
                    job_id: int) -> dict[str, Any]:
    row = (await conn.execute(sa.select(jobs).where(jobs.c.id == job_id))).one()
    return (await serialize_jobs(request, conn, user, [row]))[0]


@operation("jobs_retrieve", "Get job details",
           responses={200: cvat_json(models.JobRead), **errors(404)})
async def retrieve_job(request: web.Request) -> web.Response:
    user = current_user(request)
    async with services(request).engine.connect() as conn:
        row = await get_job_for(conn, user, int_param(request))
        return json_response((await serialize_jobs(request, conn, user, [row]))[0])


# Field parsers ----------------------------------------------------------------------------


def _float_field(value: Any) -> float:
    """DRF's FloatField: numbers and numeric strings; booleans are not numbers."""
    if value is None:
        raise Invalid(["This field may not be null."])
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Invalid(["A valid number is required."])
    try:
        number = float(value)
    except (ValueError, OverflowError) as exc:
        raise Invalid(["A valid number is required."]) from exc
    return number


def _share_field(value: Any) -> float:
    number = _float_field(value)
    # ``not 0 <= x <= 1`` also refuses NaN, as CVAT's validate_share does.
    if math.isinf(number) or not 0 <= number <= 1:
        raise Invalid(["Value must be in the range [0; 1]"])
    return number


def _frames_field(value: Any) -> list[int]:
    """DRF's ``ListField(child=IntegerField(min_value=0), allow_empty=False)``."""
    items = list_field(value)
    if not items:
        raise Invalid(["This list may not be empty."])
    errors: dict[str, Any] = {}
    out: list[int] = []
    for index, item in enumerate(items):
        try:
            out.append(int(int_field(item, min_value=0)))  # type: ignore[arg-type]
        except Invalid as exc:
            errors[str(index)] = exc.detail
    if errors:
        raise Invalid(errors)
    return out


def _assignee_field(value: Any) -> int | None:
    return int_field(value, allow_null=True)


async def _check_assignee(conn: AsyncConnection, assignee_id: int | None) -> None:
    if assignee_id is not None and await get_user(conn, assignee_id) is None:
        raise field_errors({"assignee": f"The specified user #{assignee_id} does not exist."})


def _object(payload: Any) -> dict[str, Any]:
    try:
        return Fields(payload).payload
    except Invalid as exc:
        raise ApiError(400, exc.detail) from exc


# PATCH ------------------------------------------------------------------------------------


@operation("jobs_partial_update", "Update a job", body=models.PatchedJobWriteRequest,
           responses={200: cvat_json(models.JobRead), **errors(400, 403, 404)})
async def update_job_handler(request: web.Request) -> web.Response:
    """``PATCH /api/jobs/{id}``: stage (task staff), state (job staff), assignee (owner)."""
    user = current_user(request)
    job_id = int_param(request)
    payload = _object(await read_json(request))
    async with services(request).engine.begin() as conn:
        job = await get_job_for(conn, user, job_id, write=True,
                                manage="stage" in payload, owner="assignee" in payload)
        f = Fields(payload)
        stage = f.get("stage", lambda v: choice_field(v, STAGES))
        state = f.get("state", lambda v: choice_field(v, STATES))
        assignee = f.get("assignee", _assignee_field)
        try:
            f.check()
        except Invalid as exc:
            raise ApiError(400, exc.detail) from exc
        changes: dict[str, Any] = {"stage": stage, "state": state}
        if "assignee" in payload:
            await _check_assignee(conn, assignee)
            changes["assignee_id"] = assignee
        await update_job(conn, job, **changes)
        await refresh_task_status(conn, job.task_id)
        body = await _job_read(request, conn, user, job_id)
    return json_response(body)


# POST (ground truth) ----------------------------------------------------------------------


def _parse_create(payload: dict[str, Any]) -> dict[str, Any]:
    """JobWriteRequest's fields (DRF field validation), then ``validate()``."""
    f = Fields(payload)
    values: dict[str, Any] = {
        "type": f.get("type", lambda v: choice_field(v, JOB_TYPES), required=True),
        "task_id": f.get("task_id", int_field, required=True),
        "assignee": f.get("assignee", _assignee_field),
        "stage": f.get("stage", lambda v: choice_field(v, STAGES)),
        "state": f.get("state", lambda v: choice_field(v, STATES)),
        "frame_selection_method": f.get("frame_selection_method",
                                        lambda v: choice_field(v, METHODS)),
        "frame_count": f.get("frame_count", lambda v: int_field(v, min_value=1)),
        "frame_share": f.get("frame_share", _share_field),
        "frames_per_job_count": f.get("frames_per_job_count",
                                      lambda v: int_field(v, min_value=1)),
        "frames_per_job_share": f.get("frames_per_job_share", _share_field),
        "random_seed": f.get("random_seed", lambda v: int_field(v, min_value=0)),
        "frames": f.get("frames", _frames_field),
    }
    try:
        f.check()
    except Invalid as exc:
        raise ApiError(400, exc.detail) from exc
    return values


def _non_field(message: str) -> ApiError:
    return ApiError(400, {"non_field_errors": [message]})


def _require_one_of(payload: dict[str, Any], keys: tuple[str, ...]) -> None:
    """CVAT's ``field_validation.require_one_of_fields`` (a field counts when sent)."""
    active = sum(k in payload for k in keys)
    if active == 1:
        return
    options = ", ".join(f'"{k}"' for k in keys)
    if not active:
        raise _non_field(f"One of the fields {options} required")
    raise _non_field(f"Only 1 of the fields {options} can be used")


def _validate_selection(payload: dict[str, Any], values: dict[str, Any]) -> None:
    """``JobWriteSerializer.validate``: the parameters the chosen method needs."""
    method = values["frame_selection_method"]
    if method == "random_uniform":
        _require_one_of(payload, ("frame_count", "frame_share"))
    elif method == "random_per_job":
        _require_one_of(payload, ("frames_per_job_count", "frames_per_job_share"))
    elif method == "manual" and "frames" not in payload:
        raise _non_field('The "frames" field is required')
    if "frames" in payload and method != "manual":
        raise _non_field('"frames" can only be used when "frame_selection_method" is "manual"')


def _unused_params(payload: dict[str, Any], method: str) -> None:
    unused = [k for k in SELECTION_PARAMS if k in payload and k not in METHOD_PARAMS[method]]
    if unused:
        listed = gt.format_list([f'"{k}"' for k in unused])
        raise bad_request(f"Fields {listed} specified, but not used.")


async def _select_frames(conn: AsyncConnection, task: Any, data_row: Any,
                         values: dict[str, Any]) -> list[int]:
    """The GT job's *absolute* frames, chosen as CVAT chooses them."""
    space = FrameSpace(data_row.start_frame, data_row.stop_frame,
                       parse_frame_filter(data_row.frame_filter))
    method = values["frame_selection_method"]
    if method == "random_uniform":
        rel = gt.random_uniform(space.size, values["frame_count"], values["frame_share"],
                                values["random_seed"])
    elif method == "random_per_job":
        rel = gt.random_per_job(
            await range_segments(conn, task.id), space,
            segment_size=task.segment_size, overlap=task.overlap or 0,
            frames_per_job_count=values["frames_per_job_count"],
            frames_per_job_share=values["frames_per_job_share"],
            seed=values["random_seed"],
        )
    else:
        rel = gt.manual(values["frames"], space.size)
    return [space.to_abs(f) for f in rel]


@operation("jobs_create", "Create a ground truth job",
           body=models.job_write_request(JOB_TYPES, METHODS),
           responses={201: cvat_json(models.JobRead), **errors(400, 403)})
async def create_job(request: web.Request) -> web.Response:
    """``POST /api/jobs``: a ground-truth job for a task the caller owns."""
    user = current_user(request)
    payload = _object(await read_json(request))
    values = _parse_create(payload)
    if values["type"] == "ground_truth" and values["frame_selection_method"] is None:
        raise field_errors({"frame_selection_method": "This field is required."})

    async with services(request).engine.begin() as conn:
        # First statement: serializes concurrent creations for this task.
        if not await lock_task(conn, values["task_id"]):
            raise bad_request("Task matching query does not exist.")
        task = (await conn.execute(sa.select(tasks).where(tasks.c.id == values["task_id"]))
                ).one()
        # CVAT checks the task's view and the job's create permission: both 403.
        if not (can_view_task(user, task) and can_own_job(user, task)):
            raise forbidden()
        _validate_selection(payload, values)
        await _check_assignee(conn, values["assignee"])
        if values["type"] != "ground_truth":
            raise bad_request(f"Unexpected job type '{values['type']}'")
        data_row = None
        if task.data_id is not None:
            data_row = (await conn.execute(sa.select(data).where(data.c.id == task.data_id))
                        ).first()
        if data_row is None or not data_row.size:
            raise bad_request(
                "This task has no data attached yet. Please set up task data and try again")
        if task.dimension != "2d" or data_row.media_type == "point_cloud":
            raise bad_request("Ground Truth jobs can only be added in 2d tasks")
        if await ground_truth_count(conn, task.id):
            # framesvc's validation mode is "gt" exactly when the task has a GT job.
            raise bad_request('Task with validation mode "gt" cannot have more than 1 GT job')
        _unused_params(payload, values["frame_selection_method"])
        try:
            frames = await _select_frames(conn, task, data_row, values)
        except gt.GtSelectionError as exc:
            if exc.field is not None:
                raise field_errors({exc.field: exc.message}) from exc
            raise bad_request(exc.message) from exc
        job_id = await create_ground_truth_job(
            conn, task.id, data_row.size, frames,
            assignee_id=values["assignee"],
            stage=values["stage"] or "annotation",
            state=values["state"] or "new",
        )
        # Like CVAT, a new job leaves the task's status alone (its post_save handler
        # skips created jobs).
        body = await _job_read(request, conn, user, job_id)
    return json_response(body, status=201, headers={"Location": body["url"]})


# DELETE -----------------------------------------------------------------------------------


@operation("jobs_destroy", "Delete a ground truth job",
           responses={204: no_body("The job has been deleted"), **errors(400, 403, 404)})
async def delete_job(request: web.Request) -> web.Response:
    """``DELETE /api/jobs/{id}``: ground-truth jobs only; annotations go with them."""
    user = current_user(request)
    async with services(request).engine.begin() as conn:
        job = await get_job_for(conn, user, int_param(request), owner=True)
        if job.type != "ground_truth":
            raise bad_request("Only ground truth jobs can be removed")
        await delete_job_and_segment(conn, job)
    return web.Response(status=204)


routes = [
    ("GET", "/api/jobs", list_jobs),
    ("POST", "/api/jobs", create_job),
    ("GET", "/api/jobs/{id}", retrieve_job),
    ("PATCH", "/api/jobs/{id}", update_job_handler),
    ("DELETE", "/api/jobs/{id}", delete_job),
]
