"""Annotations in the database: load a job's LabeledData, write it, version it.

Rows mirror ``annotations.model``: one row per tag, shape (skeleton elements have
``parent_id``), track (element tracks have ``parent_id``), keyframe and attribute value,
each naming its job.  Deleting an object deletes its elements, keyframes and attribute
values by ``ON DELETE CASCADE``.

Writes run inside the caller's transaction.  :func:`lock_task` should be its first
statement (``store/locks.py``): on SQLite that statement takes the database's write lock,
so everything the write then reads (which ids exist, the current version) cannot change
under it; on PostgreSQL it locks the task's row, which serialises annotation writes of
one task (and orders them with label and job deletions).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from framesvc.annotations.merge import JobPart
from framesvc.annotations.model import (
    AttributeValue,
    LabeledData,
    Shape,
    Tag,
    Track,
    TrackedShape,
)
from framesvc.annotations.validate import LabelInfo, label_infos
from framesvc.model.frames import FrameSpace, parse_frame_filter
from framesvc.model.segments import SegmentSpec, segment_frame_set
from framesvc.store import locks
from framesvc.store.db import utcnow
from framesvc.store.schema import (
    annotation_attributes,
    data,
    job_annotation_versions,
    jobs,
    labeled_shapes,
    labeled_tags,
    labeled_tracks,
    labels,
    segments,
    tasks,
    tracked_shapes,
)

#: Top-level object tables by the kind names used in ``annotations.merge``.
TABLES: dict[str, sa.Table] = {
    "tag": labeled_tags,
    "shape": labeled_shapes,
    "track": labeled_tracks,
}
_CHUNK = 500


def _chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


# Context: labels and frames -------------------------------------------------------------


async def task_labels(conn: AsyncConnection, task_id: int) -> dict[int, LabelInfo]:
    """The task's labels (sublabels included) with their attribute specs."""
    rows = await conn.execute(
        sa.select(labels.c.id, labels.c.parent_id, labels.c.attributes)
        .where(labels.c.task_id == task_id)
    )
    return label_infos((r.id, r.parent_id, r.attributes) for r in rows)


def _space(data_row: Any) -> FrameSpace:
    return FrameSpace(data_row.start_frame, data_row.stop_frame,
                      parse_frame_filter(data_row.frame_filter))


def _part(job_id: int, segment: Any, space: FrameSpace) -> JobPart:
    frames = tuple(segment.frames) if segment.frames is not None else None
    spec = SegmentSpec(segment.type, segment.start_frame, segment.stop_frame,
                       frames if segment.type == "specific_frames" else None)
    relative = frozenset(space.to_rel(f) for f in segment_frame_set(spec, space))
    return JobPart(job_id, segment.start_frame, segment.stop_frame, relative)


async def job_parts(conn: AsyncConnection, task_id: int,
                    job_ids: Iterable[int] | None = None,
                    *, job_type: str | None = "annotation") -> list[JobPart]:
    """The task's jobs (of ``job_type``, or the given ones) with their relative frames."""
    data_row = (await conn.execute(
        sa.select(data).join(tasks, tasks.c.data_id == data.c.id).where(tasks.c.id == task_id)
    )).first()
    if data_row is None:
        return []
    space = _space(data_row)
    query = (
        sa.select(jobs.c.id, segments)
        .join(segments, segments.c.id == jobs.c.segment_id)
        .where(jobs.c.task_id == task_id)
        .order_by(segments.c.start_frame, jobs.c.id)
    )
    if job_ids is not None:
        query = query.where(jobs.c.id.in_(list(job_ids)))
    elif job_type is not None:
        query = query.where(jobs.c.type == job_type)
    return [_part(row[0], row, space) for row in await conn.execute(query)]


# Versions ---------------------------------------------------------------------------------


async def versions(conn: AsyncConnection, job_ids: Sequence[int]) -> dict[int, int]:
    out = dict.fromkeys(job_ids, 0)
    for chunk in _chunks(list(job_ids)):
        rows = await conn.execute(
            sa.select(job_annotation_versions.c.job_id, job_annotation_versions.c.version)
            .where(job_annotation_versions.c.job_id.in_(chunk))
        )
        out.update({r.job_id: r.version for r in rows})
    return out


