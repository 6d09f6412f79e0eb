"""Segments and jobs: creating them for a task, and what job reads and lists need.

A segment is a task-relative frame range (or, for ground-truth jobs, a set of absolute
frames); every job points at one.  Consensus replica jobs share their parent's segment,
so they get the very same media (and media cache entries).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from framesvc.model.frames import FrameSpace, parse_frame_filter
from framesvc.model.segments import SegmentSpec, segment_frame_set
from framesvc.store import locks
from framesvc.store.db import utcnow
from framesvc.store.listing import ListFields
from framesvc.store.schema import data, jobs, segments, tasks, users


async def create_segments_and_jobs(
    conn: AsyncConnection,
    task_id: int,
    specs: Sequence[SegmentSpec],
    consensus_replicas: int = 0,
    *,
    job_type: str | None = None,
) -> list[int]:
    """One segment and one job per spec, plus ``consensus_replicas`` replicas of each job.

    The job type is ``job_type`` if given, else derived from the spec: "range" specs get
    an "annotation" job, "specific_frames" specs (CVAT uses them only for ground truth)
    a "ground_truth" job.  Only annotation jobs get replicas: ``consensus_replicas``
    jobs of type "consensus_replica" sharing the parent's segment, with
    ``parent_job_id`` set.  Returns the ids of all created jobs in creation order, each
    parent followed by its replicas, as CVAT creates them.
    """
    now = utcnow()
    created: list[int] = []
    for spec in specs:
        frames = list(spec.frames) if spec.frames is not None else None
        segment_id = (
            await conn.execute(
                segments.insert().values(
                    task_id=task_id,
                    start_frame=spec.start,
                    stop_frame=spec.stop,
                    type=spec.type,
                    frames=frames,
                    chunks_updated_date=now,
                )
            )
        ).inserted_primary_key[0]
        kind = job_type or ("ground_truth" if spec.type == "specific_frames" else "annotation")
        job_id = await _insert_job(conn, task_id, segment_id, kind, None, now)
        created.append(job_id)
        if kind == "annotation":
            for _ in range(consensus_replicas):
                created.append(
                    await _insert_job(conn, task_id, segment_id, "consensus_replica", job_id, now)
                )
    return created


async def _insert_job(
    conn: AsyncConnection,
    task_id: int,
    segment_id: int,
    job_type: str,
    parent_job_id: int | None,
    now: Any,
) -> int:
    result = await conn.execute(
        jobs.insert().values(
            segment_id=segment_id,
            task_id=task_id,
            type=job_type,
            parent_job_id=parent_job_id,
            stage="annotation",
            state="new",
            created_date=now,
            updated_date=now,
        )
    )
    return int(result.inserted_primary_key[0])


async def get_job(conn: AsyncConnection, job_id: int) -> sa.Row[Any] | None:
    return (await conn.execute(sa.select(jobs).where(jobs.c.id == job_id))).first()


#: CVAT's ``StageChoice`` and ``StateChoice``.
STAGES = ("annotation", "validation", "acceptance")
STATES = ("new", "in progress", "completed", "rejected")

_UNSET: Any = object()


async def update_job(
    conn: AsyncConnection,
    job: Any,
    *,
    stage: str | None = None,
    state: str | None = None,
    assignee_id: int | None = _UNSET,
) -> None:
    """Apply a job PATCH as ``JobWriteSerializer.update`` does.

    A stage that differs from the current one without an explicit state resets the
    state to "new"; status is not stored (it is derived, see :func:`job_status`).  A
    different assignee moves ``assignee_updated_date``; ``updated_date`` moves on every
    save, as Django's ``auto_now`` does.  ``job`` is the current ``jobs`` row.
    """
    now = utcnow()
    new_stage = stage if stage is not None else job.stage
    if state is not None:
        new_state = state
    elif new_stage != job.stage:
        new_state = "new"
    else:
        new_state = job.state
    changes: dict[str, Any] = {"stage": new_stage, "state": new_state, "updated_date": now}
    if assignee_id is not _UNSET and assignee_id != job.assignee_id:
        changes["assignee_id"] = assignee_id
        changes["assignee_updated_date"] = now
    await conn.execute(jobs.update().where(jobs.c.id == job.id).values(**changes))


# Ground truth ----------------------------------------------------------------------------


async def lock_task(conn: AsyncConnection, task_id: int) -> bool:
    """Take the task's write lock for the rest of the transaction (CVAT's
    ``select_for_update``) by moving its ``updated_date``; False if there is no task.

    This must be the transaction's first statement (see ``store/locks.py``), so two
    concurrent ground-truth creations for one task run one after the other and the
    second sees the first's job.
    """
    return await locks.lock_task(conn, task_id, touch=True)


async def ground_truth_count(conn: AsyncConnection, task_id: int) -> int:
    return int(
        (
            await conn.execute(
                sa.select(sa.func.count()).select_from(jobs).where(
                    jobs.c.task_id == task_id, jobs.c.type == "ground_truth"
                )
            )
        ).scalar_one()
    )


async def range_segments(conn: AsyncConnection, task_id: int) -> list[SegmentSpec]:
    """The task's annotation (range) segments in creation order, one per segment even
    when consensus replicas share it - what ``random_per_job`` walks."""
    rows = await conn.execute(
        sa.select(segments.c.start_frame, segments.c.stop_frame)
        .where(segments.c.task_id == task_id, segments.c.type == "range")
        .order_by(segments.c.id)
    )
    return [SegmentSpec.range(r.start_frame, r.stop_frame) for r in rows]


async def create_ground_truth_job(
    conn: AsyncConnection,
    task_id: int,
    size: int,
    abs_frames: Sequence[int],
    *,
    assignee_id: int | None = None,
    stage: str = "annotation",
    state: str = "new",
) -> int:
    """A ``specific_frames`` segment over ``[0, size - 1]`` holding ``abs_frames``
    (absolute, non-empty) and its ground-truth job; returns the job id.

    The segment is new, so its media cache keys are new too: nothing needs bumping.
    """
    spec = SegmentSpec.specific(size, abs_frames)
    now = utcnow()
    segment_id = (
        await conn.execute(
            segments.insert().values(
                task_id=task_id,
                start_frame=spec.start,
                stop_frame=spec.stop,
                type=spec.type,
                frames=list(spec.frames or ()),
                chunks_updated_date=now,
            )
        )
    ).inserted_primary_key[0]
    result = await conn.execute(
        jobs.insert().values(
            segment_id=segment_id,
            task_id=task_id,
            type="ground_truth",
            parent_job_id=None,
            assignee_id=assignee_id,
            assignee_updated_date=now if assignee_id is not None else None,
            stage=stage,
            state=state,
            created_date=now,
            updated_date=now,
        )
    )
    return int(result.inserted_primary_key[0])


async def delete_job_and_segment(conn: AsyncConnection, job: Any) -> None:
    """Delete a (ground-truth) job and its segment.

    The job's annotations go with it through their ``ON DELETE CASCADE`` to ``jobs``;
    the segment is deleted only if no other job still uses it.  Takes the task's lock
    first (``store/locks.py``): an annotation write to the job may be running.
    """
    await locks.lock_task(conn, job.task_id)
    await conn.execute(jobs.delete().where(jobs.c.id == job.id))
    still_used = (
        await conn.execute(sa.select(jobs.c.id).where(jobs.c.segment_id == job.segment_id)
                           .limit(1))
    ).first()
    if still_used is None:
        await conn.execute(segments.delete().where(segments.c.id == job.segment_id))


def job_status(stage: str, state: str) -> str:
    """CVAT's derived job status: annotation / completed / validation."""
    if stage == "annotation":
        return "annotation"
    if stage == "acceptance" and state == "completed":
        return "completed"
    return "validation"


