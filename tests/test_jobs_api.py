"""The Jobs API against the real server and the real cvat-sdk 2.80: lists (pages, sort,
simple filters, search, JSON-Logic and the SDK's keyword lookups), JobRead, and PATCH.

One owner (a fresh, non-admin user) creates two tasks from generated images: ``big``
(14 frames in jobs of 3: 5 jobs) and ``replicated`` (6 frames in jobs of 2, with 2
consensus replicas each: 3 + 6 jobs).  The owner sees exactly these 14 jobs, so list
results can be compared with an expectation computed here from the JobRead objects.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
from authutil import Reply, basic, call, register, unique
from cvat_sdk import Client, make_client
from cvat_sdk.core.filters import F
from mediaapi import images

if TYPE_CHECKING:  # conftest is not importable when another conftest.py shadows it
    from conftest import LiveServer

PASSWORD = "pass-Word-123"


# Helpers shared with test_gt_jobs.py and test_permissions.py ------------------------------


@dataclass
class Account:
    name: str
    password: str
    id: int

    @property
    def auth(self) -> dict[str, str]:
        return basic(self.name, self.password)


def new_account(server: LiveServer, prefix: str = "u") -> Account:
    name = unique(prefix)
    reply = register(server, name, PASSWORD)
    assert reply.status == 201, reply.raw
    me = call(server, "GET", "/api/users/self", headers=basic(name, PASSWORD)).json
    return Account(name, PASSWORD, me["id"])


def admin_account(server: LiveServer) -> Account:
    me = call(server, "GET", "/api/users/self",
              headers=basic(server.admin_user, server.admin_password)).json
    return Account(server.admin_user, server.admin_password, me["id"])


def client_for(server: LiveServer, account: Account) -> Client:
    client = make_client(f"http://{server.host}", port=server.port,
                         credentials=(account.name, account.password))
    client.config.status_check_period = 0.05
    return client


def create_task(client: Client, folder: Path, frames: int, *, name: str | None = None,
                **spec: Any) -> Any:
    """A task of ``frames`` generated 64x48 PNGs, created through the SDK's upload."""
    data_params = {"image_quality": 80}
    for key in ("start_frame", "stop_frame", "frame_step", "chunk_size"):
        if key in spec:
            data_params[key] = spec.pop(key)
    files = images(folder, frames)
    return client.tasks.create_from_data(
        spec={"name": name or unique("jobs-"), "labels": [{"name": "car"}], **spec},
        resources=files, data_params=data_params)


def raw(server: LiveServer, account: Account | None, method: str, path: str,
        body: Any = None, headers: dict[str, str] | None = None) -> Reply:
    auth = account.auth if account is not None else {}
    return call(server, method, path, body=body, headers={**auth, **(headers or {})})


def logic(rule: Any) -> str:
    return "filter=" + quote(json.dumps(rule))


# Fixtures ---------------------------------------------------------------------------------


@dataclass
class World:
    owner: Account
    worker: Account
    big: Any
    replicated: Any
    jobs: dict[int, dict[str, Any]]


