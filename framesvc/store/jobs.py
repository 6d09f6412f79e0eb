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
    search=("assignee", "project_name", "task_name"),
    pk=jobs.c.id,
)