# Frame counts ---------------------------------------------------------------------------


def segment_frame_count(segment: Any, data_row: Any | None) -> int:
    """Number of frames in a segment's frame set (CVAT's ``Segment.frame_count``).

    Computed by ``model.segments.segment_frame_set`` over the task's frame space; rows
    that do not describe a valid space or segment (which ingest never writes) fall back
    to the plain size of the range rather than failing the whole response.
    """
    frames = tuple(segment.frames) if segment.frames is not None else None
    try:
        spec = SegmentSpec(segment.type, segment.start_frame, segment.stop_frame,
                           frames if segment.type == "specific_frames" else None)
        if data_row is not None:
            space = FrameSpace(data_row.start_frame, data_row.stop_frame,
                               parse_frame_filter(data_row.frame_filter))
            return len(segment_frame_set(spec, space))
    except ValueError:
        pass
    if segment.type == "specific_frames" and frames:
        return len(set(frames))
    return max(0, segment.stop_frame - segment.start_frame + 1)


# Reads for serialization ----------------------------------------------------------------


async def rows_by_id(
    conn: AsyncConnection, table: sa.Table, ids: Iterable[int | None]
) -> dict[int, sa.Row[Any]]:
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    rows = await conn.execute(sa.select(table).where(table.c.id.in_(wanted)))
    return {r.id: r for r in rows}


