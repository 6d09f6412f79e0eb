"""One build per distinct content, observed from outside through ``/metrics``.

These tests run their own servers, so that the process-wide counters they read move
only because of what the test does: one without prefetching (exact build counts) and
one with it (prefetched chunks become hits).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from authutil import call
from conftest import LiveServer, start_server, stop_server
from cvat_sdk import Client, Config
from mediaapi import (
    bump_data_version,
    create_task,
    decode_image,
    decode_mp4,
    get,
    images,
    jobs_of,
    metric,
    metrics,
    video,
    zip_entries,
)
from mediagen import read_frame_number

BUILDS = "framesvc_cache_builds_total"
ITEMS = "framesvc_media_items_total"


def sdk(server: LiveServer, cache: Path) -> Client:
    client = Client(server.url, config=Config(cache_dir=cache, status_check_period=0.05))
    client.login((server.admin_user, server.admin_password))
    return client


@pytest.fixture(scope="module")
def quiet_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("single_flight"),
                        {"FRAMESVC_PREFETCH_CHUNKS": "0", "FRAMESVC_WORKERS": "2"})
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def quiet_client(quiet_server: LiveServer,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with sdk(quiet_server, tmp_path_factory.mktemp("sf_sdk")) as client:
        yield client


def token(server: LiveServer) -> str:
    reply = call(server, "POST", "/api/auth/login",
                 body={"username": server.admin_user, "password": server.admin_password})
    assert reply.status == 200, reply.raw
    return str(reply.json["key"])


async def fetch_all(server: LiveServer, path: str, count: int) -> list[tuple[int, bytes, str]]:
    headers = {"Authorization": f"Token {token(server)}"}
    async with aiohttp.ClientSession(server.url, headers=headers) as session:

        async def one() -> tuple[int, bytes, str]:
            async with session.get(path) as response:
                return response.status, await response.read(), response.headers["ETag"]

        return await asyncio.gather(*(one() for _ in range(count)))


def delta(before: dict[Any, float], after: dict[Any, float], name: str, **labels: str) -> float:
    return metric(after, name, **labels) - metric(before, name, **labels)


def test_concurrent_requests_for_a_cold_chunk_build_it_once(
    quiet_server: LiveServer, quiet_client: Client, tmp_path: Path
) -> None:
    clip = video(tmp_path / "busy.mp4", 24, (320, 240))
    task = create_task(quiet_client, [clip], name="single-flight", chunk_size=24)
    path = f"/api/tasks/{task.id}/data/?type=chunk&number=0&quality=original"
    before = metrics(quiet_server)
    results = asyncio.run(fetch_all(quiet_server, path, 32))
    after = metrics(quiet_server)

    assert {status for status, _, _ in results} == {200}
    bodies = {body for _, body, _ in results}
    assert len(bodies) == 1
    assert len({etag for _, _, etag in results}) == 1
    assert [read_frame_number(p) for p in decode_mp4(bodies.pop())] == list(range(24))
    assert delta(before, after, BUILDS) == 1
    assert delta(before, after, ITEMS, type="chunk", cache="miss") == 1
    assert (delta(before, after, ITEMS, type="chunk", cache="shared")
            + delta(before, after, ITEMS, type="chunk", cache="hit")) == 31
    # Only the requests that found no item count as cache misses; joiners coalesce.
    assert delta(before, after, "framesvc_cache_misses_total") >= 1
    assert delta(before, after, "framesvc_bytes_served_total") == 32 * len(results[0][1])


def test_requests_beyond_the_pool_queue_wait_instead_of_failing(
    quiet_server: LiveServer, quiet_client: Client, tmp_path: Path
) -> None:
    """48 distinct cold chunks at once exceed the 2-worker pool's 2 + 32 places."""
    task = create_task(quiet_client, images(tmp_path, 48), name="burst", chunk_size=1)

    async def burst() -> list[tuple[int, bytes]]:
        headers = {"Authorization": f"Token {token(quiet_server)}"}
        async with aiohttp.ClientSession(quiet_server.url, headers=headers) as session:

            async def one(number: int) -> tuple[int, bytes]:
                path = f"/api/tasks/{task.id}/data/?type=chunk&number={number}"
                async with session.get(path) as response:
                    return response.status, await response.read()

            return await asyncio.gather(*(one(n) for n in range(48)))

    before = metrics(quiet_server)
    results = asyncio.run(burst())
    after = metrics(quiet_server)
    assert [status for status, _ in results] == [200] * 48
    for number, (_, data) in enumerate(results):
        ((_, entry),) = zip_entries(data)
        assert read_frame_number(decode_image(entry)) == number
    assert delta(before, after, BUILDS) == 48


