"""The fast lane (``framesvc/http/fastlane.py``): warm in-memory answers written at the
protocol level must be the very answers the normal path gives, in request order, to the
same callers only, and never for a request the lane must leave to aiohttp.

Real server, raw sockets where HTTP/1.1 details matter (pipelining, keep-alive,
``Connection: close``); lane use is read from ``framesvc_fastlane_answers_total``.  On
PostgreSQL the microcache is off, so the lane answers nothing there: the answers must
still be right.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from authutil import basic, call, new_account, unique
from conftest import LiveServer, on_postgres, start_server, stop_server
from mediaapi import admin, api, create_task, get, images, jobs_of, metric, metrics

#: Whether the lane is on for this run's store (see the module docstring).
LANE = not on_postgres()
PASSWORD = "fast-Lane-Secret-5"
PER_ANSWER = {"date", "x-request-id"}


@pytest.fixture(scope="module")
def job_id(client: Any, tmp_path_factory: pytest.TempPathFactory) -> int:
    files = images(tmp_path_factory.mktemp("fastlane"), 4, (96, 64))
    return int(jobs_of(create_task(client, files, name="fastlane"))[0].id)


def frame_path(job_id: int, number: int) -> str:
    return f"/api/jobs/{job_id}/data?type=frame&number={number}&quality=compressed"


def lane_answers(server: LiveServer) -> float:
    return metric(metrics(server), "framesvc_fastlane_answers_total")


def warm(server: LiveServer, path: str, headers: dict[str, str] | None = None) -> bytes:
    """Answer ``path`` until the lane has a memo for it (a miss, a hit that offers the
    memo); the body."""
    first = get(server, path, headers)
    assert first.status == 200, first.raw
    assert get(server, path, headers).raw == first.raw
    return first.raw


# --- raw HTTP/1.1 ---------------------------------------------------------------------------


def request_bytes(server: LiveServer, path: str, *, method: str = "GET",
                  headers: dict[str, str] | None = None, version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", f"Host: {server.host}:{server.port}"]
    lines += [f"{k}: {v}" for k, v in {**admin(server), **(headers or {})}.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class RawAnswer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


class Connection:
    """One keep-alive connection; reads answers framed by ``Content-Length``."""

    def __init__(self, server: LiveServer) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=10)
        self._buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(1 << 20)
        self._buffer += data
        return bool(data)

    def answer(self, head_only: bool = False) -> RawAnswer:
        while b"\r\n\r\n" not in self._buffer:
            assert self._fill(), "connection closed before an answer"
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"duplicate header {name}"
            headers[name.lower()] = value.strip()
        size = 0 if head_only else int(headers.get("content-length", "0"))
        while len(self._buffer) < size:
            assert self._fill(), "connection closed inside a body"
        body, self._buffer = self._buffer[:size], self._buffer[size:]
        return RawAnswer(int(status_line.split()[1]), headers, body)

    def closed_by_server(self) -> bool:
        self.sock.settimeout(10)
        return self.sock.recv(1) == b""

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def connection(server: LiveServer) -> Iterator[Connection]:
    conn = Connection(server)
    yield conn
    conn.close()


def same_answer(a: RawAnswer, b: RawAnswer) -> None:
    assert a.status == b.status
    assert a.body == b.body
    assert ({k: v for k, v in a.headers.items() if k not in PER_ANSWER}
            == {k: v for k, v in b.headers.items() if k not in PER_ANSWER})


# --- the lane answers, and answers the same -------------------------------------------------


def test_a_lane_answer_is_the_normal_answer(server: LiveServer, job_id: int,
                                            connection: Connection) -> None:
    path = frame_path(job_id, 0)
    connection.send(request_bytes(server, path))
    normal = connection.answer()  # a miss or a first hit: the handler's own answer
    connection.send(request_bytes(server, path))
    connection.answer()  # offers the memo
    before = metrics(server)
    for _ in range(3):
        connection.send(request_bytes(server, path))
        lane = connection.answer()
        same_answer(lane, normal)
        assert lane.headers["x-request-id"] != normal.headers["x-request-id"]
        assert lane.headers["date"].endswith(" GMT")
    after = metrics(server)

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("framesvc_fastlane_answers_total") == (3 if LANE else 0)
    # A lane answer is a replay like any other: the same counters move.
    assert delta("framesvc_cache_memory_hits_total") == 3
    assert delta("framesvc_media_items_total", type="frame", cache="hit") == 3
    assert delta("framesvc_bytes_served_total") == 3 * len(normal.body)


def test_lane_answers_are_logged_with_the_clients_request_id(server: LiveServer,
                                                             job_id: int) -> None:
    path = frame_path(job_id, 1)
    warm(server, path)
    before = lane_answers(server)
    rid = unique("lane-id")
    reply = get(server, path, {"X-Request-Id": rid})
    assert reply.status == 200 and reply.headers["X-Request-Id"] == rid
    assert lane_answers(server) - before == (1 if LANE else 0)
    deadline = time.monotonic() + 5
    while rid not in server.log_path.read_text(errors="replace"):
        assert time.monotonic() < deadline, server.log_tail()
        time.sleep(0.05)
    line = next(ln for ln in server.log_path.read_text().splitlines() if rid in ln)
    assert f"GET {path} 200 {len(reply.raw)}B" in line and line.endswith("cache=hit")


# --- order and pipelining -------------------------------------------------------------------


def test_pipelined_requests_are_answered_in_order(server: LiveServer, job_id: int,
                                                  connection: Connection) -> None:
    """Lane answers, normal answers and errors interleaved in one write: each answer
    comes back in its request's place."""
    hot = frame_path(job_id, 2)
    body = warm(server, hot)
    cold = frame_path(job_id, 3)
    batch = [
        (hot, {}, 200),
        (hot, {}, 200),
        ("/api/users/self", {}, 200),
        (hot, {}, 200),
        (cold, {}, 200),
        (hot, {"Range": "bytes=0-9"}, 206),
        (hot, {}, 200),
        (f"/api/jobs/{job_id}/data?type=frame&number=999", {}, 400),
        (hot, {}, 200),
    ]
    before = lane_answers(server)
    connection.send(b"".join(request_bytes(server, p, headers=h) for p, h, _ in batch))
    answers = [connection.answer() for _ in batch]
    for (path, headers, status), reply in zip(batch, answers, strict=True):
        assert reply.status == status, (path, headers, reply.body[:200])
        if path == hot and status == 200:
            assert reply.body == body
    assert answers[5].body == body[:10]
    assert b'"username"' in answers[2].body
    # Only the leading run of a batch may take the lane (answers leave in order).
    assert lane_answers(server) - before <= (2 if LANE else 0)
    # The connection is still good afterwards, and the lane serves it again.
    before = lane_answers(server)
    connection.send(request_bytes(server, hot))
    assert connection.answer().body == body
    assert lane_answers(server) - before == (1 if LANE else 0)


