"""``/api/tasks``: create, list, read, change and delete tasks (CVAT's TaskViewSet minus media).

Validation follows ``TaskWriteSerializer``: the same fields, limits and messages, with
``overlap``, ``segment_size`` and ``consensus_replicas`` write-once (silently ignored by
PATCH).  framesvc has no projects or organizations, so a non-null ``project_id`` or
``organization_id`` is answered with the 400 CVAT gives for a missing one.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from framesvc.access import get_task_for, visible_tasks
from framesvc.app import services
from framesvc.http.context import current_user
from framesvc.http.errors import ApiError, bad_request, field_errors, json_response
from framesvc.http.labels import label_store_error, parse_labels
from framesvc.http.pagination import list_params_applied, paginate
from framesvc.http.routing import int_param
from framesvc.http.serializers import (
    Fields,
    Invalid,
    char_field,
    choice_field,
    int_field,
    read_json,
    serialize_task,
    serialize_tasks,
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
from framesvc.store.labels import LabelError, LabelNotFound, create_labels, update_labels
from framesvc.store.schema import tasks
from framesvc.store.tasks import (
    STORAGE_SLOTS,
    TASK_FIELDS,
    NewTask,
    delete_task,
    insert_task,
    storage_json,
    touch_task_jobs,
    update_task,
)
from framesvc.store.users import get_user

INT32_MAX = 2**31 - 1
#: settings.MAX_CONSENSUS_REPLICAS in CVAT.
MAX_CONSENSUS_REPLICAS = 11

# Field parsers ----------------------------------------------------------------------------


def _storage(value: Any) -> dict[str, Any]:
    """StorageRequest ``{location, cloud_storage_id}``; framesvc has no cloud storages."""
    f = Fields(value)
    location = f.get("location", lambda v: choice_field(v, ("cloud_storage", "local")))
    cloud_id = f.get("cloud_storage_id", lambda v: int_field(v, allow_null=True))
    f.check()
    if cloud_id:
        if location and location != "cloud_storage":
            raise Invalid({"non_field_errors": [
                f"It is not allowed to specify '{location}' location together with "
                "cloud storage id"]})
        if not location:
            raise Invalid({"non_field_errors": [
                "The configuration is not full, the location=cloud_storage is missing"]})
        raise Invalid({"non_field_errors": [
            f"The specified cloud storage {cloud_id} does not exist."]})
    if location == "cloud_storage":
        raise Invalid({"non_field_errors": [
            "Cloud storage was selected as location but its id was not specified"]})
    return {"location": location or "local", "cloud_storage_id": None}


def _consensus_replicas(value: Any) -> int:
    number = int_field(value, min_value=0) or 0
    if number == 1 or number > MAX_CONSENSUS_REPLICAS:
        raise Invalid([
            "Consensus replicas must be 0 or a positive number more than 1 and less than "
            f"{MAX_CONSENSUS_REPLICAS + 1}, got {number}"
        ])
    return number


def _common_fields(f: Fields, *, creating: bool) -> dict[str, Any]:
    """Fields TaskWriteRequest and PatchedTaskWriteRequest share; only those present."""
    parsers: dict[str, Any] = {
        "name": lambda v: char_field(v, max_length=256),
        "project_id": lambda v: int_field(v, allow_null=True),
        "owner_id": lambda v: int_field(v, allow_null=True),
        "assignee_id": lambda v: int_field(v, allow_null=True),
        "bug_tracker": lambda v: char_field(v, max_length=2000, allow_blank=True),
        "subset": lambda v: char_field(v, max_length=64, allow_blank=True),
        "labels": lambda v: parse_labels(v, creating=creating),
        "source_storage": _storage,
        "target_storage": _storage,
    }
    out: dict[str, Any] = {}
    for name, parse in parsers.items():
        required = creating and name == "name"
        if name in f or required:
            value = f.get(name, parse, required=required)
            if name in f and name not in f.errors:
                out[name] = value
    return out


async def _check_users(conn: AsyncConnection, values: dict[str, Any]) -> None:
    errors: dict[str, str] = {}
    for key in ("owner_id", "assignee_id"):
        user_id = values.get(key)
        if user_id is not None and await get_user(conn, user_id) is None:
            errors[key] = f"The specified user #{user_id} does not exist."
    if errors:
        raise field_errors(dict(errors))


def _invalid(exc: Invalid) -> ApiError:
    return ApiError(400, exc.detail)


# Handlers ---------------------------------------------------------------------------------


@operation("tasks_create", "Create a task", body=models.TaskWriteRequest,
           responses={201: cvat_json(models.TaskRead), **errors(400)})
async def create_task(request: web.Request) -> web.Response:
    user = current_user(request)
    payload = await read_json(request)
    try:
        f = Fields(payload)
        values = _common_fields(f, creating=True)
        overlap = f.get("overlap", lambda v: int_field(v, min_value=0, max_value=INT32_MAX,
                                                       allow_null=True))
        segment_size = f.get("segment_size",
                             lambda v: int_field(v, min_value=0, max_value=INT32_MAX),
                             default=0)
        replicas = f.get("consensus_replicas", _consensus_replicas, default=None)
        if replicas is None:
            replicas = f.get("initial_replicas", _consensus_replicas, default=0)
        f.check()
    except Invalid as exc:
        raise _invalid(exc) from exc

    project_id = values.get("project_id")
    if project_id is not None:
        if values.get("labels"):
            raise bad_request("Task must have only one of Label set or project_id")
        raise bad_request(f"The specified project #{project_id} does not exist.")

    async with services(request).engine.begin() as conn:
        await _check_users(conn, values)
        task_id = await insert_task(
            conn,
            NewTask(
                name=values["name"],
                owner_id=values.get("owner_id") or user.id,
                assignee_id=values.get("assignee_id"),
                bug_tracker=values.get("bug_tracker") or "",
                overlap=overlap,
                segment_size=segment_size or 0,
                subset=values.get("subset") or "",
                consensus_replicas=replicas or 0,
                source_storage=values.get("source_storage"),
                target_storage=values.get("target_storage"),
            ),
        )
        try:
            await create_labels(conn, task_id, values.get("labels") or [])
        except (LabelError, LabelNotFound) as exc:
            raise label_store_error(exc) from exc
        body = await serialize_task(request, conn, task_id)
    return json_response(body, status=201, headers={"Location": body["url"]})


@operation("tasks_list", "List tasks", query=list_query("TasksListQuery", TASK_FIELDS),
           responses={200: cvat_json(paginated(models.TaskRead)), **errors(400, 404)})
async def list_tasks(request: web.Request) -> web.Response:
    user = current_user(request)
    query = sa.select(tasks).where(visible_tasks(user))
    query = list_params_applied(query, TASK_FIELDS, request.query)
    async with services(request).engine.connect() as conn:

        async def serialize(rows: Any) -> list[dict[str, Any]]:
            return await serialize_tasks(request, conn, rows)

        return json_response(await paginate(request, conn, query, serialize))


@operation("tasks_retrieve", "Get task details",
           responses={200: cvat_json(models.TaskRead), **errors(404)})
async def retrieve_task(request: web.Request) -> web.Response:
    user = current_user(request)
    async with services(request).engine.connect() as conn:
        row = await get_task_for(conn, user, int_param(request))
        return json_response((await serialize_tasks(request, conn, [row]))[0])


#: PATCH fields that only the owner (or a superuser) may change, as in CVAT's rules.
_MANAGE_FIELDS = ("owner_id", "assignee_id", "project_id", "organization_id",
                  "source_storage", "target_storage")


@operation("tasks_partial_update", "Update a task", body=models.PatchedTaskWriteRequest,
           responses={200: cvat_json(models.TaskRead), **errors(400, 403, 404)})
async def update_task_handler(request: web.Request) -> web.Response:
    user = current_user(request)
    task_id = int_param(request)
    payload = await read_json(request)
    try:
        f = Fields(payload)
        values = _common_fields(f, creating=False)
        organization_id = f.get("organization_id", lambda v: int_field(v, allow_null=True))
        f.check()
    except Invalid as exc:
        raise _invalid(exc) from exc

    async with services(request).engine.begin() as conn:
        manage = any(k in values for k in _MANAGE_FIELDS) or organization_id is not None
        await get_task_for(conn, user, task_id, write=True, manage=manage)
        if organization_id is not None:
            raise bad_request("Invalid organization id")
        if values.get("project_id") is not None:
            raise bad_request(f"Cannot find project with ID {values['project_id']}")
        await _check_users(conn, values)
        await _apply_patch(conn, task_id, values)
        body = await serialize_task(request, conn, task_id)
    return json_response(body)


async def _apply_patch(conn: AsyncConnection, task_id: int, values: dict[str, Any]) -> None:
    changes = {
        key: values[key]
        for key in ("name", "bug_tracker", "subset", "owner_id", "assignee_id")
        if key in values
    }
    row = (await conn.execute(sa.select(tasks).where(tasks.c.id == task_id))).one()
    for slot in STORAGE_SLOTS:
        if slot in values:
            changes[slot] = storage_json(task_id, slot, values[slot])
    labels = values.get("labels") or []
    if labels:
        try:
            await update_labels(conn, task_id, labels)
        except (LabelError, LabelNotFound) as exc:
            raise label_store_error(exc) from exc
    changed = {k: v for k, v in changes.items() if getattr(row, k) != v}
    if changed or labels:
        await update_task(conn, task_id, changed)
    if labels:
        await touch_task_jobs(conn, task_id)


def _remove_dirs(paths: list[Path]) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


@operation("tasks_destroy", "Delete a task",
           responses={204: no_body("The task has been deleted"), **errors(403, 404)})
async def delete_task_handler(request: web.Request) -> web.Response:
    user = current_user(request)
    task_id = int_param(request)
    svc = services(request)
    async with svc.engine.begin() as conn:
        await get_task_for(conn, user, task_id, manage=True)
        await delete_task(conn, task_id)
    settings = svc.settings
    await svc.pool.run(
        _remove_dirs, [settings.media_root / str(task_id), settings.upload_root / str(task_id)]
    )
    return web.Response(status=204)


routes = [
    ("POST", "/api/tasks", create_task),
    ("GET", "/api/tasks", list_tasks),
    ("GET", "/api/tasks/{id}", retrieve_task),
    ("PATCH", "/api/tasks/{id}", update_task_handler),
    ("DELETE", "/api/tasks/{id}", delete_task_handler),
]
