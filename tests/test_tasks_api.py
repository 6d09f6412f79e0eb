"""``/api/tasks`` against the real server, with the real cvat-sdk and raw HTTP for the 400s."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
from authutil import basic, call, unique
from cvat_sdk import make_client, models
from cvat_sdk.api_client.exceptions import NotFoundException
from test_jobs_read import ADMIN, admin_call, attach_data, new_user

if TYPE_CHECKING:  # conftest is not importable when another conftest.py shadows it
    from conftest import LiveServer

TASK_READ_KEYS = {
    "url", "id", "name", "project_id", "project_name", "mode", "owner", "assignee",
    "bug_tracker", "created_date", "updated_date", "overlap", "segment_size", "status",
    "data_chunk_size", "data_original_chunk_type", "data_compressed_chunk_type",
    "data_cloud_storage_id", "guide_id", "size", "image_quality", "data", "dimension",
    "media_type", "subset", "organization_id", "organization", "target_storage",
    "source_storage", "jobs", "labels", "assignee_updated_date", "validation_mode",
    "consensus_enabled", "initial_replicas",
}


def client_for(server: LiveServer, credentials: tuple[str, str] = ADMIN):  # type: ignore[no-untyped-def]
    return make_client(f"http://{server.host}", port=server.port, credentials=credentials)


def create_raw(server: LiveServer, body: Any, auth: dict[str, str] | None = None) -> Any:
    return call(server, "POST", "/api/tasks", body=body, headers=auth or basic(*ADMIN))


def test_sdk_create_returns_a_complete_task_read(server: LiveServer) -> None:
    name = unique("sdk-task-")
    with client_for(server) as client:
        task = client.tasks.create(models.TaskWriteRequest(
            name=name,
            labels=[
                models.PatchedLabelRequest(name="car"),
                models.PatchedLabelRequest(name="person", color="#ff0000", attributes=[
                    models.AttributeRequest(name="age", mutable=False, input_type="number",
                                            values=["0", "100", "1"], default_value="30"),
                ]),
            ],
            segment_size=5,
            bug_tracker="https://bugs.example/1",
            subset="Train",
        ))
        assert task.name == name
        assert task.segment_size == 5 and task.overlap is None
        assert task.owner.username == "admin" and task.assignee is None
        assert task.subset == "Train" and task.bug_tracker == "https://bugs.example/1"
        assert isinstance(task.created_date, dt.datetime)
        assert task.jobs.count == 0 and task.jobs.completed == 0
        assert task.organization is None
        labels = task.get_labels()
        assert [lb.name for lb in labels] == ["car", "person"]

    raw = admin_call(server, "GET", f"/api/tasks/{task.id}").json
    assert set(raw) == TASK_READ_KEYS
    # Before media is attached: what CVAT reports for a task without data.
    assert raw["size"] == 0 and raw["data"] is None and raw["data_chunk_size"] is None
    assert raw["data_compressed_chunk_type"] is None
    assert raw["data_original_chunk_type"] is None
    assert raw["mode"] == "" and raw["dimension"] == "2d" and raw["status"] == "annotation"
    assert raw["jobs"]["url"] == f"{server.url}/api/jobs?task_id={task.id}"
    assert raw["labels"] == {"url": f"{server.url}/api/labels?task_id={task.id}"}
    assert raw["url"] == f"{server.url}/api/tasks/{task.id}"
    assert raw["validation_mode"] is None and raw["project_id"] is None


def test_task_read_after_data_is_attached(server: LiveServer) -> None:
    task = admin_call(server, "POST", "/api/tasks", {"name": unique("t-"), "segment_size": 3})
    attach_data(server, task.json["id"], size=7, segment_size=3, chunk_size=5)
    with client_for(server) as client:
        sdk_task = client.tasks.retrieve(task.json["id"])
        assert sdk_task.size == 7 and sdk_task.image_quality == 70
        assert sdk_task.data_chunk_size == 5
        assert sdk_task.data_original_chunk_type == "imageset"
        assert sdk_task.data_compressed_chunk_type == "imageset"
        assert sdk_task.mode == "annotation" and sdk_task.media_type == "image"
        assert isinstance(sdk_task.data, int)
        assert sdk_task.jobs.count == 3


def test_list_pages_through_a_users_tasks(server: LiveServer) -> None:
    name, password, _ = new_user(server)
    auth = basic(name, password)
    ids = [create_raw(server, {"name": f"mine-{i}"}, auth).json["id"] for i in range(5)]
    with client_for(server, (name, password)) as client:
        listed = client.tasks.list(page_size=2)
        assert [t.id for t in listed] == sorted(ids, reverse=True)
        assert [t.id for t in client.tasks.list(page_size=2, sort="id")] == ids
        assert [t.id for t in client.tasks.list(name="mine-3")] == [ids[3]]
        assert [t.id for t in client.tasks.list(search="MINE-1")] == [ids[1]]
        assert [t.id for t in client.tasks.list(owner=name, sort="-name", page_size=3)] == \
            sorted(ids, reverse=True)

    page = call(server, "GET", "/api/tasks?page_size=2&page=2", headers=auth).json
    assert page["count"] == 5 and len(page["results"]) == 2
    assert "page=3" in page["next"]
    assert "page=" not in page["previous"]
    assert call(server, "GET", "/api/tasks?page_size=2&page=4", headers=auth).status == 404


def test_list_filters_sort_and_json_logic(server: LiveServer) -> None:
    name, password, _ = new_user(server)
    auth = basic(name, password)
    a = create_raw(server, {"name": "alpha", "subset": "Train"}, auth).json
    b = create_raw(server, {"name": "beta", "subset": "Test"}, auth).json

    def ids(query: str) -> list[int]:
        reply = call(server, "GET", "/api/tasks?" + query, headers=auth)
        assert reply.status == 200, reply.raw
        return [t["id"] for t in reply.json["results"]]

    assert ids("subset=Test") == [b["id"]]
    assert ids("sort=subset") == [b["id"], a["id"]]
    assert ids("sort=-name") == [b["id"], a["id"]]
    assert ids("mode=") == [b["id"], a["id"]]
    assert ids("status=completed") == []
    assert ids("org=&project_id=1") == []
    assert ids("filter=" + quote('{"==":[{"var":"name"},"alpha"]}')) == [a["id"]]
    assert ids("filter=" + quote('{"in":["ET",{"var":"name"}]}')) == [b["id"]]
    assert ids("filter=" + quote('{"!":{"==":[{"var":"subset"},"Train"]}}')) == [b["id"]]
    def logic(rule: Any) -> str:
        return "filter=" + quote(json.dumps(rule))

    assert ids(logic({"or": [{"==": [{"var": "id"}, a["id"]]},
                             {">": [{"var": "id"}, b["id"]]}]})) == [a["id"]]
    assert ids(logic({">=": [{"var": "created_date"}, a["created_date"]]})) == [
        b["id"], a["id"]]
    assert ids(logic({">": [{"var": "created_date"}, b["created_date"]]})) == []

    for query in ("sort=bogus", "filter=" + quote('{"==":[{"var":"bogus"},1]}'),
                  "filter=" + quote("[1"), "filter=", "id=abc"):
        reply = call(server, "GET", "/api/tasks?" + query, headers=auth)
        assert reply.status == 400, query


def test_update_through_the_sdk(server: LiveServer) -> None:
    _, _, other_id = new_user(server)
    with client_for(server) as client:
        task = client.tasks.create(models.TaskWriteRequest(
            name=unique("upd-"), labels=[models.PatchedLabelRequest(name="car")],
            segment_size=4))
        created = task.updated_date
        task.update(models.PatchedTaskWriteRequest(
            name="renamed", bug_tracker="http://b", subset="Validation",
            assignee_id=other_id))
        assert task.name == "renamed" and task.subset == "Validation"
        assert task.bug_tracker == "http://b"
        assert task.assignee.id == other_id
        assert task.assignee_updated_date is not None
        assert task.updated_date > created
        # Write-once fields are ignored on update, as in CVAT.
        raw = admin_call(server, "PATCH", f"/api/tasks/{task.id}", {"segment_size": 9})
        assert raw.status == 200 and raw.json["segment_size"] == 4
        # Unassigning works and moves the assignee date again.
        before = task.fetch().assignee_updated_date
        task.update({"assignee_id": None})
        assert task.assignee is None and task.assignee_updated_date >= before


def test_remove_then_404_and_files_are_gone(server: LiveServer) -> None:
    with client_for(server) as client:
        task = client.tasks.create(models.TaskWriteRequest(name=unique("rm-")))
        media_dir = server.data_dir / "tasks" / str(task.id)
        upload_dir = server.data_dir / "uploads" / str(task.id)
        for d in (media_dir, upload_dir):
            (d / "raw").mkdir(parents=True)
            (d / "raw" / "x.bin").write_bytes(b"x")
        attach_data(server, task.id, size=4)
        task.remove()
        with pytest.raises(NotFoundException):
            client.tasks.retrieve(task.id)
        assert not media_dir.exists() and not upload_dir.exists()
        # cvat-cli's "task delete" tolerates 404s: the second delete must be a 404.
        assert admin_call(server, "DELETE", f"/api/tasks/{task.id}").status == 404
        assert admin_call(server, "GET", f"/api/jobs?task_id={task.id}").json["count"] == 0
        assert admin_call(server, "GET", f"/api/labels?task_id={task.id}").status == 404


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"name": "x", "labels": [{"name": "a"}, {"name": "a"}]},
         ["All label names must be unique"]),
        ({"name": "x", "consensus_replicas": 1},
         {"consensus_replicas": ["Consensus replicas must be 0 or a positive number more "
                                 "than 1 and less than 12, got 1"]}),
        ({"name": "x", "consensus_replicas": 12}, None),
        ({"name": "x", "segment_size": -1},
         {"segment_size": ["Ensure this value is greater than or equal to 0."]}),
        ({"name": "x", "segment_size": "many"},
         {"segment_size": ["A valid integer is required."]}),
        ({"name": "x", "segment_size": True}, {"segment_size": ["A valid integer is required."]}),
        ({"name": "x", "overlap": -2}, None),
        ({"labels": [{"name": "a"}]}, {"name": ["This field is required."]}),
        ({"name": ""}, {"name": ["This field may not be blank."]}),
        ({"name": None}, {"name": ["This field may not be null."]}),
        ({"name": "n" * 257}, {"name": ["Ensure this field has no more than 256 characters."]}),
        ({"name": "x", "project_id": 3}, ["The specified project #3 does not exist."]),
        ({"name": "x", "project_id": 3, "labels": [{"name": "a"}]},
         ["Task must have only one of Label set or project_id"]),
        ({"name": "x", "labels": [{"name": "a", "type": "bogus"}]},
         {"labels": [{"type": ['"bogus" is not a valid choice.']}]}),
        ({"name": "x", "labels": [{"name": "a"}, {"color": "#fff"}]},
         {"labels": [{}, {"name": ["This field is required."]}]}),
        ({"name": "x", "labels": "car"},
         {"labels": ['Expected a list of items but got type "str".']}),
        ({"name": "x", "labels": [{"name": "a", "attributes": [{"name": "q"}]}]},
         {"labels": [{"attributes": [{"mutable": ["This field is required."],
                                      "input_type": ["This field is required."],
                                      "values": ["This field is required."]}]}]}),
        ({"name": "x", "labels": [{"name": "a", "attributes": [
            {"name": "q", "mutable": True, "input_type": "text", "values": []},
            {"name": "q", "mutable": True, "input_type": "text", "values": []}]}]},
         ["Duplicate attribute with name 'q' exists"]),
        ({"name": "x", "target_storage": {"location": "cloud_storage"}},
         {"target_storage": {"non_field_errors": [
             "Cloud storage was selected as location but its id was not specified"]}}),
        ({"name": "x", "source_storage": {"location": "moon"}},
         {"source_storage": {"location": ['"moon" is not a valid choice.']}}),
        ({"name": "x", "assignee_id": 987654},
         {"assignee_id": ["The specified user #987654 does not exist."]}),
        ([{"name": "x"}],
         {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
    ],
)
def test_create_validation_errors(server: LiveServer, body: Any, expected: Any) -> None:
    reply = create_raw(server, body)
    assert reply.status == 400, reply.raw
    if expected is not None:
        assert reply.json == expected


def test_create_rejects_a_body_that_is_not_json(server: LiveServer) -> None:
    reply = call(server, "POST", "/api/tasks", raw_body=b"{nope",
                 headers={**basic(*ADMIN), "Content-Type": "application/json"})
    assert reply.status == 400 and "detail" in reply.json


def test_create_with_storages_replicas_and_assignee(server: LiveServer) -> None:
    _, _, user_id = new_user(server)
    reply = create_raw(server, {
        "name": unique("full-"), "assignee_id": user_id, "overlap": 2, "segment_size": 10,
        "consensus_replicas": 3, "source_storage": {"location": "local"},
        "target_storage": {"location": "local", "cloud_storage_id": None},
        "org": "ignored", "unknown_field": 1,
    })
    assert reply.status == 201, reply.raw
    task = reply.json
    assert reply.headers["Location"] == task["url"]
    assert task["assignee"]["id"] == user_id and task["assignee_updated_date"] is not None
    assert task["overlap"] == 2 and task["initial_replicas"] == 3
    assert task["source_storage"]["location"] == "local"
    assert task["target_storage"] == {"id": task["target_storage"]["id"], "location": "local",
                                      "cloud_storage_id": None}
    assert task["source_storage"]["id"] != task["target_storage"]["id"]


def test_unknown_task_is_404(server: LiveServer) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        reply = admin_call(server, method, "/api/tasks/987654", {} if method == "PATCH" else None)
        assert reply.status == 404 and reply.json == {"detail": "Not found."}


def test_patch_project_or_organization_is_refused(server: LiveServer) -> None:
    task = create_raw(server, {"name": unique("p-")}).json
    reply = admin_call(server, "PATCH", f"/api/tasks/{task['id']}", {"project_id": 4})
    assert reply.status == 400 and reply.json == ["Cannot find project with ID 4"]
    reply = admin_call(server, "PATCH", f"/api/tasks/{task['id']}", {"organization_id": 4})
    assert reply.status == 400
    reply = admin_call(server, "PATCH", f"/api/tasks/{task['id']}", {"name": ""})
    assert reply.status == 400 and reply.json == {"name": ["This field may not be blank."]}


def test_another_user_cannot_see_or_touch_the_admins_task(server: LiveServer) -> None:
    task = create_raw(server, {"name": unique("private-")}).json
    name, password, _ = new_user(server)
    auth = basic(name, password)
    assert call(server, "GET", f"/api/tasks/{task['id']}", headers=auth).status == 404
    assert call(server, "PATCH", f"/api/tasks/{task['id']}", body={"name": "x"},
                headers=auth).status == 404
    assert call(server, "DELETE", f"/api/tasks/{task['id']}", headers=auth).status == 404
    assert call(server, "GET", f"/api/labels?task_id={task['id']}", headers=auth).status == 404
    with client_for(server, (name, password)) as client:
        assert client.tasks.list() == []
        with pytest.raises(NotFoundException):
            client.tasks.retrieve(task["id"])
    assert admin_call(server, "GET", f"/api/tasks/{task['id']}").status == 200


def test_task_assignee_may_edit_but_not_delete_or_reassign(server: LiveServer) -> None:
    name, password, user_id = new_user(server)
    auth = basic(name, password)
    task = create_raw(server, {"name": unique("shared-"), "assignee_id": user_id}).json
    path = f"/api/tasks/{task['id']}"
    edited = call(server, "PATCH", path, body={"name": "edited", "labels": [{"name": "new"}]},
                  headers=auth)
    assert edited.status == 200 and edited.json["name"] == "edited"
    assert call(server, "PATCH", path, body={"assignee_id": None}, headers=auth).status == 403
    assert call(server, "PATCH", path, body={"owner_id": user_id}, headers=auth).status == 403
    assert call(server, "DELETE", path, headers=auth).status == 403
    assert call(server, "GET", "/api/tasks", headers=auth).json["count"] == 1


def test_owner_who_is_not_admin_manages_own_task(server: LiveServer) -> None:
    name, password, user_id = new_user(server)
    with client_for(server, (name, password)) as client:
        task = client.tasks.create(models.TaskWriteRequest(name="own"))
        assert task.owner.id == user_id
        task.update({"assignee_id": user_id})
        assert task.assignee.id == user_id
        task.remove()
        assert client.tasks.list() == []


def test_tasks_need_authentication(server: LiveServer) -> None:
    assert call(server, "GET", "/api/tasks").status == 401
    assert call(server, "POST", "/api/tasks", body={"name": "x"}).status == 401


def test_out_of_range_numbers_are_client_errors(server: LiveServer) -> None:
    """Ids beyond 64 bits cannot be stored; they must be 404/400, never a 500."""
    task = create_raw(server, {"name": unique("big-")}).json
    huge = "99999999999999999999"
    for path in (f"/api/tasks/{huge}", f"/api/jobs/{huge}", f"/api/labels/{huge}"):
        assert admin_call(server, "GET", path).status == 404, path
    for query in (f"/api/tasks?id={huge}", f"/api/jobs?task_id={huge}",
                  f"/api/labels?task_id={huge}",
                  "/api/tasks?filter=" + quote(f'{{"==":[{{"var":"id"}},{huge}]}}')):
        assert admin_call(server, "GET", query).status == 400, query
    for body in ({"owner_id": int(huge)}, {"labels": [{"id": int(huge), "name": "q"}]}):
        reply = admin_call(server, "PATCH", f"/api/tasks/{task['id']}", body)
        assert reply.status == 400, body
    reply = create_raw(server, {"name": "x", "labels": [{"name": "a", "attributes": [
        {"name": "q", "mutable": True, "input_type": "select", "values": ["ok", None]}]}]})
    assert reply.json == {"labels": [{"attributes": [
        {"values": {"1": ["This field may not be null."]}}]}]}
