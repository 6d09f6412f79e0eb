"""Ground-truth jobs: ``POST /api/jobs`` with every selection method, CVAT's validation
messages, one GT job per task, ``DELETE /api/jobs/{id}``, and who may do it.

Tasks are created from generated images through the SDK.  The main task takes every
second of 31 source images from frame 1 (15 frames, absolute 1, 3, ..., 29) in jobs of 5
with an overlap of 1, so task-relative and absolute frame numbers differ and
``random_per_job`` has overlap frames to skip.  Expected frames are computed here with
NumPy exactly as CVAT's ``JobWriteSerializer.create`` computes them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from authutil import call
from cvat_sdk import Client, models
from cvat_sdk.api_client.exceptions import ApiException
from test_jobs_api import Account, admin_account, client_for, create_task, new_account, raw

if TYPE_CHECKING:  # conftest is not importable when another conftest.py shadows it
    from conftest import LiveServer

START, STEP, SOURCE = 1, 2, 31
ABS = list(range(START, SOURCE, STEP))  # the task's 15 absolute frames
SIZE = len(ABS)


@dataclass
class Setup:
    owner: Account
    task_assignee: Account
    job_assignee: Account
    stranger: Account
    folder: Path


@pytest.fixture(scope="module")
def setup(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return Setup(new_account(server, "gtowner"), new_account(server, "gtstaff"),
                 new_account(server, "gtworker"), new_account(server, "gtstranger"),
                 tmp_path_factory.mktemp("gt"))


@pytest.fixture
def owner_client(server: LiveServer, setup: Setup) -> Iterator[Client]:
    with client_for(server, setup.owner) as client:
        yield client


_counter = iter(range(10**6))


def new_task(client: Client, setup: Setup, **spec: Any) -> Any:
    """A fresh 15-frame task of the owner's (absolute frames 1, 3, ..., 29)."""
    spec = {"segment_size": 5, "overlap": 1, "start_frame": START,
            "frame_step": STEP, **spec}
    task = create_task(client, setup.folder / f"t{next(_counter)}", SOURCE, **spec)
    assert task.size == SIZE
    return task


def gt_request(task_id: int, **params: Any) -> models.JobWriteRequest:
    return models.JobWriteRequest(type="ground_truth", task_id=task_id, **params)


def create_gt(client: Client, task_id: int, **params: Any) -> dict[str, Any]:
    job, response = client.api_client.jobs_api.create(gt_request(task_id, **params))
    assert response.status == 201
    return job.to_dict()


def included(server: LiveServer, account: Account, job_id: int) -> list[int]:
    meta = raw(server, account, "GET", f"/api/jobs/{job_id}/data/meta")
    assert meta.status == 200, meta.raw
    return meta.json["included_frames"]


def stored_frames(server: LiveServer, job_id: int) -> list[int]:
    from conftest import db_rows

    ((frames,),) = db_rows(
        server, "SELECT segments.frames FROM segments JOIN jobs ON jobs.segment_id = segments.id"
        " WHERE jobs.id = ?", (job_id,))
    # SQLite's JSON column comes back as text, PostgreSQL's as the decoded list.
    return json.loads(frames) if isinstance(frames, str) else frames


def cvat_uniform(count: int, seed: int) -> list[int]:
    rng = np.random.Generator(np.random.MT19937(seed=seed))
    return sorted(rng.choice(ABS, size=count, shuffle=False, replace=False).tolist())


def cvat_per_job(segments: list[tuple[int, int]], count: int, overlap: int,
                 seed: int) -> list[int]:
    """CVAT's random_per_job loop over task-relative segment frames, then absolute."""
    rng = np.random.Generator(np.random.MT19937(seed=seed))
    frames: list[int] = []
    for start, stop in segments:
        segment_frames = set(range(start, stop + 1))
        selected = segment_frames.intersection(frames)
        missing = min(len(segment_frames), count) - len(selected)
        if missing <= 0:
            continue
        selectable = set(sorted(segment_frames)[overlap * (start != 0):]).difference(selected)
        frames.extend(rng.choice(tuple(selectable), size=missing, replace=False).tolist())
    return sorted(ABS[f] for f in frames)


# Creation ---------------------------------------------------------------------------------


