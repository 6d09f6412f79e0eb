"""Request hardening against servers started with small limits: body sizes (413), request
encodings (415), slow clients (408 / closed connections, over raw sockets), login
throttling (429 + Retry-After), security headers on every kind of response, and the media
limits as settings (pixels, archive entries and bytes, video frames) through the real SDK.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import hostilemedia as hm
import mediagen
import pytest
from authutil import basic, call, login, register, unique
from conftest import LiveServer, start_server, stop_server
from cvat_sdk import make_client
from cvat_sdk.core.exceptions import BackgroundRequestException
from hostileutil import admin, api, no_server_errors

from framesvc.http.security import SECURITY_HEADERS

POLL = 0.05
PASSWORD = "pass-Word-123"

LIMITS = {
    "FRAMESVC_MAX_JSON_BYTES": str(64 * 1024),
    "FRAMESVC_MAX_ANNOTATIONS_BYTES": str(256 * 1024),
    "FRAMESVC_MAX_REQUEST_BYTES": str(4 * 1024 * 1024),
    "FRAMESVC_MAX_UPLOAD_BYTES": str(3 * 1024 * 1024),
    "FRAMESVC_REQUEST_BODY_TIMEOUT": "2",
    "FRAMESVC_REQUEST_BODY_MIN_RATE": "1000",
    "FRAMESVC_KEEPALIVE_TIMEOUT": "3",
    "FRAMESVC_MAX_IMAGE_PIXELS": "10000",
    "FRAMESVC_MAX_ARCHIVE_ENTRIES": "50",
    "FRAMESVC_MAX_ARCHIVE_BYTES": str(1024 * 1024),
    "FRAMESVC_MAX_VIDEO_FRAMES": "10",
    "FRAMESVC_WORKERS": "2",
}
THROTTLE = {
    "FRAMESVC_LOGIN_FAILURES_PER_USER": "3",
    "FRAMESVC_LOGIN_FAILURES_PER_IP": "12",
    "FRAMESVC_LOGIN_FAILURE_WINDOW": "10",
}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("small_limits"), LIMITS)
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def throttled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("throttled"), THROTTLE)
    yield live
    stop_server(live)


def new_task(server: LiveServer, name: str = "limits") -> int:
    reply = api(server, "POST", "/api/tasks", body={"name": name, "labels": [{"name": "a"}]})
    assert reply.status == 201, reply.raw
    return int(reply.json["id"])


# --- raw sockets ------------------------------------------------------------------------------


def connect(server: LiveServer) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long it took."""
    started = time.monotonic()
    sock.settimeout(limit)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {limit} s; got {data[:200]!r}")
    except ConnectionResetError:
        pass
    return data, time.monotonic() - started


