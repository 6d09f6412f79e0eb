"""The microcache (``framesvc/http/microcache.py``): warm media answers replayed without
resolving the request again, and never to anyone the full path would refuse.

The real server and real users; counters are read from ``/metrics`` as deltas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from authutil import Account, call, new_account
from conftest import LiveServer
from mediaapi import api, create_task, get, images, jobs_of, metric, metrics

PASSWORD = "micro-Cache-Secret-3"
#: Headers that legitimately differ between two answers.
PER_ANSWER = {"date", "x-request-id"}


@pytest.fixture(scope="module")
def job_id(client: Any, tmp_path_factory: pytest.TempPathFactory) -> int:
    files = images(tmp_path_factory.mktemp("microcache"), 3, (80, 60))
    return int(jobs_of(create_task(client, files, name="microcache"))[0].id)


def _account(server: LiveServer) -> Account:
    return new_account(server, "micro", PASSWORD)


def _headers(reply: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in reply.headers.items() if k.lower() not in PER_ANSWER}


def test_a_replay_is_the_same_answer_and_counts_as_a_hit(server: LiveServer,
                                                         job_id: int) -> None:
    path = f"/api/jobs/{job_id}/data?type=frame&number=2&quality=compressed"
    first = get(server, path)
    second = get(server, path)  # a normal memory hit; offers the memo
    before = metrics(server)
    replays = [get(server, path) for _ in range(3)]
    after = metrics(server)
    for reply in (second, *replays):
        assert reply.status == 200
        assert reply.raw == first.raw
        assert _headers(reply) == _headers(first)
    assert len({r.headers["X-Request-Id"] for r in replays}) == 3

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("framesvc_cache_memory_hits_total") == 3
    assert delta("framesvc_cache_hits_total") == 3
    assert delta("framesvc_media_items_total", type="frame", cache="hit") == 3
    assert delta("framesvc_bytes_served_total") == 3 * len(first.raw)


def test_a_replay_is_never_given_to_other_credentials(server: LiveServer, job_id: int) -> None:
    path = f"/api/jobs/{job_id}/data?type=frame&number=0&quality=compressed"
    for _ in range(3):
        assert get(server, path).status == 200  # the admin's answer, remembered
    stranger = _account(server).token
    reply = call(server, "GET", path, headers=stranger)
    assert reply.status == 404 and reply.json == {"detail": "Not found."}
    assert call(server, "GET", path).status == 401  # anonymous
    bad = call(server, "GET", path, headers={"Authorization": "Token " + "0" * 40})
    assert bad.status == 401


def test_reassignment_and_logout_end_replays_at_once(server: LiveServer, job_id: int) -> None:
    path = f"/api/jobs/{job_id}/data?type=preview"
    account = _account(server)
    user_id, token, cookies = account.id, account.token, account.cookies
    session = {"sessionid": cookies["sessionid"]}
    assert api(server, "PATCH", f"/api/jobs/{job_id}", body={"assignee": user_id}).status == 200
    for _ in range(3):
        assert call(server, "GET", path, headers=token).status == 200
        assert call(server, "GET", path, cookies=session).status == 200
    assert api(server, "PATCH", f"/api/jobs/{job_id}", body={"assignee": None}).status == 200
    assert call(server, "GET", path, headers=token).status == 404
    assert call(server, "GET", path, cookies=session).status == 404
    assert api(server, "PATCH", f"/api/jobs/{job_id}", body={"assignee": user_id}).status == 200
    for _ in range(3):
        assert call(server, "GET", path, cookies=session).status == 200
    out = call(server, "POST", "/api/auth/logout",
               headers={"X-CSRFToken": cookies["csrftoken"]},
               cookies={**session, "csrftoken": cookies["csrftoken"]})
    assert out.status == 200, out.raw
    assert call(server, "GET", path, cookies=session).status == 401


def test_a_write_by_another_process_ends_replays(server: LiveServer, job_id: int) -> None:
    """Deactivating the user straight in the database (another connection, as an admin
    tool would) is seen by the very next request: SQLite's data_version moves."""
    from authutil import db_execute

    path = f"/api/jobs/{job_id}/data?type=frame&number=1&quality=compressed"
    account = _account(server)
    user_id, token = account.id, account.token
    assert api(server, "PATCH", f"/api/jobs/{job_id}", body={"assignee": user_id}).status == 200
    for _ in range(3):
        assert call(server, "GET", path, headers=token).status == 200
    db_execute(server, "UPDATE users SET is_active = ? WHERE id = ?", (False, user_id))
    assert call(server, "GET", path, headers=token).status == 401


