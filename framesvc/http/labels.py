"""``/api/labels``: the labels of a task or job (the SDK needs their ids), and label input parsing.

``GET /api/labels?task_id=N`` / ``?job_id=N`` is what ``task.get_labels()`` and
``job.get_labels()`` call (with ``org=``, ignored).  A job's assignee may list the labels
of the job even though the task itself is invisible to them, as in CVAT.  Lists show
top-level labels only; a skeleton's sublabels are nested in it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from marshmallow import fields

from framesvc.access import MAX_ID, get_job_for, get_task_for, visible_tasks
from framesvc.app import services
from framesvc.http.context import current_user
from framesvc.http.errors import ApiError, bad_request, json_response, not_found
from framesvc.http.pagination import list_params_applied, paginate
from framesvc.http.routing import int_param
from framesvc.http.serializers import (
    Fields,
    Invalid,
    bool_field,
    char_field,
    choice_field,
    int_field,
    list_field,
    nested_list,
    read_json,
    serialize_labels,
)
from framesvc.openapi import models
from framesvc.openapi.operations import (
    cvat_json,
    errors,
    list_query,
    no_body,
    operation,
    paginated,
)
from framesvc.store.labels import (
    INPUT_TYPES,
    LABEL_TYPES,
    AttributeInput,
    LabelError,
    LabelInput,
    LabelNotFound,
    get_label,
    remove_label,
    update_labels,
)
from framesvc.store.listing import ListFields
from framesvc.store.schema import jobs, labels, tasks
from framesvc.store.tasks import touch_task_jobs, update_task
from framesvc.store.users import User

# Input ------------------------------------------------------------------------------------


def _values(value: Any) -> list[str]:
    """A list of strings; DRF reports a bad item under its index."""
    out: list[str] = []
    errors: dict[str, Any] = {}
    for index, item in enumerate(list_field(value)):
        try:
            out.append(char_field(item, max_length=200, allow_blank=True) or "")
        except Invalid as exc:
            errors[str(index)] = exc.detail
    if errors:
        raise Invalid(errors)
    return out


def parse_attribute(payload: Any, *, creating: bool) -> AttributeInput:
    f = Fields(payload)
    attr = AttributeInput(
        id=f.get("id", lambda v: int_field(v)),
        name=f.get("name", lambda v: char_field(v, max_length=64), required=creating),
        mutable=f.get("mutable", bool_field, required=creating),
        input_type=f.get("input_type", lambda v: choice_field(v, INPUT_TYPES),
                         required=creating),
        default_value=f.get("default_value",
                            lambda v: char_field(v, max_length=128, allow_blank=True)),
        values=f.get("values", _values, required=creating),
        deleted=bool(f.get("deleted", bool_field, default=False)),
    )
    f.check()
    return attr


def parse_label(payload: Any, *, creating: bool, sublabel: bool = False) -> LabelInput:
    """One label of a TaskWriteRequest / PatchedLabelRequest.

    ``creating`` (POST /api/tasks) requires what a new label needs; in a PATCH a label
    with an ``id`` changes only the given fields, and one without an id is new.
    """
    f = Fields(payload)
    label_id = f.get("id", lambda v: int_field(v))
    new = creating or label_id is None
    label = LabelInput(
        id=None if creating else label_id,
        name=f.get("name", lambda v: char_field(v, max_length=64), required=new),
        color=f.get("color", lambda v: char_field(v, max_length=8, allow_blank=True)),
        type=f.get("type", lambda v: choice_field(v, LABEL_TYPES)),
        svg=f.get("svg", lambda v: char_field(v, allow_blank=True)),
        attributes=f.get(
            "attributes",
            lambda v: nested_list(v, lambda a: parse_attribute(a, creating=new)),
            default=[],
        ),
        deleted=bool(f.get("deleted", bool_field, default=False)) if not sublabel else False,
    )
    if not sublabel:
        label.sublabels = f.get(
            "sublabels",
            lambda v: nested_list(v, lambda s: parse_label(s, creating=True, sublabel=True)),
            default=[],
        )
    f.check()
    if label.deleted and label.id is None and not creating:
        raise Invalid({"non_field_errors": ["Deleted label must have an ID"]})
    return label


def parse_labels(value: Any, *, creating: bool) -> list[LabelInput]:
    return nested_list(value, lambda item: parse_label(item, creating=creating))


def label_store_error(exc: Exception) -> ApiError:
    """CVAT's answers to store-level label errors: 404 for foreign ids, else 400."""
    if isinstance(exc, LabelNotFound):
        return not_found(str(exc))
    return bad_request(str(exc))


# Listing ----------------------------------------------------------------------------------

_parents = labels.alias("parent_labels")

LABEL_FIELDS = ListFields(
    columns={
        "id": labels.c.id,
        "name": labels.c.name,
        "color": labels.c.color,
        "type": labels.c.type,
        "parent_id": labels.c.parent_id,
        "parent": sa.select(_parents.c.name)
        .where(_parents.c.id == labels.c.parent_id)
        .scalar_subquery(),
    },
    sortable=("color", "id", "name", "parent", "parent_id", "type"),
    simple=("color", "name", "parent", "parent_id", "type"),
    search=("name", "parent"),
    pk=labels.c.id,
    default_sort="id",
)


