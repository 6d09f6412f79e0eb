"""JSON shapes of tasks, jobs and labels exactly as CVAT 2.80 sends them (TaskRead, JobRead, Label).

Each builder takes a whole page of rows and loads what they refer to (users, data,
segments, job counts) in one query per kind, so a list page costs a constant number
of queries.  Field names, order and JSON types follow CVAT's serializers; where CVAT
omits a key framesvc sends a value of the right type instead, because the SDK raises
``ApiAttributeError`` when code reads a key the server did not send:

* a task without data: CVAT omits ``size``, ``image_quality``, ``data``,
  ``data_chunk_size`` and the chunk types; framesvc sends ``size: 0``,
  ``image_quality: 0``, ``media_type: ""`` and nulls for the nullable ones.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from framesvc.access import can_view_task
from framesvc.http.context import absolute_url, basic_user, iso
from framesvc.http.errors import ApiError
from framesvc.http.security import loads_json
from framesvc.store.jobs import (
    job_status,
    public_media_type,
    replica_counts,
    rows_by_id,
    segment_frame_count,
)
from framesvc.store.labels import sublabels_of
from framesvc.store.schema import data, segments, tasks
from framesvc.store.tasks import JobSummary, job_summaries
from framesvc.store.users import User, get_users


def _list_url(request: web.Request, resource: str, key: str, value: int) -> str:
    return absolute_url(request, f"/api/{resource}?{key}={value}")


# Tasks ----------------------------------------------------------------------------------


def task_read(
    request: web.Request,
    task: Any,
    *,
    users: dict[int, User],
    data_row: Any | None,
    summary: JobSummary,
) -> dict[str, Any]:
    """One TaskRead from a ``tasks`` row and what it refers to."""
    has_data = data_row is not None
    return {
        "url": absolute_url(request, f"/api/tasks/{task.id}"),
        "id": task.id,
        "name": task.name,
        "project_id": task.project_id,
        "project_name": None,
        "mode": task.mode,
        "owner": basic_user(request, users.get(task.owner_id)),
        "assignee": basic_user(request, users.get(task.assignee_id)),
        "bug_tracker": task.bug_tracker,
        "created_date": iso(task.created_date),
        "updated_date": iso(task.updated_date),
        "overlap": task.overlap,
        "segment_size": task.segment_size,
        "status": task.status,
        "data_chunk_size": data_row.chunk_size if has_data else None,
        "data_original_chunk_type": data_row.original_chunk_type if has_data else None,
        "data_compressed_chunk_type": data_row.compressed_chunk_type if has_data else None,
        "data_cloud_storage_id": None,
        "guide_id": task.guide_id,
        "size": data_row.size if has_data else 0,
        "image_quality": data_row.image_quality if has_data else 0,
        "data": data_row.id if has_data else None,
        "dimension": task.dimension,
        "media_type": public_media_type(data_row.media_type) if has_data else "",
        "subset": task.subset,
        "organization_id": None,
        "organization": None,
        "target_storage": task.target_storage,
        "source_storage": task.source_storage,
        "jobs": {
            "count": summary.count,
            "completed": summary.completed,
            "validation": summary.validation,
            "url": _list_url(request, "jobs", "task_id", task.id),
        },
        "labels": {"url": _list_url(request, "labels", "task_id", task.id)},
        "assignee_updated_date": iso(task.assignee_updated_date),
        "validation_mode": "gt" if summary.has_ground_truth else None,
        "consensus_enabled": task.consensus_replicas > 0,
        "initial_replicas": task.consensus_replicas,
    }


async def serialize_tasks(
    request: web.Request, conn: AsyncConnection, rows: Sequence[Any]
) -> list[dict[str, Any]]:
    """TaskRead for each ``tasks`` row, in order."""
    users = await get_users(conn, [u for r in rows for u in (r.owner_id, r.assignee_id)])
    data_rows = await rows_by_id(conn, data, (r.data_id for r in rows))
    summaries = await job_summaries(conn, (r.id for r in rows))
    return [
        task_read(
            request,
            row,
            users=users,
            data_row=data_rows.get(row.data_id) if row.data_id is not None else None,
            summary=summaries[row.id],
        )
        for row in rows
    ]


async def serialize_task(
    request: web.Request, conn: AsyncConnection, task_id: int
) -> dict[str, Any]:
    row = (await conn.execute(sa.select(tasks).where(tasks.c.id == task_id))).one()
    return (await serialize_tasks(request, conn, [row]))[0]


# Jobs -----------------------------------------------------------------------------------


def job_read(
    request: web.Request,
    job: Any,
    *,
    task: Any,
    segment: Any,
    data_row: Any | None,
    assignee: User | None,
    replicas: int,
    task_visible: bool,
) -> dict[str, Any]:
    """One JobRead.  ``task_visible`` hides the task's name and storages, as CVAT does."""
    has_data = data_row is not None
    compressed = data_row.compressed_chunk_type if has_data else None
    if segment.type == "specific_frames":
        compressed = "imageset"
    return {
        "url": absolute_url(request, f"/api/jobs/{job.id}"),
        "id": job.id,
        "task_id": job.task_id,
        "task_name": task.name if task_visible else None,
        "project_id": task.project_id,
        "project_name": None,
        "assignee": basic_user(request, assignee),
        "guide_id": task.guide_id,
        "dimension": task.dimension,
        "mode": task.mode,
        "media_type": public_media_type(data_row.media_type) if has_data else "image",
        "bug_tracker": task.bug_tracker or None,
        "status": job_status(job.stage, job.state),
        "stage": job.stage,
        "state": job.state,
        "frame_count": segment_frame_count(segment, data_row),
        "start_frame": segment.start_frame,
        "stop_frame": segment.stop_frame,
        "data_chunk_size": data_row.chunk_size if has_data else None,
        "data_compressed_chunk_type": compressed,
        "data_original_chunk_type": data_row.original_chunk_type if has_data else None,
        "created_date": iso(job.created_date),
        "updated_date": iso(job.updated_date),
        "issues": {"url": _list_url(request, "issues", "job_id", job.id), "count": 0},
        "labels": {"url": _list_url(request, "labels", "job_id", job.id)},
        "type": job.type,
        "organization": None,
        "target_storage": task.target_storage if task_visible else None,
        "source_storage": task.source_storage if task_visible else None,
        "assignee_updated_date": iso(job.assignee_updated_date),
        "parent_job_id": job.parent_job_id,
        "replicas_count": replicas,
        "consensus_replicas": task.consensus_replicas if job.type == "annotation" else 0,
    }


