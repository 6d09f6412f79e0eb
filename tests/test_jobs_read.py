"""JobRead and the jobs list against the real server and the real cvat-sdk.

Jobs exist only once a task has media.  These tests give a task its media *rows* (a
``data`` row, segments and jobs) directly in the live server's SQLite store with the
store functions the ingest uses (``store.media.insert_data`` and
``store.jobs.create_segments_and_jobs``), so the job read side is tested on its own,
without decoding any media.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from authutil import basic, call, register, unique
from cvat_sdk import make_client

from framesvc.model.segments import SegmentSpec, plan_segments
from framesvc.store.db import create_engine
from framesvc.store.jobs import create_segments_and_jobs
from framesvc.store.media import DataRecord, insert_data
from framesvc.store.schema import jobs, tasks

if TYPE_CHECKING:  # conftest is not importable when another conftest.py shadows it
    from conftest import LiveServer

T = TypeVar("T")

ADMIN = ("admin", "admin-Secret-123")


def run_store(server: LiveServer, fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``fn(conn)`` in one transaction on the live server's database."""

    async def main() -> T:
        engine = create_engine(server.database_url)
        try:
            async with engine.begin() as conn:
                return await fn(conn)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def attach_data(
    server: LiveServer,
    task_id: int,
    *,
    size: int,
    segment_size: int = 0,
    overlap: int | None = None,
    chunk_size: int = 10,
    start: int = 0,
    step: int = 1,
    video: bool = False,
    consensus_replicas: int = 0,
    gt_frames: list[int] | None = None,
) -> list[int]:
    """Give ``task_id`` a data row of ``size`` frames and CVAT's segments and jobs."""
    specs = plan_segments(size, segment_size, overlap, is_video=video)
    if gt_frames is not None:
        specs.append(SegmentSpec.specific(size, gt_frames))

    async def work(conn: Any) -> list[int]:
        data_id = await insert_data(
            conn,
            DataRecord(
                chunk_size=chunk_size,
                size=size,
                image_quality=70,
                start_frame=start,
                stop_frame=start + (size - 1) * step,
                frame_filter=f"step={step}" if step != 1 else "",
                compressed_chunk_type="video" if video else "imageset",
                original_chunk_type="video" if video else "imageset",
                sorting_method="lexicographical",
                media_type="video" if video else "image",
                root="/nonexistent",
                created_date=dt.datetime.now(dt.UTC),
            ),
        )
        await conn.execute(
            tasks.update()
            .where(tasks.c.id == task_id)
            .values(data_id=data_id, mode="interpolation" if video else "annotation",
                    segment_size=specs[0].stop - specs[0].start + 1,
                    overlap=overlap or 0)
        )
        return await create_segments_and_jobs(conn, task_id, specs, consensus_replicas)

    return run_store(server, work)


def set_job_assignee(server: LiveServer, job_id: int, user_id: int | None) -> None:
    async def work(conn: Any) -> None:
        await conn.execute(jobs.update().where(jobs.c.id == job_id).values(assignee_id=user_id))

    run_store(server, work)


def set_job_stage(server: LiveServer, job_id: int, stage: str, state: str) -> None:
    async def work(conn: Any) -> None:
        await conn.execute(
            jobs.update().where(jobs.c.id == job_id).values(stage=stage, state=state)
        )

    run_store(server, work)


def admin_call(server: LiveServer, method: str, path: str, body: Any = None) -> Any:
    return call(server, method, path, body=body, headers=basic(*ADMIN))


def new_task(server: LiveServer, **fields: Any) -> dict[str, Any]:
    body = {"name": unique("jobs-task-"), "labels": [{"name": "car"}], **fields}
    reply = admin_call(server, "POST", "/api/tasks", body)
    assert reply.status == 201, reply.raw
    return reply.json


def new_user(server: LiveServer) -> tuple[str, str, int]:
    name, password = unique("u"), "pass-Word-123"
    reply = register(server, name, password)
    assert reply.status == 201, reply.raw
    me = call(server, "GET", "/api/users/self", headers=basic(name, password)).json
    return name, password, me["id"]


JOB_READ_KEYS = {
    "url", "id", "task_id", "task_name", "project_id", "project_name", "assignee",
    "guide_id", "dimension", "mode", "media_type", "bug_tracker", "status", "stage",
    "state", "frame_count", "start_frame", "stop_frame", "data_chunk_size",
    "data_compressed_chunk_type", "data_original_chunk_type", "created_date",
    "updated_date", "issues", "labels", "type", "organization", "target_storage",
    "source_storage", "assignee_updated_date", "parent_job_id", "replicas_count",
    "consensus_replicas",
}