def test_random_uniform_picks_cvats_frames(server: LiveServer, setup: Setup,
                                           owner_client: Client) -> None:
    task = new_task(owner_client, setup)
    job = create_gt(owner_client, task.id, frame_selection_method="random_uniform",
                    frame_count=4, random_seed=42)
    expected = cvat_uniform(4, 42)
    assert included(server, setup.owner, job["id"]) == expected
    assert stored_frames(server, job["id"]) == expected  # absolute numbers in the segment
    assert job["type"] == "ground_truth" and job["task_id"] == task.id
    assert (job["start_frame"], job["stop_frame"], job["frame_count"]) == (0, SIZE - 1, 4)
    assert job["data_compressed_chunk_type"] == "imageset"
    assert (job["stage"], job["state"], job["status"]) == ("annotation", "new", "annotation")
    assert job["parent_job_id"] is None and job["replicas_count"] == 0
    assert task.fetch().validation_mode == "gt"
    assert job["id"] in [j.id for j in task.get_jobs()]

    # Deleted and created again with the same seed: the same frames.
    owner_client.api_client.jobs_api.destroy(job["id"])
    again = create_gt(owner_client, task.id, frame_selection_method="random_uniform",
                      frame_count=4, random_seed=42)
    assert included(server, setup.owner, again["id"]) == expected


def test_random_uniform_share(server: LiveServer, setup: Setup,
                              owner_client: Client) -> None:
    task = new_task(owner_client, setup)
    job = create_gt(owner_client, task.id, frame_selection_method="random_uniform",
                    frame_share=0.3, random_seed=7)
    assert included(server, setup.owner, job["id"]) == cvat_uniform(4, 7)  # int(0.3 * 15)
    everything = new_task(owner_client, setup)
    job = create_gt(owner_client, everything.id, frame_selection_method="random_uniform",
                    frame_count=SIZE)
    assert included(server, setup.owner, job["id"]) == ABS


def _segments(task: Any) -> list[tuple[int, int]]:
    jobs = sorted((j for j in task.get_jobs() if j.type == "annotation"), key=lambda j: j.id)
    return [(j.start_frame, j.stop_frame) for j in jobs]


def test_random_per_job(server: LiveServer, setup: Setup, owner_client: Client) -> None:
    task = new_task(owner_client, setup)
    segments = _segments(task)
    assert segments == [(0, 4), (4, 8), (8, 12), (12, 14)]
    job = create_gt(owner_client, task.id, frame_selection_method="random_per_job",
                    frames_per_job_count=2, random_seed=3)
    frames = included(server, setup.owner, job["id"])
    assert frames == cvat_per_job(segments, 2, 1, 3)
    rel = [ABS.index(f) for f in frames]
    for start, stop in segments:
        assert sum(start <= f <= stop for f in rel) >= 2
    task2 = new_task(owner_client, setup)
    job2 = create_gt(owner_client, task2.id, frame_selection_method="random_per_job",
                     frames_per_job_share=0.5, random_seed=11)
    # min(max(1, int(0.5 * 5)), 15) = 2 frames per job
    assert included(server, setup.owner, job2["id"]) == cvat_per_job(segments, 2, 1, 11)


def test_manual_frames_are_task_relative(server: LiveServer, setup: Setup,
                                         owner_client: Client) -> None:
    task = new_task(owner_client, setup)
    job = create_gt(owner_client, task.id, frame_selection_method="manual",
                    frames=[7, 0, 14])
    assert included(server, setup.owner, job["id"]) == [ABS[0], ABS[7], ABS[14]]
    assert job["frame_count"] == 3
    # The job's media follow its frames: a chunk and a frame can be fetched.
    chunk = raw(server, setup.owner, "GET",
                f"/api/jobs/{job['id']}/data?type=chunk&index=0&quality=compressed")
    assert chunk.status == 200 and chunk.raw[:2] == b"PK"


def test_assignee_stage_and_state_on_creation(server: LiveServer, setup: Setup,
                                              owner_client: Client) -> None:
    task = new_task(owner_client, setup)
    reply = raw(server, setup.owner, "POST", "/api/jobs", {
        "type": "ground_truth", "task_id": task.id, "frame_selection_method": "manual",
        "frames": [1], "assignee": setup.job_assignee.id, "stage": "validation",
        "state": "in progress"})
    assert reply.status == 201, reply.raw
    job = reply.json
    # The 201 body is what a later GET says.
    assert raw(server, setup.owner, "GET", f"/api/jobs/{job['id']}").json == job
    assert job["assignee"]["id"] == setup.job_assignee.id
    assert job["assignee_updated_date"] is not None
    assert (job["stage"], job["state"], job["status"]) == (
        "validation", "in progress", "validation")


