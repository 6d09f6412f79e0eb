"""Byte ranges and conditional requests on media responses (``http/responses.py``).

The parser is checked on its own; the behaviour through the real server: 206 with
``Content-Range``, 416 with ``bytes */size``, 400 ``Invalid Range header``, non-bytes
units ignored, ``If-None-Match``/``If-Modified-Since`` → 304 and ``If-Range``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import LiveServer
from cvat_sdk import make_client
from mediaapi import create_task, get, images, jobs_of

from framesvc.http.responses import ByteRange, MalformedRange, parse_range

# --- the parser ------------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "expected"), [
    (None, None),
    ("bytes=0-9", ByteRange(0, 9)),
    ("bytes=10-", ByteRange(10, None)),
    ("bytes=-5", ByteRange(None, 5)),
    (" Bytes = 3-4 ", ByteRange(3, 4)),
    ("items=0-1", None),
    ("none=whatever", None),
    ("bytes=" + "9" * 5000 + "-", ByteRange(10**19, None)),
])
def test_parse_range(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header) == expected


@pytest.mark.parametrize("header", [
    "", "bytes", "bytes=", "bytes=-", "bytes=1-2,3-4", "bytes=a-b", "=1-2", "bytes=1-2-3",
    "bytes=--1", "bytes=1", "bytes=0x1-2",
])
def test_parse_range_rejects(header: str) -> None:
    with pytest.raises(MalformedRange):
        parse_range(header)


@pytest.mark.parametrize(("spec", "size", "expected"), [
    (ByteRange(0, 9), 100, (0, 9)),
    (ByteRange(90, 200), 100, (90, 99)),
    (ByteRange(99, None), 100, (99, 99)),
    (ByteRange(100, None), 100, None),
    (ByteRange(5, 2), 100, None),
    (ByteRange(None, 5), 100, (95, 99)),
    (ByteRange(None, 500), 100, (0, 99)),
    (ByteRange(None, 0), 100, None),
    (ByteRange(0, 0), 0, None),
])
def test_resolve(spec: ByteRange, size: int, expected: tuple[int, int] | None) -> None:
    assert spec.resolve(size) == expected


# --- through the server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def task(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with make_client(f"http://{server.host}", port=server.port,
                     credentials=(server.admin_user, server.admin_password)) as client:
        folder: Path = tmp_path_factory.mktemp("ranges")
        yield create_task(client, images(folder, 6, (96, 72)), name="ranges", chunk_size=3)


@pytest.fixture(scope="module")
def chunk_url(task: Any) -> str:
    return f"/api/jobs/{jobs_of(task)[0].id}/data?type=chunk&index=1&quality=original"


@pytest.fixture(scope="module")
def full(server: LiveServer, chunk_url: str) -> Any:
    reply = get(server, chunk_url)
    assert reply.status == 200
    assert reply.headers["Accept-Ranges"] == "bytes"
    assert len(reply.raw) > 200
    return reply


def test_satisfiable_ranges(server: LiveServer, chunk_url: str, full: Any) -> None:
    data = full.raw
    size = len(data)
    for header, (start, end) in {
        "bytes=0-9": (0, 9),
        "bytes=10-": (10, size - 1),
        "bytes=-5": (size - 5, size - 1),
        f"bytes=5-{size * 10}": (5, size - 1),
        f"bytes={size - 1}-{size - 1}": (size - 1, size - 1),
        f"bytes=-{size + 50}": (0, size - 1),
    }.items():
        reply = get(server, chunk_url, headers={"Range": header})
        assert reply.status == 206, header
        assert reply.headers["Content-Range"] == f"bytes {start}-{end}/{size}"
        assert int(reply.headers["Content-Length"]) == end - start + 1
        assert reply.raw == data[start : end + 1]
        # Chunk headers ride along on partial responses too.
        assert reply.headers["X-Checksum"] == full.headers["X-Checksum"]
        assert reply.headers["ETag"] == full.headers["ETag"]


def test_resuming_a_download(server: LiveServer, chunk_url: str, full: Any) -> None:
    received = full.raw[:123]
    reply = get(server, chunk_url, headers={"Range": f"bytes={len(received)}-"})
    assert reply.status == 206
    assert reply.headers["Content-Range"].startswith(f"bytes {len(received)}-")
    assert received + reply.raw == full.raw


def test_unsatisfiable_ranges(server: LiveServer, chunk_url: str, full: Any) -> None:
    size = len(full.raw)
    for header in (f"bytes={size}-", f"bytes={size + 5}-{size + 9}", "bytes=9-3", "bytes=-0",
                   "bytes=" + "7" * 6000 + "-"):
        reply = get(server, chunk_url, headers={"Range": header})
        assert reply.status == 416, header
        assert reply.headers["Content-Range"] == f"bytes */{size}"
        assert reply.raw == b""


@pytest.mark.parametrize("header", ["bytes=", "bytes=-", "bytes=0-1,4-5", "bytes=x-y", "bytes"])
def test_malformed_ranges(server: LiveServer, chunk_url: str, header: str) -> None:
    reply = get(server, chunk_url, headers={"Range": header})
    assert reply.status == 400
    assert reply.raw == b"Invalid Range header"


def test_other_units_are_ignored(server: LiveServer, chunk_url: str, full: Any) -> None:
    reply = get(server, chunk_url, headers={"Range": "items=0-1"})
    assert reply.status == 200
    assert reply.raw == full.raw


def test_if_none_match(server: LiveServer, chunk_url: str, full: Any) -> None:
    etag = full.headers["ETag"]
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        reply = get(server, chunk_url, headers={"If-None-Match": header})
        assert reply.status == 304, header
        assert reply.raw == b""
        assert reply.headers["ETag"] == etag
        assert reply.headers["Cache-Control"] == "private, no-cache"
    reply = get(server, chunk_url, headers={"If-None-Match": '"other"'})
    assert reply.status == 200
    assert reply.raw == full.raw
    # A matching validator wins over a range.
    reply = get(server, chunk_url, headers={"If-None-Match": etag, "Range": "bytes=0-3"})
    assert reply.status == 304


def test_if_modified_since(server: LiveServer, chunk_url: str, full: Any) -> None:
    last_modified = full.headers["Last-Modified"]
    reply = get(server, chunk_url, headers={"If-Modified-Since": last_modified})
    assert reply.status == 304
    reply = get(server, chunk_url,
                headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert reply.status == 200
    # If-None-Match takes precedence over If-Modified-Since.
    reply = get(server, chunk_url, headers={"If-None-Match": '"other"',
                                            "If-Modified-Since": last_modified})
    assert reply.status == 200


def test_if_range(server: LiveServer, chunk_url: str, full: Any) -> None:
    etag = full.headers["ETag"]
    reply = get(server, chunk_url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert reply.status == 206
    assert reply.raw == full.raw[:10]
    reply = get(server, chunk_url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert reply.status == 200
    assert reply.raw == full.raw


def test_ranges_on_frames_and_previews(server: LiveServer, task: Any) -> None:
    for url in (f"/api/tasks/{task.id}/data/?type=frame&number=2&quality=original",
                f"/api/tasks/{task.id}/preview"):
        whole = get(server, url).raw
        reply = get(server, url, headers={"Range": "bytes=-16"})
        assert reply.status == 206, url
        assert reply.raw == whole[-16:]
        size = len(whole)
        assert reply.headers["Content-Range"] == f"bytes {size - 16}-{size - 1}/{size}"