def test_a_job_chunk_and_a_task_chunk_with_the_same_frames_share_one_entry(
    quiet_server: LiveServer, quiet_client: Client, tmp_path: Path
) -> None:
    task = create_task(quiet_client, images(tmp_path, 5), name="shared", chunk_size=8)
    (job,) = jobs_of(task)
    before = metrics(quiet_server)
    by_job = get(quiet_server, f"/api/jobs/{job.id}/data?type=chunk&index=0")
    by_task = get(quiet_server, f"/api/tasks/{task.id}/data/?type=chunk&number=0")
    by_number = get(quiet_server, f"/api/jobs/{job.id}/data?type=chunk&number=0")
    after = metrics(quiet_server)
    assert by_job.raw == by_task.raw == by_number.raw
    assert len(zip_entries(by_job.raw)) == 5
    assert by_job.headers["ETag"] == by_task.headers["ETag"]
    assert delta(before, after, BUILDS) == 1
    assert delta(before, after, ITEMS, type="chunk", cache="hit") == 2

    # Another quality is other content: a second entry.
    before = metrics(quiet_server)
    get(quiet_server, f"/api/tasks/{task.id}/data/?type=chunk&number=0&quality=original")
    get(quiet_server, f"/api/jobs/{job.id}/data?type=chunk&index=0&quality=original")
    after = metrics(quiet_server)
    assert delta(before, after, BUILDS) == 1

    # Frames and previews are shared between a task and its jobs too.
    before = metrics(quiet_server)
    get(quiet_server, f"/api/tasks/{task.id}/data/?type=frame&number=2")
    get(quiet_server, f"/api/jobs/{job.id}/data?type=frame&number=2")
    get(quiet_server, f"/api/tasks/{task.id}/preview")
    get(quiet_server, f"/api/jobs/{job.id}/preview")
    after = metrics(quiet_server)
    assert delta(before, after, BUILDS) == 2


def test_a_data_version_bump_makes_new_keys(
    quiet_server: LiveServer, quiet_client: Client, tmp_path: Path
) -> None:
    task = create_task(quiet_client, images(tmp_path, 3), name="versioned")
    path = f"/api/tasks/{task.id}/data/?type=chunk&number=0"
    first = get(quiet_server, path)
    before = metrics(quiet_server)
    assert get(quiet_server, path).raw == first.raw
    assert delta(before, metrics(quiet_server), BUILDS) == 0

    bump_data_version(quiet_server, task.id)
    before = metrics(quiet_server)
    second = get(quiet_server, path)
    assert delta(before, metrics(quiet_server), BUILDS) == 1
    assert second.raw == first.raw  # same media, new entry
    assert second.headers["ETag"] != first.headers["ETag"]
    # A client holding the old validator gets the new entry, not a 304.
    reply = get(quiet_server, path, headers={"If-None-Match": first.headers["ETag"]})
    assert reply.status == 200


def test_metrics_exposition(quiet_server: LiveServer) -> None:
    reply = call(quiet_server, "GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/plain")
    text = reply.raw.decode()
    for name in ("framesvc_cache_hits_total", "framesvc_cache_misses_total",
                 "framesvc_cache_builds_total", "framesvc_cache_build_seconds_bucket",
                 "framesvc_cache_evictions_total", "framesvc_bytes_served_total",
                 "framesvc_worker_queue_depth", "framesvc_prefetch_builds_total",
                 "framesvc_media_items_total"):
        assert f"\n{name}" in text, name
    values = metrics(quiet_server)
    assert metric(values, "framesvc_worker_queue_depth") == 0


# --- prefetching ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prefetch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("prefetch"),
                        {"FRAMESVC_PREFETCH_CHUNKS": "2", "FRAMESVC_WORKERS": "2"})
    yield live
    stop_server(live)


def wait_for(server: LiveServer, name: str, value: float, timeout: float = 30) -> dict[Any, float]:
    deadline = time.monotonic() + timeout
    while True:
        values = metrics(server)
        if metric(values, name) >= value or time.monotonic() > deadline:
            return values
        time.sleep(0.05)


def test_prefetch_builds_the_next_job_chunks(prefetch_server: LiveServer,
                                             tmp_path: Path) -> None:
    with sdk(prefetch_server, tmp_path / "sdk") as client:
        task = create_task(client, images(tmp_path / "img", 10), name="prefetch",
                           chunk_size=2)
    (job,) = jobs_of(task)
    url = f"/api/jobs/{job.id}/data?type=chunk&index={{}}"
    before = metrics(prefetch_server)
    assert get(prefetch_server, url.format(0)).status == 200
    offered = metric(before, "framesvc_prefetch_offered_total") + 2
    built = metric(before, "framesvc_prefetch_builds_total") + 2
    after = wait_for(prefetch_server, "framesvc_prefetch_builds_total", built)
    assert metric(after, "framesvc_prefetch_offered_total") == offered
    assert metric(after, "framesvc_prefetch_builds_total") == built

    # The prefetched chunks are hits now; fetching them prefetches the ones after.
    for index in (1, 2):
        reply = get(prefetch_server, url.format(index))
        numbers = [read_frame_number(decode_image(d)) for _, d in zip_entries(reply.raw)]
        assert numbers == [2 * index, 2 * index + 1]
    later = metrics(prefetch_server)
    assert delta(after, later, ITEMS, type="chunk", cache="hit") == 2
    # Task chunks and frames are not prefetched.
    before = metrics(prefetch_server)
    get(prefetch_server, f"/api/tasks/{task.id}/data/?type=chunk&number=0&quality=original")
    get(prefetch_server, f"/api/jobs/{job.id}/data?type=frame&number=9")
    assert delta(before, metrics(prefetch_server), "framesvc_prefetch_offered_total") == 0
