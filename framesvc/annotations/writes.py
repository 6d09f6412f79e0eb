"""Annotation writes of a job or a task: which rows go, which come, which ids survive.

The input is already parsed and validated; these run inside one transaction that began
with ``store.annotations.lock_task``, so what they read cannot change before they write.
Semantics follow CVAT's ``JobAnnotation`` / ``TaskAnnotation``:

* ``put``: delete everything, then create;
* ``create``: new objects (tracked-shape ids in the input are ignored);
* ``update``: an object with an id replaces the stored object with that id (same id; its
  elements and keyframes keep theirs where they belonged to it, others get new ones);
  an object without an id is created, as CVAT allows.  CVAT would also create an object
  under an unknown id (or fail with a database error when the id is another job's);
  framesvc answers 400 ``["shape id `N` is invalid"]`` for both;
* ``delete``: remove the objects with the given ids (with their elements); ids that do
  not exist are ignored, as in CVAT.

A change bumps the version of every job it touched.  Task-level writes go to the task's
annotation jobs through ``merge.distribute``; updates and deletes of a task-level object
reach every stored copy of it (``merge.TaskView``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from framesvc.annotations.merge import JobPart, TaskView, distribute, merge_jobs
from framesvc.annotations.model import LabeledData, Shape, Track
from framesvc.annotations.validate import AnnotationError
from framesvc.store import annotations as store

KINDS = ("tag", "shape", "track")


def _objects(payload: LabeledData, kind: str) -> list:
    return {"tag": payload.tags, "shape": payload.shapes, "track": payload.tracks}[kind]


def _forget_nested_ids(obj: object) -> None:
    """Elements and keyframes get new rows."""
    if isinstance(obj, Shape):
        for element in obj.elements:
            element.id = None
    elif isinstance(obj, Track):
        for keyframe in obj.shapes:
            keyframe.id = None
        for element in obj.elements:
            element.id = None
            _forget_nested_ids(element)


def forget_ids(payload: LabeledData) -> None:
    """All ids of ``payload`` to None (everything is created anew)."""
    for kind in KINDS:
        for obj in _objects(payload, kind):
            obj.id = None
            _forget_nested_ids(obj)


def _keep_owned(obj: object, owned: store.StoredIds) -> None:
    """Keep nested ids that belonged to the replaced object (each once); drop the rest."""
    used: set[int] = set()

    def keep(candidate: int | None, allowed: set[int]) -> int | None:
        if candidate is None or candidate not in allowed or candidate in used:
            return None
        used.add(candidate)
        return candidate

    if isinstance(obj, Shape):
        for element in obj.elements:
            element.id = keep(element.id, owned.elements.get(obj.id or 0, set()))
    elif isinstance(obj, Track):
        for keyframe in obj.shapes:
            keyframe.id = keep(keyframe.id, owned.keyframes.get(obj.id or 0, set()))
        for element in obj.elements:
            element.id = keep(element.id, owned.elements.get(obj.id or 0, set()))
            for keyframe in element.shapes:
                keyframe.id = (keep(keyframe.id, owned.keyframes.get(element.id, set()))
                               if element.id is not None else None)


async def _keep_links(conn: AsyncConnection, tracks: Iterable[Track]) -> None:
    """A re-inserted track (and element track) keeps the job-border link it had."""
    everything = [t for track in tracks for t in (track, *track.elements) if t.id is not None]
    links = await store.continues_links(conn, [t.id for t in everything])  # type: ignore[misc]
    for track in everything:
        track.continues_id = links.get(track.id)  # type: ignore[arg-type]


def _ids_once(kind: str, objects: Sequence) -> list[int]:
    seen: set[int] = set()
    for obj in objects:
        if obj.id is None:
            continue
        if obj.id in seen:
            raise AnnotationError(f"{kind} id `{obj.id}` is given more than once")
        seen.add(obj.id)
    return sorted(seen)


# Jobs -------------------------------------------------------------------------------------


async def write_job(conn: AsyncConnection, job_id: int, action: str,
                    payload: LabeledData) -> LabeledData:
    """Apply ``action`` (put, create, update, delete) to the job; the response data."""
    changed = False
    if action == "put":
        forget_ids(payload)
        changed = await store.delete_all(conn, [job_id])
        changed = await store.insert(conn, job_id, payload) or changed
    elif action == "create":
        forget_ids(payload)
        changed = await store.insert(conn, job_id, payload)
    elif action == "update":
        replaced: dict[str, list[tuple[int, int]]] = {}
        for kind in KINDS:
            objects = _objects(payload, kind)
            ids = _ids_once(kind, objects)
            owned = await store.stored_ids(conn, kind, [job_id], ids)
            for obj in objects:
                if obj.id is None:
                    _forget_nested_ids(obj)
                elif obj.id not in owned.top:
                    raise AnnotationError(f"{kind} id `{obj.id}` is invalid")
                else:
                    _keep_owned(obj, owned)
            replaced[kind] = [(job_id, i) for i in ids]
        await _keep_links(conn, payload.tracks)
        for kind in KINDS:
            await store.delete_rows(conn, kind, replaced[kind])
        changed = await store.insert(conn, job_id, payload)
    elif action == "delete":
        for kind in KINDS:
            rows = [(job_id, obj.id) for obj in _objects(payload, kind)]
            changed = bool(await store.delete_rows(conn, kind, rows)) or changed
    else:
        raise ValueError(f"unknown action {action!r}")
    if changed:
        await store.bump_versions(conn, [job_id])
    payload.version = (await store.versions(conn, [job_id]))[job_id]
    return payload


# Tasks ------------------------------------------------------------------------------------


async def task_view(conn: AsyncConnection, parts: Sequence[JobPart]) -> TaskView:
    stored = await store.load(conn, [p.job_id for p in parts])
    return merge_jobs((p, stored[p.job_id]) for p in parts)


async def _insert_distributed(conn: AsyncConnection, parts: Sequence[JobPart],
                              payload: LabeledData) -> tuple[dict[int, LabeledData], set[int]]:
    pieces = distribute(payload, parts)
    changed: set[int] = set()
    for job_id, piece in pieces.items():  # earlier jobs first: links need their ids
        if await store.insert(conn, job_id, piece):
            changed.add(job_id)
    return pieces, changed


def _strip_copies(pieces: dict[int, LabeledData], owners: dict[tuple[str, int], int]) -> None:
    """Only the copy in the job that owned an id keeps it (and its nested ids)."""
    for job_id, piece in pieces.items():
        for kind in KINDS:
            for obj in _objects(piece, kind):
                if obj.id is not None and owners.get((kind, obj.id)) != job_id:
                    obj.id = None
                    _forget_nested_ids(obj)


async def write_task(conn: AsyncConnection, parts: Sequence[JobPart], action: str,
                     payload: LabeledData) -> LabeledData:
    """Apply ``action`` to the task's annotation jobs ``parts``; the response data."""
    job_ids = [p.job_id for p in parts]
    changed: set[int] = set()
    response = payload
    if action in ("put", "create"):
        forget_ids(payload)
        if action == "put" and await store.delete_all(conn, job_ids):
            changed.update(job_ids)
        pieces, inserted = await _insert_distributed(conn, parts, payload)
        changed |= inserted
        response = merge_jobs((p, pieces[p.job_id]) for p in parts).data
    elif action == "update":
        view = await task_view(conn, parts)
        owners: dict[tuple[str, int], int] = {}
        doomed: dict[str, list[tuple[int, int]]] = {kind: [] for kind in KINDS}
        for kind in KINDS:
            objects = _objects(payload, kind)
            _ids_once(kind, objects)
            by_job: dict[int, list] = {}
            for obj in objects:
                if obj.id is None:
                    _forget_nested_ids(obj)
                    continue
                group = view.group(kind, obj.id)
                if group is None:
                    raise AnnotationError(f"{kind} id `{obj.id}` is invalid")
                if any((kind, row) in owners for _, row in group):
                    raise AnnotationError(f"{kind} id `{obj.id}` is given more than once")
                owner_job = next((j for j, r in group if r == obj.id), group[0][0])
                owners.update(((kind, row), owner_job) for _, row in group)
                doomed[kind].extend(group)
                by_job.setdefault(owner_job, []).append(obj)
            for job_id, owned_objects in by_job.items():
                owned = await store.stored_ids(conn, kind, [job_id],
                                               [o.id for o in owned_objects])
                for obj in owned_objects:
                    _keep_owned(obj, owned)
        for kind in KINDS:
            await store.delete_rows(conn, kind, doomed[kind])
            changed.update(job for job, _ in doomed[kind])
        pieces = distribute(payload, parts)
        _strip_copies(pieces, owners)
        for job_id, piece in pieces.items():
            if await store.insert(conn, job_id, piece):
                changed.add(job_id)
        response = merge_jobs((p, pieces[p.job_id]) for p in parts).data
    elif action == "delete":
        view = await task_view(conn, parts)
        for kind in KINDS:
            rows = [row for obj in _objects(payload, kind)
                    for row in (view.group(kind, obj.id) or [])]
            if await store.delete_rows(conn, kind, rows):
                changed.update(job for job, _ in rows)
    else:
        raise ValueError(f"unknown action {action!r}")
    await store.bump_versions(conn, changed)
    response.version = sum((await store.versions(conn, job_ids)).values())
    return response


async def delete_task_annotations(conn: AsyncConnection, parts: Sequence[JobPart]) -> None:
    job_ids = [p.job_id for p in parts]
    changed = set()
    for job_id in job_ids:
        if await store.delete_all(conn, [job_id]):
            changed.add(job_id)
    await store.bump_versions(conn, changed)