async def replica_counts(conn: AsyncConnection, job_ids: Iterable[int]) -> dict[int, int]:
    """Number of child (consensus replica) jobs per job."""
    wanted = sorted(set(job_ids))
    if not wanted:
        return {}
    rows = await conn.execute(
        sa.select(jobs.c.parent_job_id, sa.func.count())
        .where(jobs.c.parent_job_id.in_(wanted))
        .group_by(jobs.c.parent_job_id)
    )
    counts = dict.fromkeys(wanted, 0)
    counts.update({r[0]: int(r[1]) for r in rows})
    return counts


# Listing --------------------------------------------------------------------------------


def media_type_expr(raw: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """SQL for :func:`public_media_type`."""
    return sa.case(
        (raw.is_(None), sa.null()),
        (raw.in_(("point_cloud", "audio")), raw),
        else_="image",
    )


def public_media_type(raw: str | None) -> str | None:
    """The media type clients see for a ``data.media_type`` value.

    CVAT's media types are "image", "point_cloud" and "audio": a video task's frames
    are images, so "video" (and anything else visual) reads as "image".
    """
    if raw is None:
        return None
    return raw if raw in ("point_cloud", "audio") else "image"


def _task_column(column: sa.Column[Any]) -> sa.ScalarSelect[Any]:
    return sa.select(column).where(tasks.c.id == jobs.c.task_id).scalar_subquery()


_JOB_MEDIA = (
    sa.select(data.c.media_type)
    .select_from(tasks.join(data, data.c.id == tasks.c.data_id))
    .where(tasks.c.id == jobs.c.task_id)
    .scalar_subquery()
)

JOB_FIELDS = ListFields(
    columns={
        "id": jobs.c.id,
        "task_id": jobs.c.task_id,
        "project_id": _task_column(tasks.c.project_id),
        "task_name": _task_column(tasks.c.name),
        "project_name": sa.cast(sa.null(), sa.String),
        "assignee": sa.select(users.c.username)
        .where(users.c.id == jobs.c.assignee_id)
        .scalar_subquery(),
        "state": jobs.c.state,
        "stage": jobs.c.stage,
        "type": jobs.c.type,
        "parent_job_id": jobs.c.parent_job_id,
        "updated_date": jobs.c.updated_date,
        "dimension": _task_column(tasks.c.dimension),
        "mode": _task_column(tasks.c.mode),
        "media_type": media_type_expr(_JOB_MEDIA),
    },
    sortable=(
        "assignee", "dimension", "id", "media_type", "mode", "parent_job_id", "project_id",
        "project_name", "stage", "state", "task_id", "task_name", "type", "updated_date",
    ),
    simple=(
        "assignee", "dimension", "media_type", "mode", "parent_job_id", "project_id",
        "project_name", "stage", "state", "task_id", "task_name", "type",
    ),
    # CVAT's JobViewSet.search_fields.
    search=("assignee", "project_name", "stage", "state", "task_name"),
    pk=jobs.c.id,
    # cvat-sdk 2.80 spells the replica job type "replica" (its JobType enum, which it
    # checks in ``jobs.list(type=...)``); CVAT's server and spec say "consensus_replica".
    aliases={"type": {"replica": "consensus_replica"}},
)
