"""In-process behaviour of MediaCache.get_or_build: one build per key, errors, timeouts."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from pathlib import Path
from typing import BinaryIO

import pytest
from cache_fixtures import cache_fixture, deltas_fixture, pool_fixture  # noqa: F401 (fixtures)
from cache_procs import payload

from framesvc.cache import CacheTimeout, ItemMeta, MediaCache, make_etag
from framesvc.workers import WorkerPool


async def test_32_concurrent_requests_for_a_cold_key_build_once(
    cache: MediaCache, pool: WorkerPool, deltas
) -> None:
    data = payload("chunk-a", 150_000)
    calls = 0
    lock = threading.Lock()

    def build(out: BinaryIO) -> ItemMeta:
        nonlocal calls
        with lock:
            calls += 1
        time.sleep(0.2)  # every request arrives while the build runs
        out.write(data)
        return ItemMeta("application/zip", {"frames": [0, 1, 2]})

    items = await asyncio.gather(*(cache.get_or_build("chunk-a", build, pool)
                                   for _ in range(32)))
    try:
        assert calls == 1
        assert deltas["builds"] == 1
        assert deltas["misses"] == 32
        assert deltas["coalesced"] == 31
        assert deltas["hits"] == 0
        assert deltas["build_failures"] == 0
        # Every waiter has its own open file, positioned at the start, with full content.
        assert len({item.file.fileno() for item in items}) == 32
        for item in items:
            assert item.file.read() == data
            assert item.size == len(data)
            assert item.mime == "application/zip"
            assert item.extra == {"frames": [0, 1, 2]}
            assert not item.transient
            assert item.created.tzinfo is not None
        digest = hashlib.sha256(data).hexdigest()
        assert {item.digest for item in items} == {digest}
        assert {item.etag for item in items} == {make_etag("chunk-a", digest)}
        assert items[0].etag.startswith('"') and items[0].etag.endswith('"')
    finally:
        for item in items:
            item.close()

    # The next request is a plain hit: no build, same validator.
    with await cache.get_or_build("chunk-a", build, pool) as again:
        assert again.file.read() == data
        assert again.etag == items[0].etag
    assert calls == 1
    assert deltas["hits"] == 1


async def test_same_content_different_keys_have_different_etags(
    cache: MediaCache, pool: WorkerPool
) -> None:
    def build(out: BinaryIO) -> ItemMeta:
        out.write(b"same bytes")
        return ItemMeta("image/jpeg")

    with await cache.get_or_build("k1", build, pool) as a, \
            await cache.get_or_build("k2", build, pool) as b:
        assert a.digest == b.digest
        assert a.etag != b.etag


async def test_failed_build_raises_in_every_waiter_and_caches_nothing(
    cache: MediaCache, pool: WorkerPool, deltas
) -> None:
    calls = 0

    class Broken(RuntimeError):
        pass

    def failing(out: BinaryIO) -> ItemMeta:
        nonlocal calls
        calls += 1
        out.write(b"partial")
        time.sleep(0.2)
        raise Broken("decoder exploded")

    results = await asyncio.gather(*(cache.get_or_build("bad", failing, pool)
                                     for _ in range(8)), return_exceptions=True)
    assert calls == 1
    assert all(isinstance(r, Broken) and str(r) == "decoder exploded" for r in results)
    assert deltas["build_failures"] == 1
    assert not cache.contains("bad")
    assert await cache.get("bad") is None
    assert list(cache.staging_dir.iterdir()) == []

    def working(out: BinaryIO) -> ItemMeta:
        nonlocal calls
        calls += 1
        out.write(b"fine now")
        return ItemMeta("text/plain")

    with await cache.get_or_build("bad", working, pool) as item:
        assert item.file.read() == b"fine now"
    assert calls == 2
    assert deltas["builds"] == 2


async def test_build_must_return_item_meta(cache: MediaCache, pool: WorkerPool) -> None:
    def sloppy(out: BinaryIO) -> ItemMeta:
        out.write(b"x")
        return "image/png"  # type: ignore[return-value]

    with pytest.raises(TypeError, match="ItemMeta"):
        await cache.get_or_build("sloppy", sloppy, pool)
    assert not cache.contains("sloppy")


async def test_waiter_timeout_is_not_a_failure_of_the_build(
    cache: MediaCache, pool: WorkerPool, deltas
) -> None:
    def slow(out: BinaryIO) -> ItemMeta:
        time.sleep(0.6)
        out.write(b"late but complete")
        return ItemMeta("text/plain")

    with pytest.raises(CacheTimeout):
        await cache.get_or_build("slow", slow, pool, timeout=0.1)
    # The build goes on without the impatient request; a patient one joins it or hits.
    with await cache.get_or_build("slow", slow, pool) as item:
        assert item.file.read() == b"late but complete"
    assert deltas["builds"] == 1


async def test_open_item_survives_deletion_and_clear(
    cache: MediaCache, pool: WorkerPool
) -> None:
    data = payload("held", 100_000)

    def build(out: BinaryIO) -> ItemMeta:
        out.write(data)
        return ItemMeta("video/mp4")

    with await cache.get_or_build("held", build, pool) as item:
        first = item.file.read(1000)
        assert cache.delete("held")
        assert not Path(item.path).exists()
        cache.clear()
        assert first + item.file.read() == data


async def test_sweep_leaves_a_running_builds_file_alone(
    cache: MediaCache, pool: WorkerPool
) -> None:
    started, release = threading.Event(), threading.Event()

    def build(out: BinaryIO) -> ItemMeta:
        out.write(b"first half")
        out.flush()
        started.set()
        release.wait(10)
        out.write(b", second half")
        return ItemMeta("text/plain")

    task = asyncio.create_task(cache.get_or_build("busy", build, pool))
    assert await asyncio.to_thread(started.wait, 10)
    # Same process, different open file description: the stripe lock still excludes.
    assert await asyncio.to_thread(cache.sweep) == 0
    stats = await asyncio.to_thread(cache.stats)
    assert stats.staging_files == 1
    assert stats.inflight == 1
    assert await cache.get("busy") is None  # nothing half-written is visible
    release.set()
    with await task as item:
        assert item.file.read() == b"first half, second half"
    assert list(cache.staging_dir.iterdir()) == []


async def test_invalidate_by_tag(cache: MediaCache, pool: WorkerPool) -> None:
    def build(out: BinaryIO) -> ItemMeta:
        out.write(b"x")
        return ItemMeta("image/jpeg")

    for key, tag in (("a", "data:1"), ("b", "data:1"), ("c", "data:2")):
        (await cache.get_or_build(key, build, pool, tag=tag)).close()
    assert cache.invalidate("data:1") == 2
    assert [cache.contains(k) for k in "abc"] == [False, False, True]