def test_one_ground_truth_job_per_task(server: LiveServer, setup: Setup,
                                       owner_client: Client) -> None:
    task = new_task(owner_client, setup)
    body = {"type": "ground_truth", "task_id": task.id,
            "frame_selection_method": "manual", "frames": [2]}
    replies: list[Any] = []

    def post() -> None:
        replies.append(raw(server, setup.owner, "POST", "/api/jobs", body))

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status for r in replies)
    assert statuses == [201, 400, 400, 400], [r.raw for r in replies]
    assert all(r.json == ['Task with validation mode "gt" cannot have more than 1 GT job']
               for r in replies if r.status == 400)
    assert sum(j.type == "ground_truth" for j in task.get_jobs()) == 1


# Validation -------------------------------------------------------------------------------

UNIFORM = {"frame_selection_method": "random_uniform"}
PER_JOB = {"frame_selection_method": "random_per_job"}
MANUAL = {"frame_selection_method": "manual"}


@pytest.fixture(scope="module")
def plain_task(server: LiveServer, setup: Setup) -> Any:
    """A 15-frame task that never gets a GT job (every request on it fails)."""
    with client_for(server, setup.owner) as client:
        return new_task(client, setup)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"type": "annotation", **MANUAL, "frames": [1]}, ["Unexpected job type 'annotation'"]),
        ({"type": "consensus_replica", **MANUAL, "frames": [1]},
         ["Unexpected job type 'consensus_replica'"]),
        ({"type": "bogus"}, {"type": ['"bogus" is not a valid choice.']}),
        ({"task_id": None}, {"task_id": ["This field may not be null."]}),
        ({}, {"frame_selection_method": ["This field is required."]}),
        ({"frame_selection_method": "best"},
         {"frame_selection_method": ['"best" is not a valid choice.']}),
        (UNIFORM, {"non_field_errors": [
            'One of the fields "frame_count", "frame_share" required']}),
        ({**UNIFORM, "frame_count": 2, "frame_share": 0.5}, {"non_field_errors": [
            'Only 1 of the fields "frame_count", "frame_share" can be used']}),
        ({**UNIFORM, "frame_count": 0},
         {"frame_count": ["Ensure this value is greater than or equal to 1."]}),
        ({**UNIFORM, "frame_count": "many"}, {"frame_count": ["A valid integer is required."]}),
        ({**UNIFORM, "frame_count": 99}, ["The number of frames requested (99) must not be "
                                          "greater than the number of the task frames (15)"]),
        ({**UNIFORM, "frame_share": 1.5}, {"frame_share": ["Value must be in the range [0; 1]"]}),
        ({**UNIFORM, "frame_share": "x"}, {"frame_share": ["A valid number is required."]}),
        ({**UNIFORM, "frame_share": 0}, ["The number of validation frames is not specified"]),
        ({**UNIFORM, "frame_count": 1, "random_seed": -1},
         {"random_seed": ["Ensure this value is greater than or equal to 0."]}),
        ({**UNIFORM, "frame_count": 1, "frames_per_job_count": 1},
         ['Fields "frames_per_job_count" specified, but not used.']),
        (PER_JOB, {"non_field_errors": [
            'One of the fields "frames_per_job_count", "frames_per_job_share" required']}),
        ({**PER_JOB, "frames_per_job_count": 1, "frames_per_job_share": 0.1},
         {"non_field_errors": ['Only 1 of the fields "frames_per_job_count", '
                               '"frames_per_job_share" can be used']}),
        ({**PER_JOB, "frames_per_job_count": 99}, [
            "The number of frames requested (99) must be not be greater than the segment "
            "size (5)"]),
        # The last job [12, 14] has 2 frames besides its overlap frame, and with this seed
        # the previous job does not pick that overlap frame: CVAT fails with a 500.
        ({**PER_JOB, "frames_per_job_count": 3, "random_seed": 0}, [
            "Cannot select 3 frames from the job with frames [12, 14]: only 2 frames can be "
            "used"]),
        ({**PER_JOB, "frames_per_job_share": -0.1},
         {"frames_per_job_share": ["Value must be in the range [0; 1]"]}),
        (MANUAL, {"non_field_errors": ['The "frames" field is required']}),
        ({**UNIFORM, "frame_count": 1, "frames": [1]}, {"non_field_errors": [
            '"frames" can only be used when "frame_selection_method" is "manual"']}),
        ({**MANUAL, "frames": []}, {"frames": ["This list may not be empty."]}),
        ({**MANUAL, "frames": 3}, {"frames": ['Expected a list of items but got type "int".']}),
        ({**MANUAL, "frames": [1, -1, "a"]}, {"frames": {
            "1": ["Ensure this value is greater than or equal to 0."],
            "2": ["A valid integer is required."]}}),
        ({**MANUAL, "frames": [3, 1, 3]}, ["Frames must not repeat"]),
        ({**MANUAL, "frames": [0, 15, 99]},
         ["The following frames do not exist in the task: 15, 99"]),
        ({**MANUAL, "frames": list(range(15, 27))},
         ["The following frames do not exist in the task: 15, 16, 17, 18, 19, 20, 21, 22, "
          "23, 24 (and 2 more)"]),
        ({**MANUAL, "frames": [1], "random_seed": 5},
         ['Fields "random_seed" specified, but not used.']),
        ({**MANUAL, "frames": [1], "assignee": 987654321},
         {"assignee": ["The specified user #987654321 does not exist."]}),
        ({**MANUAL, "frames": [1], "stage": "done"}, {"stage": ['"done" is not a valid choice.']}),
    ],
)
def test_creation_errors(server: LiveServer, setup: Setup, plain_task: Any,
                         body: dict[str, Any], error: Any) -> None:
    request = {"type": "ground_truth", "task_id": plain_task.id, **body}
    reply = raw(server, setup.owner, "POST", "/api/jobs", request)
    assert reply.status == 400, reply.raw
    assert reply.json == error