def test_job_read_has_every_field_with_cvat_types(server: LiveServer) -> None:
    task = new_task(server, segment_size=4,
                    target_storage={"location": "local"})
    job_ids = attach_data(server, task["id"], size=10, segment_size=4, chunk_size=3)
    assert len(job_ids) == 3

    reply = admin_call(server, "GET", f"/api/jobs/{job_ids[1]}")
    assert reply.status == 200
    job = reply.json
    assert set(job) == JOB_READ_KEYS
    assert job["url"] == f"{server.url}/api/jobs/{job_ids[1]}"
    assert job["id"] == job_ids[1] and job["task_id"] == task["id"]
    assert job["task_name"] == task["name"]
    assert (job["start_frame"], job["stop_frame"], job["frame_count"]) == (4, 7, 4)
    assert job["data_chunk_size"] == 3
    assert job["data_compressed_chunk_type"] == "imageset"
    assert job["data_original_chunk_type"] == "imageset"
    assert (job["status"], job["stage"], job["state"], job["type"]) == (
        "annotation", "annotation", "new", "annotation")
    assert (job["mode"], job["dimension"], job["media_type"]) == ("annotation", "2d", "image")
    assert job["issues"] == {"url": f"{server.url}/api/issues?job_id={job_ids[1]}",
                             "count": 0}
    assert job["labels"] == {"url": f"{server.url}/api/labels?job_id={job_ids[1]}"}
    assert job["bug_tracker"] is None and job["assignee"] is None
    assert job["project_id"] is None and job["organization"] is None
    assert job["target_storage"]["location"] == "local"
    assert isinstance(job["target_storage"]["id"], int)
    assert job["source_storage"] is None
    assert job["parent_job_id"] is None
    assert job["replicas_count"] == 0 and job["consensus_replicas"] == 0
    for key in ("created_date", "updated_date"):
        dt.datetime.fromisoformat(job[key].replace("Z", "+00:00"))

    # The real SDK parses it (strict types, required fields).
    with make_client(f"http://{server.host}", port=server.port, credentials=ADMIN) as client:
        sdk_job = client.jobs.retrieve(job_ids[1])
        assert sdk_job.frame_count == 4
        assert sdk_job.stop_frame == 7
        assert isinstance(sdk_job.updated_date, dt.datetime)
        assert [j.id for j in client.tasks.retrieve(task["id"]).get_jobs()] == sorted(
            job_ids, reverse=True)


def test_job_read_of_video_task_with_overlap_and_step(server: LiveServer) -> None:
    task = new_task(server)
    job_ids = attach_data(server, task["id"], size=12, segment_size=6, overlap=2,
                          chunk_size=4, start=3, step=2, video=True)
    listed = admin_call(server, "GET", f"/api/jobs?task_id={task['id']}&sort=id").json
    bounds = [(j["start_frame"], j["stop_frame"], j["frame_count"]) for j in listed["results"]]
    assert bounds == [(0, 5, 6), (4, 9, 6), (8, 11, 4)]
    assert [j["id"] for j in listed["results"]] == job_ids
    first = listed["results"][0]
    assert first["mode"] == "interpolation"
    assert first["media_type"] == "image"  # video frames are images to CVAT clients
    assert first["data_compressed_chunk_type"] == "video"
    task_read = admin_call(server, "GET", f"/api/tasks/{task['id']}").json
    assert task_read["size"] == 12 and task_read["data_chunk_size"] == 4
    assert task_read["mode"] == "interpolation" and task_read["media_type"] == "image"
    assert task_read["jobs"]["count"] == 3


def test_ground_truth_job_is_imageset_and_counts_its_frames(server: LiveServer) -> None:
    task = new_task(server)
    job_ids = attach_data(server, task["id"], size=20, video=True, gt_frames=[1, 5, 9, 5])
    gt = admin_call(server, "GET", f"/api/jobs/{job_ids[-1]}").json
    assert gt["type"] == "ground_truth"
    assert (gt["start_frame"], gt["stop_frame"], gt["frame_count"]) == (0, 19, 3)
    assert gt["data_compressed_chunk_type"] == "imageset"  # forced for specific frames
    assert gt["data_original_chunk_type"] == "video"
    task_read = admin_call(server, "GET", f"/api/tasks/{task['id']}").json
    assert task_read["validation_mode"] == "gt"