@pytest.fixture(scope="module")
def world(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    owner, worker = new_account(server, "owner"), new_account(server, "worker")
    folder = tmp_path_factory.mktemp("jobs-api")
    with client_for(server, owner) as client:
        big = create_task(client, folder / "big", 14, name=unique("Big-Task-"),
                          segment_size=3)
        replicated = create_task(client, folder / "rep", 6, name=unique("replicated-"),
                                 segment_size=2, consensus_replicas=2)
        big_jobs = sorted(big.get_jobs(), key=lambda j: j.id)
        # Give the jobs distinct assignees, stages and states through the SDK's update.
        big_jobs[0].update({"assignee": worker.id})
        big_jobs[1].update({"stage": "validation", "state": "in progress"})
        big_jobs[2].update({"stage": "acceptance", "state": "completed",
                            "assignee": owner.id})
        big_jobs[3].update({"state": "rejected"})
        listed = raw(server, owner, "GET", "/api/jobs?page_size=all").json["results"]
        yield World(owner, worker, big, replicated, {j["id"]: j for j in listed})


def ids(server: LiveServer, account: Account, query: str) -> list[int]:
    reply = raw(server, account, "GET", "/api/jobs?page_size=all&" + query)
    assert reply.status == 200, (query, reply.raw)
    return [j["id"] for j in reply.json["results"]]


def everything(world: World) -> list[int]:
    return sorted(world.jobs, reverse=True)


# Lists ------------------------------------------------------------------------------------


def test_the_owner_sees_exactly_their_jobs(world: World) -> None:
    jobs = world.jobs.values()
    assert len(world.jobs) == 14
    assert sum(j["task_id"] == world.big.id for j in jobs) == 5
    replicas = [j for j in jobs if j["type"] == "consensus_replica"]
    parents = {j["id"]: j for j in jobs if j["task_id"] == world.replicated.id
               and j["type"] == "annotation"}
    assert len(replicas) == 6 and len(parents) == 3
    for parent in parents.values():
        children = [r for r in replicas if r["parent_job_id"] == parent["id"]]
        assert len(children) == 2
        assert parent["replicas_count"] == 2 and parent["consensus_replicas"] == 2
        for child in children:
            assert (child["start_frame"], child["stop_frame"]) == (
                parent["start_frame"], parent["stop_frame"])
            assert child["replicas_count"] == 0 and child["consensus_replicas"] == 0


def test_pages_default_order_and_the_sdk_loop(server: LiveServer, world: World) -> None:
    expected = everything(world)
    first = raw(server, world.owner, "GET", "/api/jobs").json
    assert first["count"] == 14 and len(first["results"]) == 10  # default page size
    assert [j["id"] for j in first["results"]] == expected[:10]  # default order -id
    assert first["previous"] is None and "page=2" in first["next"]
    second = raw(server, world.owner, "GET", "/api/jobs?page=2").json
    assert [j["id"] for j in second["results"]] == expected[10:]
    assert second["next"] is None and second["previous"]
    assert raw(server, world.owner, "GET", "/api/jobs?page=3").status == 404
    assert raw(server, world.owner, "GET", "/api/jobs?page=0").status == 404
    assert ids(server, world.owner, "") == expected  # page_size=all
    bad_size = raw(server, world.owner, "GET", "/api/jobs?page_size=abc").json
    assert len(bad_size["results"]) == 10
    with client_for(server, world.owner) as client:
        # The SDK follows ``next`` page by page until it is null.
        assert [j.id for j in client.jobs.list(page_size=3)] == expected
        assert [j.id for j in client.jobs.list()] == expected
        assert sorted(j.id for j in world.big.get_jobs()) == sorted(
            i for i, j in world.jobs.items() if j["task_id"] == world.big.id)


SORT_KEYS = {
    "id": lambda j: j["id"],
    "task_id": lambda j: j["task_id"],
    "task_name": lambda j: j["task_name"],
    "project_id": lambda j: j["project_id"],
    "project_name": lambda j: j["project_name"],
    "assignee": lambda j: j["assignee"]["username"] if j["assignee"] else None,
    "state": lambda j: j["state"],
    "stage": lambda j: j["stage"],
    "type": lambda j: j["type"],
    "parent_job_id": lambda j: j["parent_job_id"],
    "updated_date": lambda j: dt.datetime.fromisoformat(j["updated_date"].replace("Z", "+00:00")),
    "dimension": lambda j: j["dimension"],
    "mode": lambda j: j["mode"],
    "media_type": lambda j: j["media_type"],
}


def _sorted(jobs: list[dict[str, Any]], field: str, desc: bool) -> list[int]:
    """CVAT's order on PostgreSQL: nulls last ascending, first descending; ties by -id."""
    key = SORT_KEYS[field]
    present = [j for j in jobs if key(j) is not None]
    nulls = sorted((j for j in jobs if key(j) is None), key=lambda j: -j["id"])
    if desc:
        ordered = sorted(present, key=lambda j: (key(j), j["id"]), reverse=True)
        return [j["id"] for j in nulls + ordered]
    ordered = sorted(present, key=lambda j: (key(j), -j["id"]))
    return [j["id"] for j in ordered + nulls]


@pytest.mark.parametrize("field", sorted(SORT_KEYS))
def test_sort_by_every_field(server: LiveServer, world: World, field: str) -> None:
    jobs = list(world.jobs.values())
    assert ids(server, world.owner, f"sort={field}") == _sorted(jobs, field, False)
    assert ids(server, world.owner, f"sort=-{field}") == _sorted(jobs, field, True)


def test_sort_by_several_fields(server: LiveServer, world: World) -> None:
    jobs = list(world.jobs.values())
    assert ids(server, world.owner, "sort=task_id,-id") == [
        j["id"] for j in sorted(jobs, key=lambda j: (j["task_id"], -j["id"]))]
    assert ids(server, world.owner, "sort=-stage,state,id") == [
        j["id"] for j in sorted(sorted(jobs, key=lambda j: (j["state"], j["id"])),
                                key=lambda j: j["stage"], reverse=True)]
    with client_for(server, world.owner) as client:
        assert [j.id for j in client.jobs.list(sort="type,id")] == [
            j["id"] for j in sorted(jobs, key=lambda j: (j["type"], j["id"]))]


@pytest.mark.parametrize(
    "field", ["task_id", "task_name", "assignee", "state", "stage", "type", "parent_job_id",
              "dimension", "mode", "media_type"])
def test_simple_filters(server: LiveServer, world: World, field: str) -> None:
    key = SORT_KEYS[field]
    values = {key(j) for j in world.jobs.values() if key(j) is not None}
    assert values
    for value in values:
        expected = [i for i in everything(world) if key(world.jobs[i]) == value]
        assert ids(server, world.owner, f"{field}={quote(str(value))}") == expected


def test_simple_filters_through_the_sdk(server: LiveServer, world: World) -> None:
    with client_for(server, world.owner) as client:
        replicas = [i for i in everything(world)
                    if world.jobs[i]["type"] == "consensus_replica"]
        # cvat-sdk 2.80's enum spells it "replica"; the server accepts both spellings.
        assert [j.id for j in client.jobs.list(type="replica")] == replicas
        assert [j.id for j in client.jobs.list(type__in=["replica"])] == replicas
        assert [j.id for j in client.jobs.list(
            filter=json.dumps({"==": [{"var": "type"}, "consensus_replica"]}))] == replicas
        assert [j.id for j in client.jobs.list(assignee=world.worker.name)] == [
            i for i in everything(world) if world.jobs[i]["assignee"]
            and world.jobs[i]["assignee"]["id"] == world.worker.id]
        assert client.jobs.list(project_id=1) == []
        assert client.jobs.list(task_name="no such task") == []


def test_search(server: LiveServer, world: World) -> None:
    big = [i for i in everything(world) if world.jobs[i]["task_id"] == world.big.id]
    # Case-insensitive, a part of the task name is enough.
    assert ids(server, world.owner, "search=" + quote(world.big.name[4:].upper())) == big
    assert ids(server, world.owner, "search=" + world.worker.name.upper()) == [
        i for i in big if world.jobs[i]["assignee"]
        and world.jobs[i]["assignee"]["username"] == world.worker.name]
    assert ids(server, world.owner, "search=PROGRESS") == [
        i for i in big if world.jobs[i]["state"] == "in progress"]
    assert ids(server, world.owner, "search=acceptance") == [
        i for i in big if world.jobs[i]["stage"] == "acceptance"]
    # Terms split on whitespace and commas; every term must match somewhere.
    assert ids(server, world.owner, "search=" + quote(f"big-task, {world.worker.name}")) == [
        i for i in big if world.jobs[i]["assignee"]
        and world.jobs[i]["assignee"]["username"] == world.worker.name]
    assert ids(server, world.owner, "search=zzz-nothing") == []
    with client_for(server, world.owner) as client:
        assert [j.id for j in client.jobs.list(search="REPLICATED")] == [
            i for i in everything(world) if world.jobs[i]["task_id"] == world.replicated.id]


def test_sdk_keyword_lookups_become_json_logic(server: LiveServer, world: World) -> None:
    every = everything(world)
    some = every[2:6]
    with client_for(server, world.owner) as client:

        def listed(**kw: Any) -> list[int]:
            return [j.id for j in client.jobs.list(**kw)]

        assert listed(id__in=some) == some
        assert listed(id__gt=every[3]) == every[:3]
        assert listed(id__gte=every[3], id__lt=every[0]) == every[1:4]
        assert listed(id__between=(every[5], every[2])) == every[2:6]
        assert listed(assignee__isset=True) == [
            i for i in every if world.jobs[i]["assignee"]]
        assert listed(assignee__isset=False) == [
            i for i in every if not world.jobs[i]["assignee"]]
        assert listed(parent_job_id__isset=True) == [
            i for i in every if world.jobs[i]["parent_job_id"]]
        assert listed(task_name__contains="BIG-task") == [
            i for i in every if world.jobs[i]["task_id"] == world.big.id]
        assert listed(state__ne="new") == [
            i for i in every if world.jobs[i]["state"] != "new"]
        assert listed(stage__in=["validation", "acceptance"], type="annotation") == [
            i for i in every if world.jobs[i]["stage"] != "annotation"]
        # A JSON-Logic string next to keyword lookups is AND-ed with them.
        assert listed(filter=json.dumps({"==": [{"var": "type"}, "annotation"]}),
                      task_id__in=[world.replicated.id]) == [
            i for i in every if world.jobs[i]["task_id"] == world.replicated.id
            and world.jobs[i]["type"] == "annotation"]
        # The SDK's field DSL produces the same language.
        expr = (F.task_id == world.big.id) & ~(F.state == "new") | (F.id == every[-1])
        assert listed(filter=expr) == [
            i for i in every
            if (world.jobs[i]["task_id"] == world.big.id and world.jobs[i]["state"] != "new")
            or i == every[-1]]


def test_json_logic_operators(server: LiveServer, world: World) -> None:
    every = everything(world)
    big = world.big.id

    def q(rule: Any) -> list[int]:
        return ids(server, world.owner, logic(rule))

    def where(pred: Any) -> list[int]:
        return [i for i in every if pred(world.jobs[i])]

    assert q({"or": [{"==": [{"var": "stage"}, "validation"]},
                     {"==": [{"var": "state"}, "rejected"]}]}) == where(
        lambda j: j["stage"] == "validation" or j["state"] == "rejected")
    assert q({"!!": {"var": "parent_job_id"}}) == where(lambda j: j["parent_job_id"])
    assert q({"!": {"var": "assignee"}}) == where(lambda j: not j["assignee"])
    assert q({"<": [{"var": "task_id"}, world.replicated.id]}) == where(
        lambda j: j["task_id"] < world.replicated.id)
    assert q({">=": [{"var": "id"}, every[1]]}) == every[:2]
    assert q({"<=": [{"var": "id"}, every[-2]]}) == every[-2:]
    assert q({"in": ["ACCEPT", {"var": "stage"}]}) == where(lambda j: j["stage"] == "acceptance")
    assert q({"in": [{"var": "task_id"}, [big]]}) == where(lambda j: j["task_id"] == big)
    assert q({"==": [{"var": "project_id"}, None]}) == every
    # Dates: everything was updated at or after the oldest job's creation.
    oldest = min(j["created_date"] for j in world.jobs.values())
    assert q({">=": [{"var": "updated_date"}, oldest]}) == every
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    assert q({">": [{"var": "updated_date"}, future]}) == []
    assert q({"<=": [oldest, {"var": "updated_date"}, future]}) == every


@pytest.mark.parametrize(
    ("query", "body"),
    [
        (logic({"==": [{"var": "nope"}, 1]}), ["filter: term 'nope' is not supported"]),
        (logic({"!=": [{"var": "id"}, 1]}),
         ['filter: != operation with [{"var": "id"}, 1] arguments is not implemented']),
        ("filter=", ["filter shouldn't be empty"]),
        (logic({"==": [{"var": "task_id"}, "abc"]}),
         ["filter: \"abc\" is not a valid value for 'task_id'"]),
        ("sort=nope", None),
        ("task_id=abc", {"task_id": ["Invalid value: 'abc'."]}),
        ("parent_job_id=1.5", {"parent_job_id": ["Invalid value: '1.5'."]}),
    ],
)
def test_bad_list_parameters_are_400(server: LiveServer, world: World, query: str,
                                     body: Any) -> None:
    reply = raw(server, world.owner, "GET", "/api/jobs?" + query)
    assert reply.status == 400
    if body is not None:
        assert reply.json == body
    else:
        assert "sort" in reply.json


def test_bad_json_filter_is_400(server: LiveServer, world: World) -> None:
    reply = raw(server, world.owner, "GET", "/api/jobs?filter=" + quote("{oops"))
    assert reply.status == 400
    assert reply.json[0].startswith("filter: can't parse filter expression:")


def test_organization_parameters_are_ignored(server: LiveServer, world: World) -> None:
    every = everything(world)
    assert ids(server, world.owner, "org=") == every
    assert ids(server, world.owner, "org=some-org") == every
    assert ids(server, world.owner, "org_id=7") == every
    reply = raw(server, world.owner, "GET", "/api/jobs?page_size=all",
                headers={"X-Organization": "some-org"})
    assert [j["id"] for j in reply.json["results"]] == every
    with client_for(server, world.owner) as client:
        assert [j.id for j in client.jobs.list(org="")] == every


# JobRead ----------------------------------------------------------------------------------

JOB_READ_TYPES: dict[str, Any] = {
    "url": str, "id": int, "task_id": int, "task_name": (str, type(None)),
    "project_id": (int, type(None)), "project_name": (str, type(None)),
    "assignee": (dict, type(None)), "guide_id": (int, type(None)), "dimension": str,
    "mode": str, "media_type": str, "bug_tracker": (str, type(None)), "status": str,
    "stage": str, "state": str, "frame_count": int, "start_frame": int, "stop_frame": int,
    "data_chunk_size": (int, type(None)), "data_compressed_chunk_type": str,
    "data_original_chunk_type": str, "created_date": str, "updated_date": str,
    "issues": dict, "labels": dict, "type": str, "organization": (int, type(None)),
    "target_storage": (dict, type(None)), "source_storage": (dict, type(None)),
    "assignee_updated_date": (str, type(None)), "parent_job_id": (int, type(None)),
    "replicas_count": int, "consensus_replicas": int,
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def test_job_read_has_every_field_with_its_json_type(server: LiveServer, world: World) -> None:
    for job in world.jobs.values():
        assert set(job) == set(JOB_READ_TYPES)
        for key, kind in JOB_READ_TYPES.items():
            assert isinstance(job[key], kind), (key, job[key])
            if kind is int:
                assert _is_int(job[key]), key
        assert job["url"] == f"{server.url}/api/jobs/{job['id']}"
        assert job["issues"] == {"url": f"{server.url}/api/issues?job_id={job['id']}",
                                 "count": 0}
        assert job["labels"] == {"url": f"{server.url}/api/labels?job_id={job['id']}"}
        for key in ("created_date", "updated_date", "assignee_updated_date"):
            if job[key] is not None:
                assert dt.datetime.fromisoformat(job[key].replace("Z", "+00:00")).tzinfo
        assert job["status"] == {"annotation": "annotation"}.get(
            job["stage"], "completed" if (job["stage"], job["state"]) == (
                "acceptance", "completed") else "validation")
        assert (job["dimension"], job["media_type"], job["mode"]) == ("2d", "image",
                                                                      "annotation")
        assert job["data_compressed_chunk_type"] == "imageset"
        assert job["frame_count"] == job["stop_frame"] - job["start_frame"] + 1
    assigned = [j for j in world.jobs.values() if j["assignee"]]
    for job in assigned:
        assert set(job["assignee"]) == {"url", "id", "username", "first_name", "last_name"}
        assert job["assignee"]["url"] == f"{server.url}/api/users/{job['assignee']['id']}"
        assert job["assignee_updated_date"] is not None
    with client_for(server, world.owner) as client:
        for job_id in world.jobs:
            assert client.jobs.retrieve(job_id).id == job_id  # the SDK's strict parser


def test_unknown_job_is_404(server: LiveServer, world: World) -> None:
    reply = raw(server, world.owner, "GET", "/api/jobs/99999999")
    assert reply.status == 404 and reply.json == {"detail": "Not found."}
    for path in ("/api/jobs/99999999999999999999999", "/api/jobs/0", "/api/jobs/x"):
        assert raw(server, world.owner, "GET", path).status == 404


# PATCH ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_owner(server: LiveServer) -> Account:
    """Owns the tasks PATCH tests change, so the world's lists stay as they were."""
    return new_account(server, "owner2")


@pytest.fixture
def fresh(server: LiveServer, other_owner: Account,
          tmp_path: Path) -> Iterator[tuple[Client, Any]]:
    """A new 4-frame task (2 jobs) of ``other_owner``'s, with their SDK client."""
    with client_for(server, other_owner) as client:
        task = create_task(client, tmp_path, 4, segment_size=2)
        yield client, task


def test_stage_change_resets_state_and_derives_status(fresh: tuple[Client, Any]) -> None:
    _, task = fresh
    job = sorted(task.get_jobs(), key=lambda j: j.id)[0]
    job.update({"state": "in progress"})
    assert (job.stage, job.state, job.status) == ("annotation", "in progress", "annotation")
    job.update({"stage": "validation"})  # a new stage without a state: state is "new"
    assert (job.stage, job.state, job.status) == ("validation", "new", "validation")
    job.update({"stage": "validation", "state": "in progress"})
    job.update({"stage": "validation"})  # the same stage keeps the state
    assert job.state == "in progress"
    job.update({"stage": "acceptance", "state": "completed"})
    assert job.status == "completed"
    job.update({"state": "rejected"})
    assert (job.stage, job.state, job.status) == ("acceptance", "rejected", "validation")
    job.update({"stage": "annotation", "state": "completed"})
    assert job.status == "annotation"


def test_task_status_follows_its_jobs(fresh: tuple[Client, Any]) -> None:
    _, task = fresh
    jobs = task.get_jobs()
    for job in jobs:
        job.update({"stage": "acceptance", "state": "completed"})
    task.fetch()
    assert task.status == "completed"
    assert task.jobs.completed == len(jobs)
    jobs[0].update({"stage": "validation"})
    assert task.fetch().status == "validation"


def test_assignee_and_dates(server: LiveServer, world: World, other_owner: Account,
                            fresh: tuple[Client, Any]) -> None:
    _, task = fresh
    job = task.get_jobs()[0]
    assert job.assignee is None and job.assignee_updated_date is None
    before = job.updated_date
    job.update({"assignee": world.worker.id})
    assert job.assignee.id == world.worker.id
    assert job.assignee.username == world.worker.name
    first = job.assignee_updated_date
    assert first is not None and job.updated_date > before
    job.update({"state": "in progress"})  # not a reassignment: the date stays
    assert job.assignee_updated_date == first
    job.update({"assignee": None})
    assert job.assignee is None and job.assignee_updated_date > first
    # An empty PATCH still saves the job, as Django's auto_now does.
    stamp = job.updated_date
    reply = raw(server, other_owner, "PATCH", f"/api/jobs/{job.id}", {})
    assert reply.status == 200
    assert job.fetch().updated_date > stamp


def test_write_once_and_unknown_fields_are_ignored(server: LiveServer, world: World,
                                                   other_owner: Account,
                                                   fresh: tuple[Client, Any]) -> None:
    _, task = fresh
    job = task.get_jobs()[0]
    body = {"type": "ground_truth", "task_id": world.big.id, "frame_count": 1,
            "frame_selection_method": "manual", "frames": [0], "start_frame": 5,
            "whatever": 1, "state": "completed"}
    reply = raw(server, other_owner, "PATCH", f"/api/jobs/{job.id}", body)
    assert reply.status == 200, reply.raw
    assert (reply.json["type"], reply.json["task_id"]) == ("annotation", task.id)
    assert (reply.json["start_frame"], reply.json["state"]) == (job.start_frame, "completed")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"stage": "bogus"}, {"stage": ['"bogus" is not a valid choice.']}),
        ({"state": "done"}, {"state": ['"done" is not a valid choice.']}),
        ({"state": None}, {"state": ["This field may not be null."]}),
        ({"assignee": "me"}, {"assignee": ["A valid integer is required."]}),
        ({"assignee": 987654321},
         {"assignee": ["The specified user #987654321 does not exist."]}),
        ({"assignee": 2**70}, None),
        ([1, 2], {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
    ],
)
def test_bad_patch_values_are_400(server: LiveServer, world: World, body: Any,
                                  error: Any) -> None:
    job_id = min(world.jobs)
    reply = raw(server, world.owner, "PATCH", f"/api/jobs/{job_id}", body)
    assert reply.status == 400, reply.raw
    if error is not None:
        assert reply.json == error
    after = raw(server, world.owner, "GET", f"/api/jobs/{job_id}").json
    assert after["stage"] == world.jobs[job_id]["stage"]


def test_malformed_json_is_400(server: LiveServer, world: World) -> None:
    reply = call(server, "PATCH", f"/api/jobs/{min(world.jobs)}", raw_body=b"{nope",
                 headers={**world.owner.auth, "Content-Type": "application/json"})
    assert reply.status == 400 and "JSON parse error" in reply.json["detail"]
