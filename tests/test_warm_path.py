"""The warm path: small items served from memory, exact invalidation of what a warm
request resolves (store write generation), short-lived credential caching.

Uses the session ``server`` (a real ``framesvc serve``) and the real ``cvat-sdk``; counters
are read from ``/metrics`` as deltas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import LiveServer
from mediaapi import create_task, decode_image, get, images, jobs_of, metric, metrics

from framesvc.cache.items import Entry
from framesvc.cache.memory import MemoryTier

MEMORY_HITS = "framesvc_cache_memory_hits_total"


@pytest.fixture(scope="module")
def image_task(client: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    files = images(tmp_path_factory.mktemp("warm"), 4, (96, 64))
    task = create_task(client, files, name="warm", image_quality=70)
    return task.id, [j.id for j in jobs_of(task)]


def _entry(key: str, size: int) -> Entry:
    import datetime as dt

    return Entry(key=key, path=Path("/nonexistent"), size=size, mime="image/jpeg",
                 digest="d" * 64, created=dt.datetime.now(dt.UTC), extra={})


def test_memory_tier_is_a_bounded_lru() -> None:
    tier = MemoryTier(max_bytes=300, max_item=120)
    assert not tier.put(_entry("big", 121), b"x" * 121)  # over the per-item limit
    for name in ("a", "b", "c"):
        assert tier.put(_entry(name, 100), name.encode() * 100)
    assert tier.bytes == 300 and len(tier) == 3
    assert tier.get("a") is not None  # "a" is now the most recently used
    tier.put(_entry("d", 100), b"d" * 100)
    assert tier.get("b") is None  # the least recently used went
    assert {k for k in "acd" if tier.get(k) is not None} == {"a", "c", "d"}
    assert tier.bytes == 300
    tier.discard("a")
    assert tier.get("a") is None and tier.bytes == 200
    assert not MemoryTier(0).enabled


def test_warm_frame_comes_from_memory_with_disk_semantics(server: LiveServer,
                                                           image_task: Any) -> None:
    _, job_ids = image_task
    path = f"/api/jobs/{job_ids[0]}/data?type=frame&number=1&quality=compressed"
    first = get(server, path)  # built (and copied into memory)
    assert first.status == 200, first.raw
    before = metrics(server)
    second = get(server, path)
    after = metrics(server)
    assert second.status == 200
    assert metric(after, MEMORY_HITS) - metric(before, MEMORY_HITS) == 1
    assert second.raw == first.raw and decode_image(second.raw).shape[:2] == (64, 96)
    for header in ("ETag", "Last-Modified", "Cache-Control", "Accept-Ranges", "Content-Type"):
        assert second.headers[header] == first.headers[header], header
    assert int(second.headers["Content-Length"]) == len(first.raw)

    etag = first.headers["ETag"]
    assert get(server, path, {"If-None-Match": etag}).status == 304
    part = get(server, path, {"Range": "bytes=2-9"})
    assert part.status == 206 and part.raw == first.raw[2:10]
    assert part.headers["Content-Range"] == f"bytes 2-9/{len(first.raw)}"
    tail = get(server, path, {"Range": "bytes=-5"})
    assert tail.status == 206 and tail.raw == first.raw[-5:]
    beyond = get(server, path, {"Range": f"bytes={len(first.raw)}-"})
    assert beyond.status == 416
    assert get(server, path, {"Range": "bytes=1-2", "If-Range": '"other"'}).raw == first.raw
    assert get(server, path, {"Range": "nonsense"}).status == 400


# --- the store write generation ---------------------------------------------------------------


def test_store_generation_counts_committed_writes_only(tmp_path: Path) -> None:
    import asyncio
    import sqlite3

    import sqlalchemy as sa

    from framesvc.app import SERVICES, make_app
    from framesvc.config import Settings
    from framesvc.store.schema import users

    app = make_app(Settings(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache"))
    svc = app[SERVICES]

    async def scenario() -> list[Any]:
        seen = [svc.store_generation]
        async with svc.engine.connect() as conn:  # reads only
            await conn.execute(sa.select(users.c.id))
        seen.append(svc.store_generation)
        async with svc.engine.begin() as conn:  # one committed write
            await conn.execute(sa.update(users).where(users.c.id == -1).values(
                first_name="x"))
        seen.append(svc.store_generation)
        with pytest.raises(RuntimeError):  # a write rolled back
            async with svc.engine.begin() as conn:
                await conn.execute(sa.update(users).values(first_name="y"))
                raise RuntimeError
        seen.append(svc.store_generation)
        token = svc.generation.token()
        assert svc.generation.token() == token  # nothing happened in between
        # Another process's commit is not counted in-process but changes the token.
        url = sa.engine.make_url(svc.settings.effective_database_url)
        with sqlite3.connect(str(url.database)) as other:
            other.execute("CREATE TABLE scratch_for_test (x INTEGER)")
        seen.append(svc.store_generation)
        seen.append(svc.generation.token() != token)
        await svc.engine.dispose()
        svc.generation.close()
        return seen

    before, after_read, after_write, after_rollback, after_other, token_moved = (
        asyncio.run(scenario()))
    assert after_read == before
    assert after_write == before + 1
    assert after_rollback == after_write
    assert after_other == after_write and token_moved
    svc.pool.shutdown()


# --- resolved requests and callers, invalidated by writes ---------------------------------------


def _account(server: LiveServer) -> tuple[int, str, dict[str, str]]:
    """A new user: id, its Token key, and the cookies of one session."""
    from authutil import new_account

    account = new_account(server, "warm", PASSWORD)
    return account.id, account.key, account.cookies


PASSWORD = "warm-Path-Secret-7"


def test_reassigning_a_job_hides_its_data_from_the_old_assignee_at_once(
        server: LiveServer, image_task: Any) -> None:
    from authutil import call
    from mediaapi import api

    _, job_ids = image_task
    job = job_ids[0]
    user_id, key, _ = _account(server)
    token = {"Authorization": f"Token {key}"}
    path = f"/api/jobs/{job}/data?type=frame&number=0&quality=compressed"
    assert call(server, "GET", path, headers=token).status == 404  # not theirs yet
    assert api(server, "PATCH", f"/api/jobs/{job}", body={"assignee": user_id}).status == 200
    for _ in range(3):  # resolved once, then served from the in-process caches
        reply = call(server, "GET", path, headers=token)
        assert reply.status == 200, reply.raw
    assert api(server, "PATCH", f"/api/jobs/{job}", body={"assignee": None}).status == 200
    gone = call(server, "GET", path, headers=token)
    assert gone.status == 404 and gone.json == {"detail": "Not found."}


def test_logout_ends_a_cached_session_and_token_at_once(server: LiveServer) -> None:
    from authutil import call

    _, key, cookies = _account(server)
    session = {"sessionid": cookies["sessionid"]}
    for _ in range(3):
        assert call(server, "GET", "/api/users/self", cookies=session).status == 200
        assert call(server, "GET", "/api/users/self",
                    headers={"Authorization": f"Token {key}"}).status == 200
    out = call(server, "POST", "/api/auth/logout",
               headers={"X-CSRFToken": cookies["csrftoken"]},
               cookies={**session, "csrftoken": cookies["csrftoken"]})
    assert out.status == 200, out.raw
    assert call(server, "GET", "/api/users/self", cookies=session).status == 401
    assert call(server, "GET", "/api/users/self",
                headers={"Authorization": f"Token {key}"}).status == 401


def test_a_cli_password_change_ends_cached_sessions_within_the_ttl(server: LiveServer) -> None:
    import time

    from authutil import call, cli

    from framesvc.http.auth import CALLER_TTL

    user_id, _, cookies = _account(server)
    session = {"sessionid": cookies["sessionid"]}
    for _ in range(3):
        assert call(server, "GET", "/api/users/self", cookies=session).status == 200
    me = call(server, "GET", "/api/users/self", cookies=session).json
    assert me["id"] == user_id
    changed = cli(server, "user", "passwd", me["username"], "--password", "another-Secret-8")
    assert changed.returncode == 0, changed.stderr
    deadline = time.monotonic() + CALLER_TTL + 1.0  # the documented bound (plus slack)
    while call(server, "GET", "/api/users/self", cookies=session).status == 200:
        assert time.monotonic() < deadline, "the old session outlived the cache's TTL"
        time.sleep(0.1)
