"""``/api/labels`` and task label changes, against the real server and the real cvat-sdk."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from authutil import basic, call, unique
from cvat_sdk import make_client, models
from test_jobs_read import ADMIN, admin_call, attach_data, new_user

if TYPE_CHECKING:  # conftest is not importable when another conftest.py shadows it
    from conftest import LiveServer

HEX_COLOR = re.compile(r"^#[0-9a-f]{6}$")

LABEL_KEYS = {"id", "name", "color", "attributes", "type", "svg", "sublabels", "task_id",
              "parent_id", "has_parent"}


def new_task(server: LiveServer, labels: list[dict[str, Any]]) -> dict[str, Any]:
    reply = admin_call(server, "POST", "/api/tasks", {"name": unique("lb-"), "labels": labels})
    assert reply.status == 201, reply.raw
    return reply.json


def labels_of(server: LiveServer, task_id: int) -> list[dict[str, Any]]:
    reply = admin_call(server, "GET", f"/api/labels?task_id={task_id}&org=&page_size=all")
    assert reply.status == 200, reply.raw
    return reply.json["results"]


def test_labels_get_cvat_defaults(server: LiveServer) -> None:
    task = new_task(server, [
        {"name": "car"},
        {"name": "bike", "color": "#00ff00", "type": "rectangle"},
        {"name": "person", "attributes": [
            {"name": "age", "mutable": False, "input_type": "number", "values": ["0", "99", "1"],
             "default_value": "18"},
            {"name": "pose", "mutable": True, "input_type": "select",
             "values": ["standing", "sitting"]},
        ]},
    ])
    car, bike, person = labels_of(server, task["id"])
    assert set(car) == LABEL_KEYS
    assert [car["name"], bike["name"], person["name"]] == ["car", "bike", "person"]
    assert car["type"] == "any" and bike["type"] == "rectangle"
    assert bike["color"] == "#00ff00"
    assert HEX_COLOR.match(car["color"]) and HEX_COLOR.match(person["color"])
    assert len({car["color"], bike["color"], person["color"]}) == 3
    assert car["task_id"] == task["id"] and car["parent_id"] is None
    assert car["has_parent"] is False and car["sublabels"] == [] and car["svg"] == ""
    age, pose = person["attributes"]
    assert age == {"id": age["id"], "name": "age", "mutable": False, "input_type": "number",
                   "default_value": "18", "values": ["0", "99", "1"]}
    assert pose["default_value"] == "" and pose["values"] == ["standing", "sitting"]
    assert isinstance(age["id"], int) and age["id"] != pose["id"]
    # Attribute ids are unique across tasks: annotations refer to them as spec_id.
    other = new_task(server, [{"name": "person", "attributes": [
        {"name": "age", "mutable": False, "input_type": "number", "values": ["0", "9", "1"]}]}])
    other_age = labels_of(server, other["id"])[0]["attributes"][0]
    assert other_age["id"] not in (age["id"], pose["id"])
    # The same name gets the same default color in another task.
    assert labels_of(server, other["id"])[0]["color"] == person["color"]


def test_sdk_get_labels_for_task_and_job(server: LiveServer) -> None:
    task = new_task(server, [{"name": "a"}, {"name": "b"}])
    job_ids = attach_data(server, task["id"], size=4, segment_size=2)
    with make_client(f"http://{server.host}", port=server.port, credentials=ADMIN) as client:
        sdk_task = client.tasks.retrieve(task["id"])
        task_labels = sdk_task.get_labels()
        assert [lb.name for lb in task_labels] == ["a", "b"]
        job_labels = client.jobs.retrieve(job_ids[1]).get_labels()
        assert [lb.id for lb in job_labels] == [lb.id for lb in task_labels]
        one, _ = client.api_client.labels_api.retrieve(task_labels[0].id)
        assert one.name == "a" and one.task_id == task["id"]
        listed, _ = client.api_client.labels_api.list(task_id=task["id"], name="b")
        assert [lb.name for lb in listed.results] == ["b"]


def test_skeleton_sublabels_and_svg(server: LiveServer) -> None:
    svg = ('<line data-type="edge" data-node-from="1" data-node-to="2"></line>'
           '<circle data-type="element node" data-label-name="head"></circle>'
           '<circle data-type="element node" data-label-name="tail"></circle>')
    task = new_task(server, [{"name": "animal", "type": "skeleton", "svg": svg, "sublabels": [
        {"name": "head", "type": "points"},
        {"name": "tail", "type": "points", "attributes": [
            {"name": "visible", "mutable": True, "input_type": "checkbox",
             "values": ["true"]}]},
    ]}])
    (skeleton,) = labels_of(server, task["id"])  # sublabels are not listed at the top level
    head, tail = skeleton["sublabels"]
    assert skeleton["type"] == "skeleton"
    assert (head["name"], head["has_parent"], head["type"]) == ("head", True, "points")
    assert set(head) == {"id", "name", "color", "attributes", "type", "has_parent"}
    assert tail["attributes"][0]["name"] == "visible"
    assert f'data-label-id="{head["id"]}"' in skeleton["svg"]
    assert f'data-label-id="{tail["id"]}"' in skeleton["svg"]
    assert "data-label-name" not in skeleton["svg"]
    sub = admin_call(server, "GET", f"/api/labels/{head['id']}").json
    assert sub["parent_id"] == skeleton["id"] and sub["has_parent"] is True
    by_parent = admin_call(server, "GET", f"/api/labels?task_id={task['id']}&parent=animal")
    assert [lb["name"] for lb in by_parent.json["results"]] == ["head", "tail"]


def test_task_patch_adds_updates_and_deletes_labels(server: LiveServer) -> None:
    task = new_task(server, [
        {"name": "car", "color": "#111111"},
        {"name": "tree"},
        {"name": "dog", "attributes": [
            {"name": "breed", "mutable": False, "input_type": "text", "values": []}]},
    ])
    car, tree, dog = labels_of(server, task["id"])
    breed = dog["attributes"][0]
    reply = admin_call(server, "PATCH", f"/api/tasks/{task['id']}", {"labels": [
        {"id": car["id"], "name": "automobile", "color": "#222222"},
        {"id": tree["id"], "deleted": True},
        {"id": dog["id"], "attributes": [
            {"id": breed["id"], "default_value": "husky"},
            {"name": "size", "mutable": True, "input_type": "radio", "values": ["s", "l"]},
        ]},
        {"name": "cat", "type": "polygon"},
    ]})
    assert reply.status == 200, reply.raw
    assert reply.json["updated_date"] > task["updated_date"]
    names = {lb["name"]: lb for lb in labels_of(server, task["id"])}
    assert sorted(names) == ["automobile", "cat", "dog"]
    assert names["automobile"]["id"] == car["id"]
    assert names["automobile"]["color"] == "#222222"
    assert names["cat"]["type"] == "polygon"
    attrs = {a["name"]: a for a in names["dog"]["attributes"]}
    assert attrs["breed"]["id"] == breed["id"] and attrs["breed"]["default_value"] == "husky"
    assert attrs["size"]["values"] == ["s", "l"] and attrs["size"]["id"] != breed["id"]


def test_task_patch_label_errors(server: LiveServer) -> None:
    task = new_task(server, [{"name": "a"}, {"name": "b"}])
    other = new_task(server, [{"name": "z"}])
    a, _ = labels_of(server, task["id"])
    foreign = labels_of(server, other["id"])[0]
    path = f"/api/tasks/{task['id']}"

    renamed = admin_call(server, "PATCH", path, {"labels": [{"id": a["id"], "name": "b"}]})
    assert renamed.status == 400 and renamed.json == ["All label names must be unique"]
    added = admin_call(server, "PATCH", path, {"labels": [{"name": "a"}]})
    assert added.status == 400
    missing = admin_call(server, "PATCH", path, {"labels": [{"id": foreign["id"], "name": "q"}]})
    assert missing.status == 404
    assert missing.json == {"detail": f"Not found label with id #{foreign['id']} to change"}
    no_id = admin_call(server, "PATCH", path, {"labels": [{"name": "c", "deleted": True}]})
    assert no_id.status == 400
    bad_attr = admin_call(server, "PATCH", path, {"labels": [
        {"id": a["id"], "attributes": [{"id": 1, "name": "x"}]}]})
    assert bad_attr.status == 404
    # Nothing was half-applied.
    assert [lb["name"] for lb in labels_of(server, task["id"])] == ["a", "b"]


def test_label_endpoint_patch_and_delete(server: LiveServer) -> None:
    task = new_task(server, [{"name": "a"}, {"name": "b"}])
    a, b = labels_of(server, task["id"])
    reply = admin_call(server, "PATCH", f"/api/labels/{a['id']}", {"name": "aa"})
    assert reply.status == 200 and reply.json["name"] == "aa" and reply.json["id"] == a["id"]
    refused = admin_call(server, "PATCH", f"/api/labels/{a['id']}", {"deleted": True})
    assert refused.status == 400
    assert admin_call(server, "DELETE", f"/api/labels/{b['id']}").status == 204
    assert admin_call(server, "GET", f"/api/labels/{b['id']}").status == 404
    assert [lb["name"] for lb in labels_of(server, task["id"])] == ["aa"]


def test_label_list_parameters(server: LiveServer) -> None:
    task = new_task(server, [{"name": "x1"}, {"name": "x2", "type": "tag"}])
    job_ids = attach_data(server, task["id"], size=2)
    both = admin_call(server, "GET", f"/api/labels?task_id={task['id']}&job_id={job_ids[0]}")
    assert both.status == 400
    assert admin_call(server, "GET", "/api/labels?task_id=x").status == 400
    assert admin_call(server, "GET", "/api/labels?task_id=987654").status == 404
    assert admin_call(server, "GET", "/api/labels?job_id=987654").status == 404
    assert admin_call(server, "GET", "/api/labels/987654").status == 404
    tagged = admin_call(server, "GET", f"/api/labels?task_id={task['id']}&type=tag").json
    assert [lb["name"] for lb in tagged["results"]] == ["x2"]
    desc = admin_call(server, "GET", f"/api/labels?task_id={task['id']}&sort=-name").json
    assert [lb["name"] for lb in desc["results"]] == ["x2", "x1"]
    assert admin_call(server, "GET", f"/api/labels?task_id={task['id']}&sort=zz").status == 400


def test_label_visibility(server: LiveServer) -> None:
    task = new_task(server, [{"name": "secret"}])
    label_id = labels_of(server, task["id"])[0]["id"]
    name, password, _ = new_user(server)
    auth = basic(name, password)
    assert call(server, "GET", f"/api/labels/{label_id}", headers=auth).status == 404
    assert call(server, "GET", "/api/labels", headers=auth).json["count"] == 0
    assert call(server, "PATCH", f"/api/labels/{label_id}", body={"name": "n"},
                headers=auth).status == 404
    assert call(server, "DELETE", f"/api/labels/{label_id}", headers=auth).status == 404
    with make_client(f"http://{server.host}", port=server.port,
                     credentials=(name, password)) as client:
        own = client.tasks.create(models.TaskWriteRequest(
            name="mine", labels=[models.PatchedLabelRequest(name="mine")]))
        listed, _ = client.api_client.labels_api.list()
        assert [lb.task_id for lb in listed.results] == [own.id]
