"""Writes under one task take their locks in one order: the task's row first.

Each test holds an annotation write open (it has locked the task, as every annotation
write does) while a second transaction deletes something the annotation write is about
to reference: a label, a consensus replica job, the task.  With the task's row locked
first by both, the second simply waits.  Locking in the other order deadlocks on
PostgreSQL ("deadlock detected", a 500 at the API); SQLite's single write lock hides
it, so these matter under ``make test-postgres`` and must simply pass on SQLite.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import database_url_for
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from framesvc.annotations.model import LabeledData, Tag
from framesvc.model.segments import SegmentSpec
from framesvc.store import annotations
from framesvc.store.db import create_engine, migrate
from framesvc.store.jobs import create_segments_and_jobs, delete_job_and_segment, get_job
from framesvc.store.labels import LabelInput, create_labels, remove_label, update_labels
from framesvc.store.schema import jobs, labeled_tags, labels, tasks
from framesvc.store.tasks import (
    NewTask,
    delete_task,
    insert_task,
    touch_task_jobs,
    update_task,
)
from framesvc.store.users import create_user

#: How long the annotation write keeps its lock before it inserts: long enough for the
#: other transaction to have taken whatever it takes first.
HOLD = 0.5


@dataclass
class World:
    engine: AsyncEngine
    task_id: int
    label_id: int
    job_id: int
    replica_id: int


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    (tmp_path / "data").mkdir()
    url = database_url_for(tmp_path)
    await asyncio.to_thread(migrate, url)
    engine = create_engine(url)
    async with engine.begin() as conn:
        user = await create_user(conn, username="locker", password_hash="x")
        task_id = await insert_task(conn, NewTask(name="locks", owner_id=user.id))
        (label_id,) = await create_labels(conn, task_id, [LabelInput(name="car")])
        job_id, replica_id = await create_segments_and_jobs(
            conn, task_id, [SegmentSpec.range(0, 9)], consensus_replicas=1)
    yield World(engine, task_id, label_id, job_id, replica_id)
    await engine.dispose()


async def _race(world: World, job_id: int,
                other: Callable[[AsyncConnection], Awaitable[None]]) -> None:
    """An annotation write to ``job_id`` against ``other`` started while it holds the lock."""
    locked = asyncio.Event()

    async def annotate() -> None:
        async with world.engine.begin() as conn:
            assert await annotations.lock_task(conn, world.task_id)
            locked.set()
            await asyncio.sleep(HOLD)
            tag = Tag(label_id=world.label_id, frame=0)
            await annotations.insert(conn, job_id, LabeledData(tags=[tag]))
            await annotations.bump_versions(conn, [job_id])

    async def delete() -> None:
        await locked.wait()
        async with world.engine.begin() as conn:
            await other(conn)

    await asyncio.wait_for(asyncio.gather(annotate(), delete()), timeout=60)


async def _count(world: World, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    async with world.engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(table).where(*where)
        return int((await conn.execute(query)).scalar_one())


async def test_label_deletion_waits_for_an_annotation_write(world: World) -> None:
    async def delete_label(conn: AsyncConnection) -> None:  # DELETE /api/labels/{id}
        await remove_label(conn, world.task_id, world.label_id)
        await update_task(conn, world.task_id, {})
        await touch_task_jobs(conn, world.task_id)

    await _race(world, world.job_id, delete_label)
    assert await _count(world, labels, labels.c.id == world.label_id) == 0
    # The tag drawn with the label went with it.
    assert await _count(world, labeled_tags) == 0


async def test_label_deletion_by_task_patch_waits_for_an_annotation_write(
    world: World,
) -> None:
    async def patch_task(conn: AsyncConnection) -> None:  # PATCH /api/tasks/{id}
        await update_labels(conn, world.task_id, [LabelInput(id=world.label_id, deleted=True)])
        await update_task(conn, world.task_id, {})
        await touch_task_jobs(conn, world.task_id)

    await _race(world, world.job_id, patch_task)
    assert await _count(world, labels, labels.c.id == world.label_id) == 0
    assert await _count(world, labeled_tags) == 0


async def test_task_deletion_waits_for_an_annotation_write(world: World) -> None:
    # delete_task removes replica jobs before the task: the write goes to the replica.
    await _race(world, world.replica_id, lambda conn: delete_task(conn, world.task_id))
    assert await _count(world, tasks) == 0
    assert await _count(world, jobs) == 0


async def test_job_deletion_waits_for_an_annotation_write(world: World) -> None:
    async def delete_replica(conn: AsyncConnection) -> None:
        job = await get_job(conn, world.replica_id)
        assert job is not None
        await delete_job_and_segment(conn, job)

    await _race(world, world.replica_id, delete_replica)
    assert await _count(world, jobs, jobs.c.id == world.replica_id) == 0
    assert await _count(world, labeled_tags) == 0
