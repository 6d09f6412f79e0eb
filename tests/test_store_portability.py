"""What a client sends must not decide whether the store can answer: the same 4xx on
SQLite and on PostgreSQL, never a database error.

SQLite takes any integer up to 64 bits and any text; PostgreSQL's ``INTEGER`` columns
hold 32 bits and its text no NUL character, and its drivers fail (a 500) when asked to
compare with, or store, anything else.  So:

* ids and numbers beyond 32 bits are compared like any other number (no such row: a
  404, an empty list, a 400 where the body names something that does not exist), and a
  number a 32-bit column would have to store is a 400 naming the field;
* text with NUL is a 400 ("Null characters are not allowed.", DRF's message) in bodies
  and list parameters, and simply matches no credentials in authentication.

These run against whichever store the suite uses (``make test-postgres`` for
PostgreSQL), through the real server.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from authutil import Reply, basic, call
from conftest import LiveServer
from PIL import Image

BIG = 3_000_000_000  # beyond a 32-bit INTEGER
HUGE = 10**30  # beyond any SQL integer
NUL = "a\x00b"
NUL_MESSAGE = "Null characters are not allowed."


@dataclass
class Setup:
    task_id: int
    job_id: int
    label_id: int
    spec_id: int


def api(server: LiveServer, method: str, path: str, body: Any = None) -> Reply:
    return call(server, method, path, body=body,
                headers=basic(server.admin_user, server.admin_password))


@pytest.fixture(scope="module")
def setup(server: LiveServer) -> Iterator[Setup]:
    """A task with two jobs over four small images and one label with a text attribute."""
    names = []
    for i in range(4):
        name = f"portability_{i}.png"
        Image.new("RGB", (32, 24), (60 * i, 0, 0)).save(server.share_root / name)
        names.append(name)
    attribute = {"name": "note", "mutable": True, "input_type": "text",
                 "default_value": "", "values": [""]}
    task = api(server, "POST", "/api/tasks", {
        "name": "portability", "segment_size": 2,
        "labels": [{"name": "car", "attributes": [attribute]}]}).json
    rq = api(server, "POST", f"/api/tasks/{task['id']}/data",
             {"image_quality": 70, "server_files": names}).json
    deadline = time.monotonic() + 60
    while True:
        status = api(server, "GET", f"/api/requests/{rq['rq_id']}").json["status"]
        if status in ("finished", "failed"):
            break
        assert time.monotonic() < deadline, "ingest did not finish"
        time.sleep(0.05)
    assert status == "finished"
    job_id = api(server, "GET", f"/api/jobs?task_id={task['id']}&sort=id").json[
        "results"][0]["id"]
    label = api(server, "GET", f"/api/labels?task_id={task['id']}").json["results"][0]
    yield Setup(task["id"], job_id, label["id"], label["attributes"][0]["id"])
    api(server, "DELETE", f"/api/tasks/{task['id']}")


def _filter(rule: Any) -> str:
    return quote(json.dumps(rule))


# --- numbers beyond 32 bits ----------------------------------------------------------------


@pytest.mark.parametrize("number", [BIG, 2**63 - 1])
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/tasks/{n}", None),
        ("PATCH", "/api/tasks/{n}", {"name": "x"}),
        ("DELETE", "/api/tasks/{n}", None),
        ("GET", "/api/tasks/{n}/data/meta", None),
        ("GET", "/api/tasks/{n}/annotations", None),
        ("GET", "/api/jobs/{n}", None),
        ("GET", "/api/jobs/{n}/data/meta", None),
        ("GET", "/api/jobs/{n}/annotations", None),
        ("PUT", "/api/jobs/{n}/annotations", {"shapes": []}),
        ("GET", "/api/labels/{n}", None),
        ("PATCH", "/api/labels/{n}", {"name": "x"}),
        ("GET", "/api/users/{n}", None),
    ],
)
def test_ids_beyond_32_bits_are_not_found(
    server: LiveServer, method: str, path: str, body: Any, number: int
) -> None:
    reply = api(server, method, path.format(n=number), body)
    assert reply.status == 404, reply.raw


@pytest.mark.parametrize(
    "query",
    [
        "/api/jobs?task_id={n}", "/api/jobs?parent_job_id={n}", "/api/jobs?project_id={n}",
        "/api/tasks?project_id={n}", "/api/users?id={n}", "/api/labels?task_id={n}",
        "/api/labels?job_id={n}", "/api/requests?task_id={n}",
    ],
)
def test_list_filters_beyond_32_bits_find_nothing(server: LiveServer, query: str) -> None:
    reply = api(server, "GET", query.format(n=BIG))
    if reply.status == 404:  # labels of a task or job that does not exist
        return
    assert reply.status == 200, reply.raw
    assert reply.json["count"] == 0


def test_request_filter_beyond_64_bits_finds_nothing(server: LiveServer) -> None:
    reply = api(server, "GET", f"/api/requests?task_id={HUGE}")
    assert reply.status == 200, reply.raw
    assert reply.json["count"] == 0


def test_json_logic_beyond_32_bits_compares_exactly(server: LiveServer, setup: Setup) -> None:
    def ids(rule: Any) -> set[int]:
        reply = api(server, "GET", f"/api/jobs?page_size=1000&filter={_filter(rule)}")
        assert reply.status == 200, reply.raw
        return {job["id"] for job in reply.json["results"]}

    everything = ids({"var": "id"})
    assert setup.job_id in everything
    assert ids({"==": [{"var": "id"}, BIG]}) == set()
    assert ids({"<": [{"var": "id"}, BIG]}) == everything
    assert ids({">": [{"var": "task_id"}, BIG]}) == set()
    assert ids({"in": [{"var": "id"}, [setup.job_id, BIG]]}) == {setup.job_id}
    assert ids({"<=": [-BIG, {"var": "id"}, BIG]}) == everything


def _shape(setup: Setup, **changes: Any) -> dict[str, Any]:
    shape = {"type": "rectangle", "label_id": setup.label_id, "frame": 0,
             "points": [1.0, 2.0, 10.0, 12.0]}
    shape.update(changes)
    return shape


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"shapes": [{"group": BIG}]}, {"shapes": [{"group": [
            "Ensure this value is less than or equal to 2147483647."]}]}),
        ({"shapes": [{"z_order": BIG}]}, {"shapes": [{"z_order": [
            "Ensure this value is less than or equal to 2147483647."]}]}),
        ({"shapes": [{"z_order": -BIG}]}, {"shapes": [{"z_order": [
            "Ensure this value is greater than or equal to -2147483648."]}]}),
        ({"shapes": [{"label_id": BIG}]}, [f"label_id `{BIG}` is invalid"]),
        ({"shapes": [{"frame": BIG}]}, [f"frame `{BIG}` is outside the job"]),
    ],
)
def test_annotation_numbers_a_column_cannot_hold_are_400(
    server: LiveServer, setup: Setup, body: dict[str, Any], expected: Any
) -> None:
    payload = {"shapes": [_shape(setup, **body["shapes"][0])]}
    reply = api(server, "PUT", f"/api/jobs/{setup.job_id}/annotations", payload)
    assert reply.status == 400, reply.raw
    assert reply.json == expected


def test_annotation_ids_beyond_32_bits_are_unknown(server: LiveServer, setup: Setup) -> None:
    path = f"/api/jobs/{setup.job_id}/annotations"
    update = api(server, "PATCH", f"{path}?action=update", {"shapes": [_shape(setup, id=BIG)]})
    assert update.status == 400 and update.json == [f"shape id `{BIG}` is invalid"]
    delete = api(server, "PATCH", f"{path}?action=delete", {"shapes": [_shape(setup, id=BIG)]})
    assert delete.status == 200, delete.raw
    tag_group = {"tags": [{"label_id": setup.label_id, "frame": 0, "group": BIG}]}
    assert api(server, "PUT", path, tag_group).status == 400


def test_references_beyond_32_bits_do_not_exist(server: LiveServer, setup: Setup) -> None:
    for body in ({"assignee_id": BIG}, {"owner_id": BIG}):
        reply = api(server, "PATCH", f"/api/tasks/{setup.task_id}", body)
        assert reply.status == 400, reply.raw
    reply = api(server, "PATCH", f"/api/tasks/{setup.task_id}",
                {"labels": [{"id": BIG, "name": "z"}]})
    assert reply.status == 404, reply.raw
    reply = api(server, "POST", "/api/jobs", {
        "task_id": BIG, "type": "ground_truth", "frame_selection_method": "manual",
        "frames": [0]})
    assert reply.status in (400, 404), reply.raw
    assert api(server, "PATCH", f"/api/jobs/{setup.job_id}", {"assignee": BIG}).status == 400


# --- NUL characters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": NUL}, "name"),
        ({"name": "t", "subset": NUL}, "subset"),
        ({"name": "t", "bug_tracker": "http://x/" + NUL}, "bug_tracker"),
    ],
)
def test_task_text_with_nul_is_400(server: LiveServer, body: dict[str, Any], field: str) -> None:
    reply = api(server, "POST", "/api/tasks", body)
    assert reply.status == 400, reply.raw
    assert reply.json == {field: [NUL_MESSAGE]}


def test_label_and_annotation_text_with_nul_is_400(server: LiveServer, setup: Setup) -> None:
    reply = api(server, "POST", "/api/tasks", {"name": "t", "labels": [{"name": NUL}]})
    assert reply.status == 400 and reply.json == {"labels": [{"name": [NUL_MESSAGE]}]}
    reply = api(server, "PATCH", f"/api/labels/{setup.label_id}", {"name": NUL})
    assert reply.status == 400 and reply.json == {"name": [NUL_MESSAGE]}
    shape = _shape(setup, attributes=[{"spec_id": setup.spec_id, "value": NUL}])
    reply = api(server, "PUT", f"/api/jobs/{setup.job_id}/annotations", {"shapes": [shape]})
    assert reply.status == 400
    assert reply.json == {"shapes": [{"attributes": [{"value": [NUL_MESSAGE]}]}]}


@pytest.mark.parametrize(
    "query",
    [
        f"/api/tasks?search={quote(NUL)}",
        f"/api/users?search={quote(NUL)}",
        f"/api/jobs?search={quote(NUL)}",
        f"/api/tasks?name={quote(NUL)}",
        f"/api/jobs?filter={_filter({'==': [{'var': 'task_name'}, NUL]})}",
        f"/api/jobs?filter={_filter({'in': [NUL, {'var': 'task_name'}]})}",
        f"/api/jobs?filter={_filter({'in': [{'var': 'state'}, ['new', NUL]]})}",
        f"/api/requests?action={quote(NUL)}",
        f"/api/requests/{quote(NUL)}",
    ],
)
def test_list_parameters_with_nul_are_400(server: LiveServer, query: str) -> None:
    reply = api(server, "GET", query)
    assert reply.status == 400, reply.raw


def test_credentials_with_nul_match_nobody(server: LiveServer) -> None:
    # A raw NUL never gets through the HTTP parser; inside Basic's base64 it does.
    assert call(server, "GET", "/api/users/self", headers=basic(NUL, "x")).status == 401
    assert call(server, "GET", "/api/users/self",
                headers=basic(f"{NUL}@example.com", "x")).status == 401
    login = call(server, "POST", "/api/auth/login", body={"username": NUL, "password": "x"})
    assert login.status == 400
    register = call(server, "POST", "/api/auth/register", body={
        "username": "portable", "email": "a\x00@example.com",
        "password1": "pass-Word-123", "password2": "pass-Word-123"})
    assert register.status == 400 and register.json == {"email": [NUL_MESSAGE]}


# --- text comparisons -------------------------------------------------------------------


def test_request_action_filter_is_exact(server: LiveServer, setup: Setup) -> None:
    """``action`` matches the operation's first part exactly, on every backend (SQLite's
    LIKE ignores case; ``%`` and ``_`` must not be wildcards)."""
    def tasks_of(action: str) -> set[int | None]:
        reply = api(server, "GET", f"/api/requests?page_size=1000&action={quote(action)}")
        assert reply.status == 200, reply.raw
        return {r["operation"]["task_id"] for r in reply.json["results"]}

    assert setup.task_id in tasks_of("create")
    for other in ("CREATE", "creat%", "c_eate", "%", "create:task"):
        assert setup.task_id not in tasks_of(other), other


def test_upload_file_name_that_is_not_utf8_is_400(server: LiveServer) -> None:
    """A multipart file name with a byte that is not UTF-8 reaches Python as a lone
    surrogate, which no database driver encodes: a 400, and the server goes on."""
    task_id = api(server, "POST", "/api/tasks", {"name": "bad name"}).json["id"]
    path = f"/api/tasks/{task_id}/data/"
    headers = basic(server.admin_user, server.admin_password)
    assert call(server, "POST", path, headers={**headers, "Upload-Start": "true"}).status == 202
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    body = (b'--XyZ\r\nContent-Disposition: form-data; name="client_files[0]"; '
            b'filename="\xff.png"\r\nContent-Type: image/png\r\n\r\n' + png.getvalue()
            + b"\r\n--XyZ--\r\n")
    reply = call(server, "POST", path, raw_body=body, headers={
        **headers, "Upload-Multiple": "true",
        "Content-Type": "multipart/form-data; boundary=XyZ"})
    assert reply.status == 400, reply.raw
    assert reply.json == ["Surrogate characters are not allowed: U+DCFF."]
    assert api(server, "GET", f"/api/tasks/{task_id}").status == 200