def request_head(server: LiveServer, method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {server.host}:{server.port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


# --- body sizes and encodings -----------------------------------------------------------------


def test_json_body_over_the_limit_is_413_before_it_is_read(small: LiveServer) -> None:
    """A declared Content-Length over the limit is answered at once: the client may stop
    sending (here it never sends the body at all)."""
    with no_server_errors(small), connect(small) as sock:
        headers = {**admin(small), "Content-Type": "application/json",
                   "Content-Length": str(64 * 1024 + 1)}
        sock.sendall(request_head(small, "POST", "/api/tasks", headers))
        sock.settimeout(10)
        answer = sock.recv(65536)
        assert status_of(answer) == 413, answer[:300]
        body = answer.split(b"\r\n\r\n", 1)[1]
        assert json.loads(body) == {"detail": "The request body is larger than 65536 bytes."}


@pytest.mark.parametrize("chunked", [False, True])
def test_json_limits_per_route(small: LiveServer, chunked: bool) -> None:
    """64 KiB for ordinary JSON, 256 KiB for annotations; chunked bodies are counted as
    they arrive."""
    task_id = new_task(small)
    big_name = {"name": "x" * (80 * 1024), "labels": [{"name": "a"}]}

    def send(method: str, path: str, payload: Any) -> Any:
        raw = json.dumps(payload).encode()
        # urllib3 sends an iterable without a length as Transfer-Encoding: chunked.
        body: Any = iter([raw[i:i + 8192] for i in range(0, len(raw), 8192)]) if chunked else raw
        headers = {**admin(small), "Content-Type": "application/json"}
        return call(small, method, path, raw_body=body, headers=headers)

    with no_server_errors(small):
        reply = send("POST", "/api/tasks", big_name)
        assert reply.status == 413 and "65536" in reply.json["detail"]
        reply = send("PATCH", f"/api/tasks/{task_id}", {"name": "y" * (80 * 1024)})
        assert reply.status == 413
        # Annotations may be bigger: 100 KiB passes the size check (and is then judged on
        # its content), 300 KiB does not.
        shapes = [{"type": "rectangle", "frame": 0, "label_id": 1, "points": [0, 0, 1, 1]}]
        medium = {"version": 0, "tags": [], "tracks": [], "shapes": shapes * 1400}
        assert 90_000 < len(json.dumps(medium)) < 256 * 1024
        assert send("PUT", f"/api/tasks/{task_id}/annotations", medium).status != 413
        large = {"version": 0, "tags": [], "tracks": [], "shapes": shapes * 4000}
        reply = send("PUT", f"/api/tasks/{task_id}/annotations", large)
        assert reply.status == 413 and "262144" in reply.json["detail"]
        # Uploads keep their own limit (max_request_bytes): 200 KiB of JSON is not a 413.
        reply = send("POST", f"/api/tasks/{task_id}/data/",
                     {"image_quality": 70, "server_files": ["a" * 200_000]})
        assert reply.status == 400


def test_compressed_request_bodies_are_refused(small: LiveServer) -> None:
    """aiohttp would inflate them, so a few KiB could become gigabytes: 415."""
    bomb = gzip.compress(b"{" + b" " * (8 << 20) + b"}")
    with no_server_errors(small):
        reply = call(small, "POST", "/api/tasks", raw_body=bomb,
                     headers={**admin(small), "Content-Type": "application/json",
                              "Content-Encoding": "gzip"})
        assert reply.status == 415 and "Content-Encoding" in reply.json["detail"]


# --- slow clients -----------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("target", ["login", "tus"])
def test_a_trickled_body_is_cut_off_with_408(small: LiveServer, target: str) -> None:
    """Headers, then one byte every half second: the request is answered 408 and the
    connection closed after about ``request_body_timeout`` (2 s), while other clients are
    served normally."""
    headers: dict[str, str]
    if target == "login":
        path = "/api/auth/login"
        headers = {"Content-Type": "application/json", "Content-Length": "4000"}
    else:
        task_id = new_task(small, "trickle")
        create = api(small, "POST", f"/api/tasks/{task_id}/data/",
                     headers={"Upload-Length": "4000", "Tus-Resumable": "1.0.0",
                              "Upload-Metadata": "filename dHJpY2tsZS5wbmc="})
        assert create.status == 201, create.raw
        path = create.headers["Location"].split(str(small.port), 1)[-1]
        headers = {**admin(small), "Tus-Resumable": "1.0.0", "Upload-Offset": "0",
                   "Content-Type": "application/offset+octet-stream", "Content-Length": "4000"}
    with no_server_errors(small), connect(small) as sock:
        sock.sendall(request_head(small, "PATCH" if target == "tus" else "POST", path, headers))
        started = time.monotonic()
        answer = b""
        sock.settimeout(0.5)
        while time.monotonic() - started < 30:
            try:
                sock.sendall(b"{" if target == "login" else b"\0")
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                answer = sock.recv(65536)
                break
            except TimeoutError:
                assert call(small, "GET", "/api/server/about").status == 200
        elapsed = time.monotonic() - started
        assert status_of(answer) == 408, answer[:300]
        assert b"not received in time" in answer
        assert 1.5 < elapsed < 10
        rest, _ = read_until_closed(sock, 10)  # and the server closes the connection
        assert rest == b""


@pytest.mark.timeout(60)
def test_a_slow_but_steady_body_is_accepted(small: LiveServer) -> None:
    """4 KiB sent in four pieces over 3 s (above the minimum rate) is a normal request."""
    payload = json.dumps({"username": "nobody-" + "x" * 4000, "password": "p"}).encode()
    with connect(small) as sock:
        sock.sendall(request_head(small, "POST", "/api/auth/login", {
            "Content-Type": "application/json", "Content-Length": str(len(payload))}))
        step = len(payload) // 4 + 1
        for i in range(0, len(payload), step):
            time.sleep(0.75)
            sock.sendall(payload[i:i + step])
        sock.settimeout(10)
        answer = sock.recv(65536)
    assert status_of(answer) == 400, answer[:300]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sent", [b"", b"GET /api/server/about HTTP/1.1\r\nHost: x\r\nX-A: "])
def test_idle_and_slow_header_connections_are_closed(small: LiveServer, sent: bytes) -> None:
    """A connection that never completes its headers lasts ``keepalive_timeout`` (3 s)."""
    with connect(small) as sock:
        sock.sendall(sent)
        if sent:
            time.sleep(1)
            sock.sendall(b"a")
        data, elapsed = read_until_closed(sock, 20)
    assert data == b"" and elapsed < 10


# --- login throttling -------------------------------------------------------------------------


def _wait_window() -> None:
    time.sleep(float(THROTTLE["FRAMESVC_LOGIN_FAILURE_WINDOW"]) + 0.2)


# The throttle tests share one server and run in this order: the first three leave at
# most 9 address failures (the limit is 12), the third ends with a full window of waiting,
# so the address test starts from zero.


def test_failed_logins_per_user_are_throttled(throttled: LiveServer) -> None:
    name = unique()
    assert register(throttled, name, PASSWORD).status == 201
    with no_server_errors(throttled):
        for _ in range(3):
            assert login(throttled, name, "wrong-password").status == 400
        blocked = login(throttled, name, PASSWORD)  # even the right password waits
        assert blocked.status == 429, blocked.raw
        assert blocked.json["detail"].startswith("Request was throttled.")
        retry = int(blocked.headers["Retry-After"])
        assert 1 <= retry <= 10
        # The same account by e-mail, and by Basic auth, shares the count.
        by_email = call(throttled, "POST", "/api/auth/login",
                        body={"email": f"{name}@example.com", "password": PASSWORD})
        assert by_email.status == 429
        assert call(throttled, "GET", "/api/users/self",
                    headers=basic(name, PASSWORD)).status == 429
        # Another user is not affected.
        other = unique()
        assert register(throttled, other, PASSWORD).status == 201
        assert login(throttled, other, PASSWORD).status == 200
        time.sleep(retry + 0.2)
        ok = login(throttled, name, PASSWORD)
        assert ok.status == 200 and ok.json["key"]


def test_basic_auth_failures_are_throttled_too(throttled: LiveServer) -> None:
    name = unique()
    assert register(throttled, name, PASSWORD).status == 201
    with no_server_errors(throttled):
        for _ in range(3):
            assert call(throttled, "GET", "/api/users/self",
                        headers=basic(name, "wrong-password")).status == 401
        assert login(throttled, name, PASSWORD).status == 429


def test_sdk_login_works_after_a_throttle(throttled: LiveServer) -> None:
    name = unique()
    assert register(throttled, name, PASSWORD).status == 201
    for _ in range(3):
        assert login(throttled, name, "wrong-password").status == 400
    with pytest.raises(Exception, match=r"429|throttled"):
        make_client(throttled.url, credentials=(name, PASSWORD))
    _wait_window()
    with make_client(throttled.url, credentials=(name, PASSWORD)) as client:
        assert client.users.retrieve_current_user().username == name


def test_failures_per_address_are_throttled(throttled: LiveServer) -> None:
    """Many usernames from one address, all at once: exactly the address limit (12) of
    them is checked; an attempt counts from the moment it is admitted, so a concurrent
    burst cannot slip past the count."""
    # Passwords too long to be anyone's are refused without running the KDF, so the burst
    # is fast on a busy machine; they count like any other failure.
    hopeless = "x" * 5000
    with no_server_errors(throttled):
        with ThreadPoolExecutor(16) as pool:
            statuses = sorted(pool.map(
                lambda _: login(throttled, unique("ghost"), hopeless).status, range(16)))
        assert statuses == [400] * 12 + [429] * 4
        blocked = login(throttled, unique("ghost"), "x")
        assert blocked.status == 429 and "Retry-After" in blocked.headers
        # Credentials that need no password check are not throttled.
        name = unique()
        key = register(throttled, name, PASSWORD).json["key"]
        assert call(throttled, "GET", "/api/users/self",
                    headers={"Authorization": f"Token {key}"}).status == 200


# --- security headers -------------------------------------------------------------------------


def _assert_security_headers(reply: Any) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert reply.headers.get(name) == value, (name, dict(reply.headers))
    assert reply.headers.get("Server") == "framesvc", reply.headers.get("Server")


def test_security_headers_on_every_kind_of_response(small: LiveServer, tmp_path: Path) -> None:
    task_id = new_task(small, "headers")
    files = [mediagen.write_image(tmp_path / f"{i}.png", i, (16, 16)) for i in range(2)]
    with make_client(small.url, credentials=(small.admin_user, small.admin_password)) as client:
        client.config.status_check_period = POLL
        client.tasks.retrieve(task_id).upload_data(resources=files,
                                                   params={"image_quality": 70})
    replies = {
        "public json": call(small, "GET", "/api/server/about"),
        "401": call(small, "GET", "/api/tasks"),
        "404": api(small, "GET", "/api/tasks/999999"),
        "404 route": api(small, "GET", "/api/nothing-here"),
        "405": api(small, "PUT", "/api/server/about"),
        "400 login": call(small, "POST", "/api/auth/login", body={}),
        "413": api(small, "POST", "/api/tasks", raw_body=b"{" + b" " * (65 * 1024) + b"}",
                   headers={"Content-Type": "application/json"}),
        "frame file": api(small, "GET",
                          f"/api/tasks/{task_id}/data?type=frame&number=0&quality=original"),
        "chunk file": api(small, "GET",
                          f"/api/tasks/{task_id}/data?type=chunk&number=0&quality=compressed"),
        "304": None,
        "range 206": api(small, "GET",
                         f"/api/tasks/{task_id}/data?type=chunk&number=0&quality=original",
                         headers={"Range": "bytes=0-9"}),
        "preview": api(small, "GET", f"/api/tasks/{task_id}/preview"),
        "metrics": call(small, "GET", "/metrics"),
        "logo": call(small, "GET", "/static/logo.svg"),
        "outside the api": call(small, "GET", "/nothing"),
    }
    etag = replies["chunk file"].headers["ETag"]
    replies["304"] = api(small, "GET",
                         f"/api/tasks/{task_id}/data?type=chunk&number=0&quality=compressed",
                         headers={"If-None-Match": etag})
    expected_status = {"public json": 200, "401": 401, "404": 404, "404 route": 404,
                       "405": 405, "400 login": 400, "413": 413, "frame file": 200,
                       "chunk file": 200, "304": 304, "range 206": 206, "preview": 200,
                       "metrics": 200, "logo": 200, "outside the api": 404}
    for name, reply in replies.items():
        assert reply.status == expected_status[name], (name, reply.status, reply.raw[:200])
        _assert_security_headers(reply)


def test_no_version_in_errors_of_the_http_parser(small: LiveServer) -> None:
    """A request line aiohttp cannot parse is answered before any application code runs;
    it still does not name aiohttp or its version."""
    with connect(small) as sock:
        sock.sendall(b"GARBAGE \x00\x01 HTTP/9.9\r\n\r\n")
        data, _ = read_until_closed(sock, 10)
    assert status_of(data) == 400
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    assert "server: framesvc" in head and "aiohttp" not in head and "python" not in head


# --- media limits as settings -----------------------------------------------------------------


def _upload_fails(server: LiveServer, files: list[Path], *words: str) -> None:
    with make_client(server.url, credentials=(server.admin_user, server.admin_password)) as c:
        c.config.status_check_period = POLL
        task = c.tasks.create({"name": "limits", "labels": [{"name": "a"}]})
        with pytest.raises(BackgroundRequestException) as info:
            task.upload_data(resources=files, params={"image_quality": 70})
    for word in words:
        assert word in str(info.value), str(info.value)


def test_media_limits_are_settings(small: LiveServer, tmp_path: Path) -> None:
    with no_server_errors(small):
        _upload_fails(small, [mediagen.write_image(tmp_path / "big.png", 1, (101, 100))],
                      "big.png", "10100 pixels", "limit of 10000")
        _upload_fails(small, [mediagen.zip_many(tmp_path, 60)], "many_60.zip", "50")
        _upload_fails(small, [hm.zip_stored_random(tmp_path, 2)], "stored_2mb.zip")
        _upload_fails(small, [hm.h264(tmp_path, "long.mp4", frames=12)], "long.mp4", "10")


def test_upload_request_over_max_request_bytes_is_413(small: LiveServer, tmp_path: Path) -> None:
    task_id = new_task(small, "big upload")
    body = b"\0" * (4 * 1024 * 1024 + 1)
    with no_server_errors(small):
        reply = api(small, "POST", f"/api/tasks/{task_id}/data/", raw_body=body,
                    headers={"Upload-Multiple": "", "Content-Type": "multipart/form-data; "
                             "boundary=xyz"})
        assert reply.status == 413, reply.raw[:300]


def test_max_upload_bytes_bounds_one_file_and_a_task(small: LiveServer) -> None:
    """3 MiB: a TUS file declaring more is 413 at once; multipart batches that would take
    the task's session past it are 413, and what was accepted stays."""
    task_id = new_task(small, "upload budget")
    url = f"/api/tasks/{task_id}/data/"
    meta = "filename " + base64.b64encode(b"big.bin").decode()
    with no_server_errors(small):
        big = api(small, "POST", url, headers={"Upload-Length": str(3 * 1024 * 1024 + 1),
                                               "Tus-Resumable": "1.0.0",
                                               "Upload-Metadata": meta})
        assert big.status == 413, big.raw
        assert api(small, "POST", url, headers={"Upload-Start": ""}).status == 202
        statuses = []
        for i in range(3):
            boundary = f"b{i}"
            body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"client_files[0]\"; "
                    f"filename=\"part{i}.bin\"\r\n\r\n").encode() + bytes(1200 * 1024) + (
                    f"\r\n--{boundary}--\r\n").encode()
            reply = api(small, "POST", url, raw_body=body, headers={
                "Upload-Multiple": "", "Content-Type": f"multipart/form-data; boundary={boundary}"})
            statuses.append(reply.status)
        assert statuses == [200, 200, 413], statuses


def test_pillow_limit_follows_max_image_pixels(sdk_client, server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """200 MP is below framesvc's default limit (300 MP) but above Pillow's own default
    refusal (2 x 89.5 MP): with the two aligned at start, the image is accepted."""
    sdk_client.config.status_check_period = POLL
    path = hm.png_real(tmp_path, 20_000, 10_000)
    assert path.stat().st_size < 1 << 20
    with no_server_errors(server):
        task = sdk_client.tasks.create({"name": "200 MP", "labels": [{"name": "a"}]})
        task.upload_data(resources=[path], params={"image_quality": 70})
        meta = task.get_meta()
        assert (meta.frames[0].width, meta.frames[0].height) == (20_000, 10_000)


def test_cli_ingest_uses_the_same_pixel_limit(server: LiveServer, tmp_path: Path) -> None:
    """``framesvc ingest`` aligns Pillow's limit as ``serve`` does: 200 MP is accepted."""
    import subprocess
    import sys

    path = hm.png_real(tmp_path, 20_000, 10_000)
    done = subprocess.run(
        [sys.executable, "-m", "framesvc.cli", "ingest", str(path), "--name", "cli 200 MP",
         "--data-dir", str(server.data_dir), "--owner", server.admin_user, "--quiet"],
        capture_output=True, text=True, timeout=120, env=server.env,
    )
    assert done.returncode == 0, done.stderr
    task_id = int(done.stdout.split()[1].rstrip(":"))
    meta = api(server, "GET", f"/api/tasks/{task_id}/data/meta").json
    assert (meta["frames"][0]["width"], meta["frames"][0]["height"]) == (20_000, 10_000)