async def bump_versions(conn: AsyncConnection, job_ids: Iterable[int]) -> None:
    """Version + 1 for each job, and ``updated_date`` of the jobs and their tasks now."""
    wanted = sorted(set(job_ids))
    if not wanted:
        return
    now = utcnow()
    for job_id in wanted:
        result = await conn.execute(
            job_annotation_versions.update()
            .where(job_annotation_versions.c.job_id == job_id)
            .values(version=job_annotation_versions.c.version + 1)
        )
        if result.rowcount == 0:
            await conn.execute(job_annotation_versions.insert().values(job_id=job_id, version=1))
    await conn.execute(jobs.update().where(jobs.c.id.in_(wanted)).values(updated_date=now))
    await conn.execute(
        tasks.update()
        .where(tasks.c.id.in_(sa.select(jobs.c.task_id).where(jobs.c.id.in_(wanted))))
        .values(updated_date=now)
    )


async def lock_task(conn: AsyncConnection, task_id: int) -> bool:
    """Start the write: lock the task (see the module docstring).  False if it is gone."""
    return await locks.lock_task(conn, task_id)


# Loading ----------------------------------------------------------------------------------


async def _rows(conn: AsyncConnection, table: sa.Table, job_ids: Sequence[int],
                *order: Any) -> list[Any]:
    out: list[Any] = []
    for chunk in _chunks(list(job_ids)):
        result = await conn.execute(
            sa.select(table).where(table.c.job_id.in_(chunk)).order_by(*order)
        )
        out.extend(result)
    return out


def _points(value: Any) -> list[float]:
    return [float(p) for p in value or []]


async def load(conn: AsyncConnection, job_ids: Sequence[int]) -> dict[int, LabeledData]:
    """The stored LabeledData of each job (with its version), as saved: no defaults added.

    Tags and shapes come in frame order, tracks in id order, keyframes in frame order.
    """
    out = {job_id: LabeledData() for job_id in job_ids}
    if not out:
        return out
    for job_id, version in (await versions(conn, list(out))).items():
        out[job_id].version = version

    attrs: dict[tuple[str, int], list[AttributeValue]] = {}
    for row in await _rows(conn, annotation_attributes, list(out), annotation_attributes.c.id):
        for kind in ("tag_id", "shape_id", "track_id", "tracked_shape_id"):
            owner = getattr(row, kind)
            if owner is not None:
                attrs.setdefault((kind, owner), []).append(AttributeValue(row.spec_id, row.value))

    for row in await _rows(conn, labeled_tags, list(out), labeled_tags.c.frame,
                           labeled_tags.c.id):
        out[row.job_id].tags.append(Tag(
            id=row.id, label_id=row.label_id, frame=row.frame, group=row.group,
            source=row.source, attributes=attrs.get(("tag_id", row.id), [])))

    shapes: dict[int, Shape] = {}
    children: list[tuple[int, Shape]] = []
    for row in await _rows(conn, labeled_shapes, list(out), labeled_shapes.c.frame,
                           labeled_shapes.c.id):
        shape = Shape(
            id=row.id, type=row.type, label_id=row.label_id, frame=row.frame, group=row.group,
            source=row.source, occluded=row.occluded, outside=row.outside,
            z_order=row.z_order, rotation=row.rotation,
            points=[] if row.type == "skeleton" else _points(row.points), score=row.score,
            attributes=attrs.get(("shape_id", row.id), []))
        shapes[row.id] = shape
        if row.parent_id is None:
            out[row.job_id].shapes.append(shape)
        else:
            children.append((row.parent_id, shape))
    for parent_id, shape in children:
        if parent_id in shapes:
            shapes[parent_id].elements.append(shape)

    tracks: dict[int, Track] = {}
    element_tracks: list[tuple[int, Track]] = []
    for row in await _rows(conn, labeled_tracks, list(out), labeled_tracks.c.id):
        track = Track(
            id=row.id, label_id=row.label_id, frame=row.frame, group=row.group,
            source=row.source, attributes=attrs.get(("track_id", row.id), []),
            continues_id=row.continues_id)
        tracks[row.id] = track
        if row.parent_id is None:
            out[row.job_id].tracks.append(track)
        else:
            element_tracks.append((row.parent_id, track))
    for parent_id, track in element_tracks:
        if parent_id in tracks:
            tracks[parent_id].elements.append(track)
    for row in await _rows(conn, tracked_shapes, list(out), tracked_shapes.c.frame,
                           tracked_shapes.c.id):
        if row.track_id in tracks:
            tracks[row.track_id].shapes.append(TrackedShape(
                id=row.id, type=row.type, frame=row.frame, occluded=row.occluded,
                outside=row.outside, z_order=row.z_order, rotation=row.rotation,
                points=[] if row.type == "skeleton" else _points(row.points),
                attributes=attrs.get(("tracked_shape_id", row.id), []),
                synthetic=row.synthetic))
    return out