def test_requests_that_vary_are_not_replayed(server: LiveServer, job_id: int) -> None:
    path = f"/api/jobs/{job_id}/data?type=frame&number=2&quality=compressed"
    full = get(server, path)
    get(server, path)
    part = get(server, path, {"Range": "bytes=0-9"})
    assert part.status == 206 and part.raw == full.raw[:10]
    assert get(server, path, {"If-None-Match": full.headers["ETag"]}).status == 304
    preview = f"/api/jobs/{job_id}/data?type=preview"
    get(server, preview)
    get(server, preview)
    empty = get(server, preview, {"Prefer": "handling=empty"})
    assert empty.status == 200  # the preview exists: served, and not from another answer
    assert get(server, path).raw == full.raw


def test_request_key_rules(tmp_path: Path) -> None:
    from aiohttp.test_utils import make_mocked_request

    from framesvc.http.microcache import Microcache

    key = Microcache.request_key
    plain = key(make_mocked_request("GET", "/a?x=1", headers={"Authorization": "Token a"}))
    assert plain is not None
    assert key(make_mocked_request("GET", "/a?x=1", headers={"Authorization": "Token b"})) \
        not in (None, plain)
    assert key(make_mocked_request("GET", "/a?x=2", headers={"Authorization": "Token a"})) \
        not in (None, plain)
    assert key(make_mocked_request("GET", "/a?x=1", headers={"Cookie": "sessionid=s"})) \
        not in (None, plain)
    for header in ("Range", "If-None-Match", "If-Modified-Since", "If-Range", "Prefer"):
        assert key(make_mocked_request("GET", "/a", headers={header: "x"})) is None, header
    assert key(make_mocked_request("HEAD", "/a")) is None
    assert key(make_mocked_request("POST", "/a")) is None


# --- items that live on disk only ---------------------------------------------------------------


@pytest.fixture(scope="module")
def disk_only(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server without the memory tier: every item is a cache file."""
    from conftest import start_server, stop_server
    from cvat_sdk import Client, Config

    root = tmp_path_factory.mktemp("microcache-disk")
    server = start_server(root / "server", {"FRAMESVC_MEMORY_CACHE_BYTES": "0"})
    try:
        files = images(root / "src", 3, (80, 60))
        with Client(server.url, config=Config(cache_dir=root / "sdk")) as client:
            client.login((server.admin_user, server.admin_password))
            job = int(jobs_of(create_task(client, files, name="microcache-disk"))[0].id)
        yield server, job
    finally:
        stop_server(server)


def test_a_disk_item_is_replayed_from_its_file(disk_only: Any) -> None:
    server, job = disk_only
    path = f"/api/jobs/{job}/data?type=chunk&index=0&quality=original"
    first = get(server, path)
    assert first.status == 200 and first.headers["X-Checksum"]
    before = metrics(server)
    replays = [get(server, path) for _ in range(3)]
    after = metrics(server)
    for reply in replays:
        assert reply.status == 200 and reply.raw == first.raw
        assert _headers(reply) == _headers(first)

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("framesvc_cache_hits_total") == 3
    assert delta("framesvc_cache_memory_hits_total") == 0
    assert delta("framesvc_media_items_total", type="chunk", cache="hit") == 3
    assert delta("framesvc_bytes_served_total") == 3 * len(first.raw)


def test_a_cleared_cache_is_rebuilt_not_replayed(disk_only: Any) -> None:
    """The memo outlives the entry (no write to the store): the file is gone, so the
    replay gives way and the item is built again."""
    import subprocess
    import sys

    server, job = disk_only
    path = f"/api/jobs/{job}/data?type=chunk&index=0&quality=compressed"
    first = get(server, path)
    get(server, path)
    done = subprocess.run([sys.executable, "-m", "framesvc.cli", "cache", "clear",
                           "--cache-dir", str(server.cache_dir)],
                          capture_output=True, text=True, timeout=60, env=server.env)
    assert done.returncode == 0, done.stderr
    before = metrics(server)
    again = get(server, path)
    after = metrics(server)
    assert again.status == 200 and again.raw == first.raw
    built = metric(after, "framesvc_media_items_total", type="chunk", cache="miss") - metric(
        before, "framesvc_media_items_total", type="chunk", cache="miss")
    assert built == 1
