"""Task rows: create, read, change and delete tasks, and the per-task summaries lists need.

Everything here takes an open connection and leaves transactions to the caller, so a
handler can create a task and its labels atomically (``async with engine.begin()``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from framesvc.store.db import utcnow
from framesvc.store.jobs import job_status, media_type_expr
from framesvc.store.listing import ListFields
from framesvc.store.locks import lock_task
from framesvc.store.schema import data, images, jobs, related_files, tasks, users, videos

#: Which of a task's two storages; its id is derived from the task id (see storage_json).
STORAGE_SLOTS = ("source_storage", "target_storage")


@dataclass(frozen=True)
class NewTask:
    name: str
    owner_id: int | None
    assignee_id: int | None = None
    bug_tracker: str = ""
    overlap: int | None = None
    segment_size: int = 0
    subset: str = ""
    consensus_replicas: int = 0
    #: ``{"location": ..., "cloud_storage_id": ...}`` or None (CVAT: no storage object).
    source_storage: Mapping[str, Any] | None = None
    target_storage: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class JobSummary:
    count: int = 0
    completed: int = 0
    validation: int = 0
    has_ground_truth: bool = False


def storage_json(task_id: int, slot: str, spec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """CVAT's Storage object ``{id, location, cloud_storage_id}`` for one slot of a task.

    CVAT keeps storages in their own table; framesvc keeps them in the task row and
    gives them the stable ids ``2*task_id - 1`` (source) and ``2*task_id`` (target).
    """
    if spec is None:
        return None
    storage_id = 2 * task_id - (1 if slot == "source_storage" else 0)
    return {
        "id": storage_id,
        "location": spec.get("location") or "local",
        "cloud_storage_id": spec.get("cloud_storage_id"),
    }


async def insert_task(conn: AsyncConnection, new: NewTask) -> int:
    """Insert a task without media (mode "", no data) and return its id."""
    now = utcnow()
    task_id = (
        await conn.execute(
            tasks.insert().values(
                name=new.name,
                owner_id=new.owner_id,
                assignee_id=new.assignee_id,
                assignee_updated_date=now if new.assignee_id is not None else None,
                project_id=None,
                bug_tracker=new.bug_tracker,
                subset=new.subset,
                overlap=new.overlap,
                segment_size=new.segment_size,
                consensus_replicas=new.consensus_replicas,
                mode="",
                dimension="2d",
                status="annotation",
                created_date=now,
                updated_date=now,
            )
        )
    ).inserted_primary_key[0]
    storages = {
        slot: storage_json(task_id, slot, getattr(new, slot)) for slot in STORAGE_SLOTS
    }
    if any(storages.values()):
        await conn.execute(tasks.update().where(tasks.c.id == task_id).values(**storages))
    return int(task_id)


async def get_task(conn: AsyncConnection, task_id: int) -> sa.Row[Any] | None:
    return (await conn.execute(sa.select(tasks).where(tasks.c.id == task_id))).first()


async def update_task(
    conn: AsyncConnection, task_id: int, values: Mapping[str, Any], *, touch: bool = True
) -> None:
    """Write ``values`` into the task row; ``updated_date`` moves unless ``touch`` is False.

    Setting ``assignee_id`` to a different user also sets ``assignee_updated_date``.
    """
    changes = dict(values)
    now = utcnow()
    if "assignee_id" in changes:
        current = (
            await conn.execute(sa.select(tasks.c.assignee_id).where(tasks.c.id == task_id))
        ).scalar_one_or_none()
        if current != changes["assignee_id"]:
            changes["assignee_updated_date"] = now
        else:
            del changes["assignee_id"]
    if touch:
        changes["updated_date"] = now
    if changes:
        await conn.execute(tasks.update().where(tasks.c.id == task_id).values(**changes))


async def touch_task_jobs(conn: AsyncConnection, task_id: int) -> None:
    """After a label change CVAT moves ``updated_date`` of the task's jobs to the task's."""
    row = (
        await conn.execute(sa.select(tasks.c.updated_date).where(tasks.c.id == task_id))
    ).first()
    if row is None:
        return
    await conn.execute(
        jobs.update()
        .where(jobs.c.task_id == task_id, jobs.c.updated_date < row.updated_date)
        .values(updated_date=row.updated_date)
    )


async def delete_task(conn: AsyncConnection, task_id: int) -> bool:
    """Delete the task's rows: its labels, segments, jobs, uploads (cascade) and its data.

    The data row is referenced *from* the task (``ON DELETE SET NULL``), so it and its
    images, videos and context images are deleted explicitly.  Files on disk are the
    caller's business (they must not be removed inside a DB transaction).
    Returns False if there was no such task.  Takes the task's lock first
    (``store/locks.py``): annotation or label writes to the task may be running.
    """
    if not await lock_task(conn, task_id):
        return False
    data_id = (
        await conn.execute(sa.select(tasks.c.data_id).where(tasks.c.id == task_id))
    ).first()
    if data_id is None:
        return False
    # Jobs reference their parent jobs and segments; delete children first so the
    # cascade does not depend on the backend's ordering of cascaded deletes.
    await conn.execute(
        jobs.delete().where(jobs.c.task_id == task_id, jobs.c.parent_job_id.is_not(None))
    )
    await conn.execute(tasks.delete().where(tasks.c.id == task_id))
    if data_id[0] is not None:
        still_used = (
            await conn.execute(sa.select(tasks.c.id).where(tasks.c.data_id == data_id[0]))
        ).first()
        if still_used is None:
            for table in (related_files, images, videos):
                await conn.execute(table.delete().where(table.c.data_id == data_id[0]))
            await conn.execute(data.delete().where(data.c.id == data_id[0]))
    return True


_COMPLETED = sa.and_(jobs.c.stage == "acceptance", jobs.c.state == "completed")
_VALIDATION = sa.and_(jobs.c.stage != "annotation", sa.not_(_COMPLETED))


async def job_summaries(
    conn: AsyncConnection, task_ids: Iterable[int]
) -> dict[int, JobSummary]:
    """Job counts per task: all jobs, completed ones, ones in validation; GT presence."""
    wanted = sorted(set(task_ids))
    out = {i: JobSummary() for i in wanted}
    if not wanted:
        return out
    rows = await conn.execute(
        sa.select(
            jobs.c.task_id,
            sa.func.count(),
            sa.func.sum(sa.case((_COMPLETED, 1), else_=0)),
            sa.func.sum(sa.case((_VALIDATION, 1), else_=0)),
            sa.func.sum(sa.case((jobs.c.type == "ground_truth", 1), else_=0)),
        )
        .where(jobs.c.task_id.in_(wanted))
        .group_by(jobs.c.task_id)
    )
    for task_id, count, completed, validation, gt in rows:
        out[task_id] = JobSummary(int(count), int(completed or 0), int(validation or 0),
                                  bool(gt))
    return out


async def refresh_task_status(conn: AsyncConnection, task_id: int) -> str:
    """Recompute a task's status from its jobs, as CVAT does after every job save.

    "annotation" if any job is in annotation, else "validation" if any is in validation,
    else "completed" (a task without jobs stays "annotation").
    """
    rows = (
        await conn.execute(
            sa.select(jobs.c.stage, jobs.c.state).where(jobs.c.task_id == task_id)
        )
    ).all()
    statuses = {job_status(r.stage, r.state) for r in rows}
    if not statuses or "annotation" in statuses:
        status = "annotation"
    elif "validation" in statuses:
        status = "validation"
    else:
        status = "completed"
    await conn.execute(tasks.update().where(tasks.c.id == task_id).values(status=status))
    return status


# Listing --------------------------------------------------------------------------------


def _username(column: sa.ColumnElement[Any]) -> sa.ScalarSelect[Any]:
    return sa.select(users.c.username).where(users.c.id == column).scalar_subquery()


def _data_column(column: sa.Column[Any]) -> sa.ScalarSelect[Any]:
    return sa.select(column).where(data.c.id == tasks.c.data_id).scalar_subquery()


_GT_EXISTS = (
    sa.select(jobs.c.id)
    .where(jobs.c.task_id == tasks.c.id, jobs.c.type == "ground_truth")
    .exists()
)

TASK_FIELDS = ListFields(
    columns={
        "id": tasks.c.id,
        "name": tasks.c.name,
        "owner": _username(tasks.c.owner_id),
        "assignee": _username(tasks.c.assignee_id),
        "status": tasks.c.status,
        "mode": tasks.c.mode,
        "dimension": tasks.c.dimension,
        "subset": tasks.c.subset,
        "project_id": tasks.c.project_id,
        "project_name": sa.cast(sa.null(), sa.String),
        "tracker_link": tasks.c.bug_tracker,
        "updated_date": tasks.c.updated_date,
        "created_date": tasks.c.created_date,
        "media_type": media_type_expr(_data_column(data.c.media_type)),
        "validation_mode": sa.case((_GT_EXISTS, "gt"), else_=sa.null()),
    },
    sortable=(
        "assignee", "created_date", "dimension", "id", "media_type", "mode", "name", "owner",
        "project_id", "project_name", "status", "subset", "tracker_link", "updated_date",
        "validation_mode",
    ),
    simple=(
        "assignee", "dimension", "media_type", "mode", "name", "owner", "project_id",
        "project_name", "status", "subset", "tracker_link", "validation_mode", "id",
    ),
    search=("assignee", "name", "owner", "project_name", "subset", "tracker_link"),
    pk=tasks.c.id,
)