# Ids ----------------------------------------------------------------------------------------


@dataclass
class StoredIds:
    """Which rows exist: top-level ids of one kind, and the nested ids under each."""

    top: dict[int, int]  # id -> job id
    #: For shapes: element ids by parent; for tracks: element track ids and keyframe ids.
    elements: dict[int, set[int]]
    keyframes: dict[int, set[int]]


async def stored_ids(conn: AsyncConnection, kind: str, job_ids: Sequence[int],
                     ids: Iterable[int]) -> StoredIds:
    """The top-level rows among ``ids`` of ``kind`` stored in ``job_ids``, and what they own."""
    table = TABLES[kind]
    wanted = sorted(set(ids))
    found = StoredIds({}, {}, {})
    for chunk in _chunks(wanted):
        query = sa.select(table.c.id, table.c.job_id).where(
            table.c.id.in_(chunk), table.c.job_id.in_(list(job_ids)))
        if kind != "tag":
            query = query.where(table.c.parent_id.is_(None))
        rows = await conn.execute(query)
        found.top.update({r.id: r.job_id for r in rows})
    if kind == "tag" or not found.top:
        return found
    tops = sorted(found.top)
    for chunk in _chunks(tops):
        for row in await conn.execute(
            sa.select(table.c.id, table.c.parent_id).where(table.c.parent_id.in_(chunk))
        ):
            found.elements.setdefault(row.parent_id, set()).add(row.id)
    if kind == "track":
        owners = tops + sorted({e for es in found.elements.values() for e in es})
        for chunk in _chunks(owners):
            for row in await conn.execute(
                sa.select(tracked_shapes.c.id, tracked_shapes.c.track_id)
                .where(tracked_shapes.c.track_id.in_(chunk))
            ):
                found.keyframes.setdefault(row.track_id, set()).add(row.id)
    return found


async def continues_links(conn: AsyncConnection, ids: Iterable[int]) -> dict[int, int | None]:
    """``continues_id`` of the given tracks (so a re-inserted track can keep its link)."""
    out: dict[int, int | None] = {}
    for chunk in _chunks(sorted(set(ids))):
        rows = await conn.execute(
            sa.select(labeled_tracks.c.id, labeled_tracks.c.continues_id)
            .where(labeled_tracks.c.id.in_(chunk))
        )
        out.update({r.id: r.continues_id for r in rows})
    return out


# Deleting ---------------------------------------------------------------------------------


async def delete_all(conn: AsyncConnection, job_ids: Sequence[int]) -> bool:
    """Remove every annotation of the jobs; True if there was any."""
    removed = 0
    for table in (annotation_attributes, tracked_shapes, labeled_tracks, labeled_shapes,
                  labeled_tags):
        for chunk in _chunks(list(job_ids)):
            if table in (labeled_tracks, labeled_shapes):
                # Elements first: their parent rows would cascade to them anyway.
                result = await conn.execute(
                    table.delete().where(table.c.job_id.in_(chunk),
                                         table.c.parent_id.is_not(None)))
                removed += result.rowcount
            result = await conn.execute(table.delete().where(table.c.job_id.in_(chunk)))
            removed += result.rowcount
    return removed > 0


async def delete_rows(conn: AsyncConnection, kind: str, rows: Iterable[tuple[int, int]]) -> int:
    """Delete ``(job id, row id)`` objects of ``kind`` (with their elements, keyframes and
    attribute values); the job id must match, so no other job's rows can be touched."""
    table = TABLES[kind]
    by_job: dict[int, list[int]] = {}
    for job_id, row_id in rows:
        by_job.setdefault(job_id, []).append(row_id)
    removed = 0
    for job_id, ids in by_job.items():
        for chunk in _chunks(sorted(set(ids))):
            result = await conn.execute(
                table.delete().where(table.c.job_id == job_id, table.c.id.in_(chunk)))
            removed += result.rowcount
    return removed


# Inserting --------------------------------------------------------------------------------


async def _next_sqlite_id(conn: AsyncConnection, table: sa.Table) -> int:
    """The id SQLite's AUTOINCREMENT would give the next row of ``table``."""
    used = (await conn.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = :t"),
                               {"t": table.name})).scalar()
    top = (await conn.execute(sa.select(sa.func.max(table.c.id)))).scalar()
    return max(used or 0, top or 0) + 1