def test_consensus_replicas_share_the_segment(server: LiveServer) -> None:
    task = new_task(server, consensus_replicas=2, segment_size=5)
    assert task["consensus_enabled"] is True and task["initial_replicas"] == 2
    job_ids = attach_data(server, task["id"], size=10, segment_size=5, consensus_replicas=2)
    assert len(job_ids) == 6
    listed = admin_call(server, "GET", f"/api/jobs?task_id={task['id']}&sort=id").json
    by_id = {j["id"]: j for j in listed["results"]}
    parent, replica = by_id[job_ids[0]], by_id[job_ids[1]]
    assert parent["type"] == "annotation"
    assert parent["replicas_count"] == 2 and parent["consensus_replicas"] == 2
    assert replica["type"] == "consensus_replica"
    assert replica["parent_job_id"] == parent["id"]
    assert replica["replicas_count"] == 0 and replica["consensus_replicas"] == 0
    assert (replica["start_frame"], replica["stop_frame"]) == (0, 4)
    children = admin_call(server, "GET", f"/api/jobs?parent_job_id={parent['id']}").json
    assert sorted(j["id"] for j in children["results"]) == job_ids[1:3]


def test_job_status_follows_stage_and_state(server: LiveServer) -> None:
    task = new_task(server)
    job_ids = attach_data(server, task["id"], size=9, segment_size=3)
    set_job_stage(server, job_ids[0], "acceptance", "completed")
    set_job_stage(server, job_ids[1], "validation", "in progress")
    statuses = {
        j["id"]: j["status"]
        for j in admin_call(server, "GET", f"/api/jobs?task_id={task['id']}").json["results"]
    }
    assert statuses == {job_ids[0]: "completed", job_ids[1]: "validation",
                        job_ids[2]: "annotation"}
    summary = admin_call(server, "GET", f"/api/tasks/{task['id']}").json["jobs"]
    assert summary == {"count": 3, "completed": 1, "validation": 1,
                       "url": f"{server.url}/api/jobs?task_id={task['id']}"}


def test_jobs_list_pages_filters_and_sorts(server: LiveServer) -> None:
    task = new_task(server)
    job_ids = attach_data(server, task["id"], size=10, segment_size=2)
    assert len(job_ids) == 5
    set_job_stage(server, job_ids[2], "validation", "new")
    base = f"/api/jobs?task_id={task['id']}"

    page1 = admin_call(server, "GET", base + "&page_size=2").json
    assert page1["count"] == 5
    assert [j["id"] for j in page1["results"]] == sorted(job_ids, reverse=True)[:2]
    assert page1["previous"] is None and "page=2" in page1["next"]
    last = admin_call(server, "GET", base + "&page_size=2&page=3").json
    assert last["next"] is None and len(last["results"]) == 1
    assert admin_call(server, "GET", base + "&page_size=2&page=4").status == 404

    stage = admin_call(server, "GET", base + "&stage=validation").json
    assert [j["id"] for j in stage["results"]] == [job_ids[2]]
    asc = admin_call(server, "GET", base + "&sort=stage,id").json
    assert [j["id"] for j in asc["results"]] == [*job_ids[:2], *job_ids[3:], job_ids[2]]
    by_name = admin_call(server, "GET", f"/api/jobs?task_name={task['name']}").json
    assert by_name["count"] == 5
    searched = admin_call(server, "GET", f"/api/jobs?search={task['name'].upper()}").json
    assert searched["count"] == 5

    bad = admin_call(server, "GET", base + "&sort=nope")
    assert bad.status == 400 and "sort" in bad.json
    assert admin_call(server, "GET", "/api/jobs?task_id=abc").status == 400
    assert admin_call(server, "GET", "/api/jobs?org=&page=1&task_id=" + str(task["id"])
                      ).json["count"] == 5