def visible_labels(user: User) -> sa.ColumnElement[bool]:
    """Labels of visible tasks, and of tasks where the user is assigned a job."""
    if user.is_superuser:
        return sa.true()
    seen_tasks = sa.select(tasks.c.id).where(visible_tasks(user))
    assigned = sa.select(jobs.c.task_id).where(jobs.c.assignee_id == user.id)
    return sa.or_(labels.c.task_id.in_(seen_tasks), labels.c.task_id.in_(assigned))


def _int_query(params: Mapping[str, str], name: str) -> int | None:
    if name not in params:
        return None
    try:
        return int_field(params[name])
    except Invalid as exc:
        raise ApiError(400, {name: exc.detail}) from exc


@operation(
    "labels_list",
    "List labels",
    query=list_query("LabelsListQuery", LABEL_FIELDS, task_id=fields.Integer(),
                     job_id=fields.Integer(), project_id=fields.Integer()),
    responses={200: cvat_json(paginated(models.Label)), **errors(400, 404)},
)
async def list_labels(request: web.Request) -> web.Response:
    user = current_user(request)
    params = request.query
    task_id = _int_query(params, "task_id")
    job_id = _int_query(params, "job_id")
    project_id = _int_query(params, "project_id")
    if sum(v is not None for v in (task_id, job_id, project_id)) > 1:
        raise bad_request("job_id, task_id and project_id parameters cannot be used together")
    if project_id is not None:
        raise not_found()  # framesvc has no projects
    async with services(request).engine.connect() as conn:
        query = sa.select(labels)
        if job_id is not None:
            job = await get_job_for(conn, user, job_id)
            query = query.where(labels.c.task_id == job.task_id)
        elif task_id is not None:
            await get_task_for(conn, user, task_id)
            query = query.where(labels.c.task_id == task_id)
        else:
            query = query.where(visible_labels(user))
        if "parent" not in params and "parent_id" not in params:
            query = query.where(labels.c.parent_id.is_(None))
        query = list_params_applied(query, LABEL_FIELDS, params)

        async def serialize(rows: Any) -> list[dict[str, Any]]:
            return await serialize_labels(conn, rows)

        return json_response(await paginate(request, conn, query, serialize))


# One label --------------------------------------------------------------------------------


async def _label_for(conn: Any, user: User, label_id: int, *, write: bool) -> Any:
    row = await get_label(conn, label_id) if 0 < label_id <= MAX_ID else None
    if row is None:
        raise not_found()
    assigned = (
        await conn.execute(
            sa.select(jobs.c.id).where(jobs.c.task_id == row.task_id,
                                       jobs.c.assignee_id == user.id).limit(1)
        )
    ).first()
    if assigned is not None and not write:
        return row
    # Anything else is decided by the task: 404 if invisible, 403 if read-only.
    await get_task_for(conn, user, row.task_id, write=write)
    return row


@operation("labels_retrieve", "Get label details",
           responses={200: cvat_json(models.Label), **errors(404)})
async def retrieve_label(request: web.Request) -> web.Response:
    user = current_user(request)
    async with services(request).engine.connect() as conn:
        row = await _label_for(conn, user, int_param(request), write=False)
        return json_response((await serialize_labels(conn, [row]))[0])


@operation("labels_partial_update", "Update a label", body=models.PatchedLabelRequest,
           responses={200: cvat_json(models.Label), **errors(400, 403, 404)})
async def update_label(request: web.Request) -> web.Response:
    """PATCH one label through the task's label rules (CVAT reuses the task serializer)."""
    user = current_user(request)
    payload = await read_json(request)
    try:
        spec = parse_label(payload, creating=False)
    except Invalid as exc:
        raise ApiError(400, exc.detail) from exc
    if spec.deleted:
        raise bad_request("Labels cannot be deleted by updating in this endpoint. "
                          "Please use the DELETE method instead.")
    label_id = int_param(request)
    async with services(request).engine.begin() as conn:
        row = await _label_for(conn, user, label_id, write=True)
        spec.id = row.id
        try:
            await update_labels(conn, row.task_id, [spec])
        except (LabelError, LabelNotFound) as exc:
            raise label_store_error(exc) from exc
        await update_task(conn, row.task_id, {})
        await touch_task_jobs(conn, row.task_id)
        fresh = await get_label(conn, label_id)
        return json_response((await serialize_labels(conn, [fresh]))[0])


@operation("labels_destroy", "Delete a label",
           responses={204: no_body("The label has been deleted"), **errors(403, 404)})
async def delete_label(request: web.Request) -> web.Response:
    user = current_user(request)
    label_id = int_param(request)
    async with services(request).engine.begin() as conn:
        row = await _label_for(conn, user, label_id, write=True)
        await remove_label(conn, row.task_id, row.id)
        await update_task(conn, row.task_id, {})
        await touch_task_jobs(conn, row.task_id)
    return web.Response(status=204)


routes = [
    ("GET", "/api/labels", list_labels),
    ("GET", "/api/labels/{id}", retrieve_label),
    ("PATCH", "/api/labels/{id}", update_label),
    ("DELETE", "/api/labels/{id}", delete_label),
]