def test_creation_errors_outside_the_body_fields(server: LiveServer, setup: Setup) -> None:
    manual = {"type": "ground_truth", **MANUAL, "frames": [0]}
    missing = raw(server, setup.owner, "POST", "/api/jobs", {**manual, "task_id": 987654321})
    assert (missing.status, missing.json) == (400, ["Task matching query does not exist."])
    required = raw(server, setup.owner, "POST", "/api/jobs", {"type": "ground_truth"})
    assert required.json == {"task_id": ["This field is required."]}
    not_object = raw(server, setup.owner, "POST", "/api/jobs", [manual])
    assert not_object.status == 400
    empty = raw(server, setup.owner, "POST", "/api/tasks", {"name": "no data"}).json
    no_data = raw(server, setup.owner, "POST", "/api/jobs", {**manual, "task_id": empty["id"]})
    assert no_data.json == [
        "This task has no data attached yet. Please set up task data and try again"]


def test_the_sdk_refuses_bad_types_before_sending(setup: Setup, owner_client: Client,
                                                  plain_task: Any) -> None:
    """Why the 400s above are tested over raw HTTP: the SDK checks its enums first."""
    with pytest.raises(Exception, match="must be one of"):
        models.JobWriteRequest(type="bogus", task_id=plain_task.id)
    with pytest.raises(ApiException) as info:
        owner_client.api_client.jobs_api.create(
            gt_request(plain_task.id, frame_selection_method="manual", frames=[1, 1]))
    assert info.value.status == 400


# Who may create and delete ----------------------------------------------------------------


def test_only_the_owner_or_a_superuser_creates(server: LiveServer, setup: Setup,
                                               owner_client: Client) -> None:
    task = new_task(owner_client, setup)
    task.update({"assignee_id": setup.task_assignee.id})
    job = sorted(task.get_jobs(), key=lambda j: j.id)[0]
    job.update({"assignee": setup.job_assignee.id})
    body = {"type": "ground_truth", "task_id": task.id, **MANUAL, "frames": [0]}
    for account in (setup.task_assignee, setup.job_assignee, setup.stranger):
        reply = raw(server, account, "POST", "/api/jobs", body)
        assert (reply.status, reply.json) == (
            403, {"detail": "You do not have permission to perform this action."})
    assert raw(server, None, "POST", "/api/jobs", body).status == 401
    created = raw(server, admin_account(server), "POST", "/api/jobs", body)
    assert created.status == 201
    assert created.headers["Location"] == created.json["url"]