def test_jobs_list_json_logic_filter_through_the_sdk(server: LiveServer) -> None:
    task = new_task(server)
    job_ids = attach_data(server, task["id"], size=8, segment_size=2)
    with make_client(f"http://{server.host}", port=server.port, credentials=ADMIN) as client:
        picked = client.jobs.list(task_id=task["id"], id__in=[job_ids[0], job_ids[3]])
        assert sorted(j.id for j in picked) == [job_ids[0], job_ids[3]]
        between = client.jobs.list(filter=json.dumps({"and": [
            {"==": [{"var": "task_id"}, task["id"]]},
            {"<=": [job_ids[1], {"var": "id"}, job_ids[2]]},
        ]}))
        assert sorted(j.id for j in between) == job_ids[1:3]
    bad = admin_call(server, "GET", "/api/jobs?filter=" + quote('{"==":[{"var":"nope"},1]}'))
    assert bad.status == 400
    assert bad.json == ["filter: term 'nope' is not supported"]
    assert admin_call(server, "GET", "/api/jobs?filter=" + quote("{oops")).status == 400


def test_unknown_job_is_404(server: LiveServer) -> None:
    reply = admin_call(server, "GET", "/api/jobs/987654")
    assert reply.status == 404 and reply.json == {"detail": "Not found."}


def test_job_assignee_sees_only_the_job_not_the_task(server: LiveServer) -> None:
    task = new_task(server, source_storage={"location": "local"})
    job_ids = attach_data(server, task["id"], size=6, segment_size=3)
    name, password, user_id = new_user(server)
    auth = basic(name, password)

    assert call(server, "GET", f"/api/jobs/{job_ids[0]}", headers=auth).status == 404
    assert call(server, "GET", "/api/jobs", headers=auth).json["count"] == 0

    set_job_assignee(server, job_ids[0], user_id)
    job = call(server, "GET", f"/api/jobs/{job_ids[0]}", headers=auth).json
    assert job["assignee"]["id"] == user_id and job["assignee"]["username"] == name
    # CVAT hides what belongs to a task the user cannot see.
    assert job["task_name"] is None and job["source_storage"] is None
    listed = call(server, "GET", "/api/jobs", headers=auth).json
    assert [j["id"] for j in listed["results"]] == [job_ids[0]]
    assert call(server, "GET", f"/api/jobs/{job_ids[1]}", headers=auth).status == 404
    assert call(server, "GET", f"/api/tasks/{task['id']}", headers=auth).status == 404
    # ... but may read the job's labels, which annotating it needs.
    labels = call(server, "GET", f"/api/labels?job_id={job_ids[0]}&org=", headers=auth).json
    assert [lb["name"] for lb in labels["results"]] == ["car"]

    # The admin sees the assignee on the job; the task's owner sees the task name.
    admin_view = admin_call(server, "GET", f"/api/jobs/{job_ids[0]}").json
    assert admin_view["task_name"] == task["name"]
    assert admin_view["assignee"]["id"] == user_id


def test_task_assignee_sees_the_task_and_all_its_jobs(server: LiveServer) -> None:
    task = new_task(server)
    job_ids = attach_data(server, task["id"], size=6, segment_size=2)
    name, password, user_id = new_user(server)
    assert admin_call(server, "PATCH", f"/api/tasks/{task['id']}",
                      {"assignee_id": user_id}).status == 200
    with make_client(f"http://{server.host}", port=server.port,
                     credentials=(name, password)) as client:
        sdk_task = client.tasks.retrieve(task["id"])
        assert sdk_task.assignee.id == user_id
        assert sorted(j.id for j in sdk_task.get_jobs()) == job_ids
        assert [lb.name for lb in sdk_task.get_labels()] == ["car"]


@pytest.mark.parametrize("path", ["/api/jobs", "/api/jobs/1"])
def test_jobs_need_authentication(server: LiveServer, path: str) -> None:
    assert call(server, "GET", path).status == 401


def test_create_segments_and_jobs_returns_parents_then_replicas(server: LiveServer) -> None:
    task = new_task(server)
    specs = [SegmentSpec.range(0, 4), SegmentSpec.range(5, 9)]

    async def work(conn: Any) -> tuple[list[int], list[Any]]:
        ids = await create_segments_and_jobs(conn, task["id"], specs, consensus_replicas=2)
        rows = (await conn.execute(
            sa.select(jobs).where(jobs.c.task_id == task["id"]).order_by(jobs.c.id))).all()
        return ids, rows

    ids, rows = run_store(server, work)
    assert ids == [r.id for r in rows]
    assert [r.type for r in rows] == ["annotation", "consensus_replica", "consensus_replica"] * 2
    assert [r.parent_job_id for r in rows] == [None, ids[0], ids[0], None, ids[3], ids[3]]
    assert len({r.segment_id for r in rows}) == 2
    assert rows[0].segment_id == rows[1].segment_id == rows[2].segment_id