async def serialize_jobs(
    request: web.Request, conn: AsyncConnection, user: User, rows: Sequence[Any]
) -> list[dict[str, Any]]:
    """JobRead for each ``jobs`` row, in order, as seen by ``user``."""
    task_rows = await rows_by_id(conn, tasks, (r.task_id for r in rows))
    segment_rows = await rows_by_id(conn, segments, (r.segment_id for r in rows))
    data_rows = await rows_by_id(conn, data, (t.data_id for t in task_rows.values()))
    users = await get_users(conn, (r.assignee_id for r in rows))
    replicas = await replica_counts(conn, (r.id for r in rows))
    out = []
    for row in rows:
        task = task_rows[row.task_id]
        out.append(
            job_read(
                request,
                row,
                task=task,
                segment=segment_rows[row.segment_id],
                data_row=data_rows.get(task.data_id) if task.data_id is not None else None,
                assignee=users.get(row.assignee_id) if row.assignee_id is not None else None,
                replicas=replicas[row.id],
                task_visible=can_view_task(user, task),
            )
        )
    return out


# Labels ---------------------------------------------------------------------------------


def _attributes(raw: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": a["id"],
            "name": a["name"],
            "mutable": bool(a.get("mutable", False)),
            "input_type": a["input_type"],
            "default_value": a.get("default_value", ""),
            "values": list(a.get("values", [])),
        }
        for a in (raw or [])
    ]


def sublabel_read(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "color": row.color,
        "attributes": _attributes(row.attributes),
        "type": row.type,
        "has_parent": row.parent_id is not None,
    }


def label_read(row: Any, sublabels: Sequence[Any]) -> dict[str, Any]:
    """One Label; like CVAT, ``project_id`` is left out for task labels."""
    return {
        "id": row.id,
        "name": row.name,
        "color": row.color,
        "attributes": _attributes(row.attributes),
        "type": row.type,
        "svg": row.svg,
        "sublabels": [sublabel_read(s) for s in sublabels],
        "task_id": row.task_id,
        "parent_id": row.parent_id,
        "has_parent": row.parent_id is not None,
    }


async def serialize_labels(conn: AsyncConnection, rows: Sequence[Any]) -> list[dict[str, Any]]:
    subs = await sublabels_of(conn, (r.id for r in rows))
    return [label_read(row, subs.get(row.id, [])) for row in rows]


# Request validation ---------------------------------------------------------------------
#
# DRF's field semantics and messages, so that 400 bodies read like CVAT's:
# ``{"field": ["This field is required."]}``, nested lists for list fields.