def test_a_long_pipelined_run_of_lane_answers_is_answered_whole(
        server: LiveServer, job_id: int, connection: Connection) -> None:
    """aiohttp's parser stops after 32 unconsumed requests and keeps the rest of the
    data; when the lane answered all it handed over, the lane must parse on (aiohttp
    would only do so after pausing for a full queue, which it never saw)."""
    hot = frame_path(job_id, 1)
    body = warm(server, hot)
    count = 80
    before = lane_answers(server)
    connection.send(request_bytes(server, hot) * count)
    for _ in range(count):
        reply = connection.answer()
        assert reply.status == 200 and reply.body == body
    lane = lane_answers(server) - before
    assert lane > 32 if LANE else lane == 0


def test_a_long_pipelined_run_with_a_normal_request_early_is_answered_whole(
        server: LiveServer, job_id: int, connection: Connection) -> None:
    """The lane answers the first few, leaves the rest to aiohttp, which gets fewer than
    the parser's 32 and so never pauses: the data the parser kept must be parsed too."""
    hot = frame_path(job_id, 1)
    body = warm(server, hot)
    batch = [hot] * 5 + ["/api/users/self"] + [hot] * 40
    connection.send(b"".join(request_bytes(server, p) for p in batch))
    for path in batch:
        reply = connection.answer()
        assert reply.status == 200
        assert reply.body == body if path == hot else b'"username"' in reply.body


@pytest.fixture(scope="module")
def big_frames_job(client: Any, tmp_path_factory: pytest.TempPathFactory) -> int:
    """A job of two noise images: frames of a few hundred KB, so that a client that does
    not read fills every socket buffer within a few answers."""
    from PIL import Image

    work = tmp_path_factory.mktemp("fastlane-big")
    files = []
    for i in range(2):
        path = work / f"noise_{i}.png"
        Image.effect_noise((900, 700), 60 + 10 * i).convert("RGB").save(path)
        files.append(path)
    return int(jobs_of(create_task(client, files, name="fastlane-big"))[0].id)


def test_a_reader_that_does_not_read_gets_every_answer_in_the_end(
        server: LiveServer, big_frames_job: int) -> None:
    """Flow control: with the client not reading, the lane stops writing once the
    transport holds more than its high-water mark (writing paused), and the requests
    behind wait for aiohttp, which waits for the client; nothing is lost or reordered."""
    hot, other = frame_path(big_frames_job, 0), frame_path(big_frames_job, 1)
    bodies = {hot: warm(server, hot), other: warm(server, other)}
    assert min(len(b) for b in bodies.values()) > 100_000
    paths = [hot if i % 3 else other for i in range(90)]
    before = lane_answers(server)
    conn = Connection(server)
    try:
        for start in range(0, len(paths), 15):
            conn.send(b"".join(request_bytes(server, p) for p in paths[start:start + 15]))
        time.sleep(0.5)  # the server fills the sockets and stops
        for path in paths:
            reply = conn.answer()
            assert reply.status == 200
            assert reply.body == bodies[path]
    finally:
        conn.close()
    lane = lane_answers(server) - before
    # ~32 MB asked for without reading (far more than the socket buffers hold): the lane
    # must have stopped before the end.
    assert lane < len(paths) if LANE else lane == 0