async def _insert(conn: AsyncConnection, table: sa.Table, rows: list[dict[str, Any]],
                  objects: list[Any]) -> None:
    """Insert ``rows``; objects whose id is None get the new row's id.

    Children need their parents' ids, so new ids must be known in input order.  SQLite
    cannot batch ``RETURNING`` in a known order (SQLAlchemy then inserts row by row), so
    there the ids are taken ahead, which is safe because the write holds the database's
    write lock (:func:`lock_task`); elsewhere ``RETURNING`` with
    ``sort_by_parameter_order`` batches.
    """
    fresh = [o for o in objects if o.id is None]
    if fresh and conn.dialect.name == "sqlite":
        start = await _next_sqlite_id(conn, table)
        for offset, obj in enumerate(fresh):
            obj.id = start + offset
        fresh = []
    preset = [dict(r, id=o.id) for r, o in zip(rows, objects, strict=True) if o.id is not None]
    for chunk in _chunks(preset):
        await conn.execute(table.insert(), list(chunk))
    waiting = {id(o) for o in fresh}
    pending = [(r, o) for r, o in zip(rows, objects, strict=True) if id(o) in waiting]
    for chunk in _chunks(pending):
        result = await conn.execute(
            table.insert().returning(table.c.id, sort_by_parameter_order=True),
            [r for r, _ in chunk],
        )
        for (_, obj), new_id in zip(chunk, result.scalars().all(), strict=True):
            obj.id = new_id


def _attribute_rows(job_id: int, owner: str, objects: Iterable[Any]) -> list[dict[str, Any]]:
    return [
        {"job_id": job_id, "tag_id": None, "shape_id": None, "track_id": None,
         "tracked_shape_id": None, owner: obj.id, "spec_id": a.spec_id, "value": a.value}
        for obj in objects for a in obj.attributes
    ]


def _geometry(shape: Shape | TrackedShape) -> dict[str, Any]:
    return {
        "type": shape.type, "frame": shape.frame, "occluded": shape.occluded,
        "outside": shape.outside, "z_order": shape.z_order, "rotation": shape.rotation,
        "points": list(shape.points),
    }


def _common(job_id: int, obj: Tag | Shape | Track) -> dict[str, Any]:
    return {"job_id": job_id, "label_id": obj.label_id, "frame": obj.frame,
            "group": obj.group, "source": obj.source}


async def insert(conn: AsyncConnection, job_id: int, payload: LabeledData) -> bool:
    """Store ``payload`` in the job; objects keep given ids, others get new ones (set in
    place).  True if anything was stored.  Call after :func:`lock_task`."""
    attribute_rows: list[dict[str, Any]] = []

    await _insert(conn, labeled_tags, [_common(job_id, t) for t in payload.tags],
                  payload.tags)
    attribute_rows += _attribute_rows(job_id, "tag_id", payload.tags)

    top = payload.shapes
    await _insert(conn, labeled_shapes,
                  [dict(_common(job_id, s), **_geometry(s), parent_id=None, score=s.score)
                   for s in top], top)
    elements = [(s, e) for s in top for e in s.elements]
    await _insert(conn, labeled_shapes,
                  [dict(_common(job_id, e), **_geometry(e), parent_id=s.id, score=e.score)
                   for s, e in elements], [e for _, e in elements])
    attribute_rows += _attribute_rows(job_id, "shape_id", [*top, *(e for _, e in elements)])

    def link(track: Track) -> int | None:
        if track.continues is not None:
            track.continues_id = track.continues.id
        return track.continues_id

    tracks = payload.tracks
    await _insert(conn, labeled_tracks,
                  [dict(_common(job_id, t), parent_id=None, continues_id=link(t))
                   for t in tracks], tracks)
    element_tracks = [(t, e) for t in tracks for e in t.elements]
    await _insert(conn, labeled_tracks,
                  [dict(_common(job_id, e), parent_id=t.id, continues_id=link(e))
                   for t, e in element_tracks], [e for _, e in element_tracks])
    all_tracks = [*tracks, *(e for _, e in element_tracks)]
    keyframes = [(t, k) for t in all_tracks for k in t.shapes]
    await _insert(conn, tracked_shapes,
                  [dict(_geometry(k), job_id=job_id, track_id=t.id, synthetic=k.synthetic)
                   for t, k in keyframes], [k for _, k in keyframes])
    attribute_rows += _attribute_rows(job_id, "track_id", all_tracks)
    attribute_rows += _attribute_rows(job_id, "tracked_shape_id", [k for _, k in keyframes])

    for chunk in _chunks(attribute_rows):
        await conn.execute(annotation_attributes.insert(), list(chunk))
    return not payload.is_empty()