def test_delete(server: LiveServer, setup: Setup, owner_client: Client) -> None:
    task = new_task(owner_client, setup)
    task.update({"assignee_id": setup.task_assignee.id})
    gt = create_gt(owner_client, task.id, frame_selection_method="manual", frames=[0, 5],
                   assignee=setup.job_assignee.id)
    annotation_job = next(j for j in task.get_jobs() if j.type == "annotation")
    jobs_before = task.fetch().jobs.count

    wrong = raw(server, setup.owner, "DELETE", f"/api/jobs/{annotation_job.id}")
    assert (wrong.status, wrong.json) == (400, ["Only ground truth jobs can be removed"])
    for account in (setup.task_assignee, setup.job_assignee):
        assert raw(server, account, "DELETE", f"/api/jobs/{gt['id']}").status == 403
    assert raw(server, setup.stranger, "DELETE", f"/api/jobs/{gt['id']}").status == 404
    assert raw(server, None, "DELETE", f"/api/jobs/{gt['id']}").status == 401

    _, response = owner_client.api_client.jobs_api.destroy(gt["id"])
    assert response.status == 204
    assert raw(server, setup.owner, "GET", f"/api/jobs/{gt['id']}").status == 404
    assert raw(server, setup.owner, "DELETE", f"/api/jobs/{gt['id']}").status == 404
    task.fetch()
    assert task.validation_mode is None and task.jobs.count == jobs_before - 1
    from conftest import db_rows

    left = db_rows(server, "SELECT count(*) FROM segments WHERE task_id = ? AND type = ?",
                   (task.id, "specific_frames"))
    assert left == [(0,)]
    # A new GT job may be created once the old one is gone.
    create_gt(owner_client, task.id, frame_selection_method="manual", frames=[3])


def test_superuser_deletes(server: LiveServer, setup: Setup, owner_client: Client) -> None:
    task = new_task(owner_client, setup)
    gt = create_gt(owner_client, task.id, frame_selection_method="manual", frames=[1])
    assert raw(server, admin_account(server), "DELETE", f"/api/jobs/{gt['id']}").status == 204


def test_deleting_a_ground_truth_job_deletes_its_annotations(
    server: LiveServer, setup: Setup, owner_client: Client
) -> None:
    task = new_task(owner_client, setup)
    gt = create_gt(owner_client, task.id, frame_selection_method="manual", frames=[0, 4])
    probe = raw(server, setup.owner, "GET", f"/api/jobs/{gt['id']}/annotations/")
    if probe.status in (404, 405) and "version" not in (probe.json or {}):
        pytest.skip("the annotations endpoints are not there yet (another helper's work)")
    label_id = task.get_labels()[0].id
    shape = {"type": "rectangle", "label_id": label_id, "frame": 4,
             "points": [1.0, 2.0, 10.0, 12.0]}
    put = raw(server, setup.owner, "PUT", f"/api/jobs/{gt['id']}/annotations/",
              {"shapes": [shape], "tags": [{"label_id": label_id, "frame": 0}]})
    assert put.status == 200, put.raw
    assert len(raw(server, setup.owner, "GET", f"/api/jobs/{gt['id']}/annotations/"
                   ).json["shapes"]) == 1
    owner_client.api_client.jobs_api.destroy(gt["id"])
    import sqlalchemy as sa
    from conftest import db_rows, sync_engine

    inspector = sa.inspect(sync_engine(server.database_url))
    for table in inspector.get_table_names():
        columns = [c["name"] for c in inspector.get_columns(table)]
        if "job_id" in columns and table != "requests":
            count = db_rows(server, f"SELECT count(*) FROM {table} WHERE job_id = ?",
                            (gt["id"],))
            assert count == [(0,)], table


def test_unauthenticated_requests_are_401(server: LiveServer) -> None:
    assert call(server, "POST", "/api/jobs", body={}).status == 401
    assert call(server, "PATCH", "/api/jobs/1", body={}).status == 401
    assert call(server, "DELETE", "/api/jobs/1").status == 401