# --- what must not take the lane ------------------------------------------------------------


@pytest.mark.parametrize(("headers", "status"), [
    ({"Range": "bytes=5-"}, 206),
    ({"If-None-Match": "*"}, 304),
    ({"Prefer": "handling=empty"}, 200),
])
def test_requests_whose_answer_differs_go_the_normal_way(server: LiveServer, job_id: int,
                                                         headers: dict[str, str],
                                                         status: int) -> None:
    path = frame_path(job_id, 3)
    body = warm(server, path)
    before = lane_answers(server)
    reply = get(server, path, headers)
    assert reply.status == status
    if status == 206:
        assert reply.raw == body[5:]
    elif status == 200:
        assert reply.raw == body
    assert lane_answers(server) == before


def test_head_http10_and_connection_close_go_the_normal_way(server: LiveServer,
                                                            job_id: int) -> None:
    path = frame_path(job_id, 2)
    body = warm(server, path)
    before = lane_answers(server)

    conn = Connection(server)
    try:
        conn.send(request_bytes(server, path, method="HEAD"))
        head = conn.answer(head_only=True)
        assert head.status == 200 and int(head.headers["content-length"]) == len(body)
        conn.send(request_bytes(server, path, headers={"Connection": "close"}))
        closing = conn.answer()
        assert closing.status == 200 and closing.body == body
        assert conn.closed_by_server()
    finally:
        conn.close()

    conn = Connection(server)
    try:
        conn.send(request_bytes(server, path, version="1.0"))
        old = conn.answer()
        assert old.status == 200 and old.body == body
        assert conn.closed_by_server()  # HTTP/1.0 without keep-alive: closed after it
    finally:
        conn.close()
    assert lane_answers(server) == before


# --- who gets a lane answer -----------------------------------------------------------------


def test_other_credentials_never_get_a_lane_answer(server: LiveServer, job_id: int) -> None:
    path = frame_path(job_id, 0)
    warm(server, path)
    stranger = new_account(server, "lane", PASSWORD).token
    reply = call(server, "GET", path, headers=stranger)
    assert reply.status == 404
    assert call(server, "GET", path).status == 401
    wrong = basic(server.admin_user, server.admin_password + "x")
    assert call(server, "GET", path, headers=wrong).status == 401


def test_a_logout_ends_lane_answers_at_once(server: LiveServer, job_id: int) -> None:
    account = new_account(server, "lane-out", PASSWORD)
    token = account.token
    # Give the new user the job, so its frames are theirs to see.
    assert api(server, "PATCH", f"/api/jobs/{job_id}", body={"assignee": account.id}).status == 200
    path = frame_path(job_id, 1)
    for _ in range(3):
        assert call(server, "GET", path, headers=token).status == 200
    before = lane_answers(server)
    assert call(server, "GET", path, headers=token).status == 200
    assert lane_answers(server) - before == (1 if LANE else 0)
    assert call(server, "POST", "/api/auth/logout", headers=token).status == 200
    assert call(server, "GET", path, headers=token).status == 401
    assert api(server, "PATCH", f"/api/jobs/{job_id}", body={"assignee": None}).status == 200


# --- keep-alive -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def brief_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("lane-keepalive"),
                          {"FRAMESVC_KEEPALIVE_TIMEOUT": "2"})
    yield server
    stop_server(server)


def test_a_connection_served_by_the_lane_still_times_out_when_idle(
        brief_server: LiveServer, tmp_path: Path) -> None:
    from cvat_sdk import Client, Config

    files = images(tmp_path / "src", 2, (64, 48))
    with Client(brief_server.url, config=Config(cache_dir=tmp_path / "sdk")) as client:
        client.login((brief_server.admin_user, brief_server.admin_password))
        job = int(jobs_of(create_task(client, files, name="keepalive"))[0].id)
    path = frame_path(job, 0)
    conn = Connection(brief_server)
    try:
        # Busy for longer than the timeout, on lane answers only: never closed meanwhile.
        deadline = time.monotonic() + 3
        before = lane_answers(brief_server)
        while time.monotonic() < deadline:
            conn.send(request_bytes(brief_server, path))
            assert conn.answer().status == 200
            time.sleep(0.05)
        assert lane_answers(brief_server) - before >= (10 if LANE else 0)
        # Then idle: closed after the keep-alive timeout (2 s), not much later.
        idle_from = time.monotonic()
        assert conn.closed_by_server()
        assert 1.5 <= time.monotonic() - idle_from < 8
    finally:
        conn.close()