REQUIRED = "This field is required."
#: Largest integer a database id or count column holds (64-bit signed).
MAX_INT = 2**63 - 1
NOT_NULL = "This field may not be null."


class Invalid(Exception):
    """A field (or object) failed validation; ``detail`` is its DRF error value."""

    def __init__(self, detail: Any) -> None:
        super().__init__(detail)
        self.detail = detail


def expect_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        kind = {list: "list", str: "str", int: "int", float: "float", bool: "bool"}.get(
            type(value), "null" if value is None else type(value).__name__)
        raise Invalid({"non_field_errors": [
            f"Invalid data. Expected a dictionary, but got {kind}."]})
    return value


def char_field(
    value: Any,
    *,
    max_length: int | None = None,
    allow_blank: bool = False,
    allow_null: bool = False,
) -> str | None:
    if value is None:
        if allow_null:
            return None
        raise Invalid([NOT_NULL])
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise Invalid(["Not a valid string."])
    text = str(value).strip()
    if "\x00" in text:
        # DRF's ProhibitNullCharactersValidator; no database can hold such text anyway.
        raise Invalid(["Null characters are not allowed."])
    if not text and not allow_blank:
        raise Invalid(["This field may not be blank."])
    if max_length is not None and len(text) > max_length:
        raise Invalid([f"Ensure this field has no more than {max_length} characters."])
    return text


#: DRF's integer text, limited to ASCII digits and to lengths ``int()`` always accepts.
_INT_TEXT = re.compile(r"[+-]?[0-9]{1,30}")


def int_field(
    value: Any,
    *,
    min_value: int | None = None,
    max_value: int | None = None,
    allow_null: bool = False,
) -> int | None:
    if value is None:
        if allow_null:
            return None
        raise Invalid([NOT_NULL])
    number: int
    if isinstance(value, bool):
        raise Invalid(["A valid integer is required."])
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        raise Invalid(["A valid integer is required."])
    # Beyond 64 bits no row can match and the database driver would raise.
    min_value = max(min_value, -MAX_INT) if min_value is not None else -MAX_INT
    max_value = min(max_value, MAX_INT) if max_value is not None else MAX_INT
    if number < min_value:
        raise Invalid([f"Ensure this value is greater than or equal to {min_value}."])
    if number > max_value:
        raise Invalid([f"Ensure this value is less than or equal to {max_value}."])
    return number


_TRUE = {"t", "y", "yes", "true", "on", "1"}
_FALSE = {"f", "n", "no", "false", "off", "0"}


def bool_field(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        if value.strip().lower() in _TRUE:
            return True
        if value.strip().lower() in _FALSE:
            return False
    raise Invalid(["Must be a valid boolean."])


def choice_field(value: Any, choices: Sequence[str]) -> str:
    if value is None:
        raise Invalid([NOT_NULL])
    if not isinstance(value, str) or value not in choices:
        raise Invalid([f'"{value}" is not a valid choice.'])
    return value


def list_field(value: Any) -> list[Any]:
    if value is None:
        raise Invalid([NOT_NULL])
    if not isinstance(value, list):
        kind = type(value).__name__
        raise Invalid([f'Expected a list of items but got type "{kind}".'])
    return value


def nested_list(value: Any, parse: Any) -> list[Any]:
    """Parse each item of a list; errors come back per item (``{}`` for good ones)."""
    items = list_field(value)
    parsed: list[Any] = []
    errors: list[Any] = []
    failed = False
    for item in items:
        try:
            parsed.append(parse(item))
            errors.append({})
        except Invalid as exc:
            failed = True
            errors.append(exc.detail)
    if failed:
        raise Invalid(errors)
    return parsed


class Fields:
    """Collects per-field errors of one object, like a DRF serializer's ``errors``."""

    def __init__(self, payload: Any) -> None:
        self.payload = expect_object(payload)
        self.errors: dict[str, Any] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.payload

    def get(self, name: str, parse: Any, *, required: bool = False, default: Any = None) -> Any:
        if name not in self.payload:
            if required:
                self.errors[name] = [REQUIRED]
            return default
        try:
            return parse(self.payload[name])
        except Invalid as exc:
            self.errors[name] = exc.detail
            return default

    def check(self) -> None:
        if self.errors:
            raise Invalid(self.errors)


async def read_json(request: web.Request) -> Any:
    """The request body as JSON; DRF's 400 for a body that is not JSON."""
    try:
        return loads_json(await request.read())
    except ValueError as exc:  # includes UnicodeDecodeError, NaN and absurd nesting
        raise ApiError(400, {"detail": f"JSON parse error - {exc}"}) from exc
