"""MediaCache across processes: one build for racing processes, recovery from kill -9."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import BinaryIO

import cache_procs
from cache_fixtures import deltas_fixture, pool_fixture  # noqa: F401 (fixtures)
from cache_procs import payload

from framesvc.cache import ItemMeta, MediaCache
from framesvc.workers import WorkerPool

SPAWN = multiprocessing.get_context("spawn")


def test_two_processes_racing_for_one_key_build_once(tmp_path: Path) -> None:
    cache_dir, counter = tmp_path / "cache", tmp_path / "builds.txt"
    counter.touch()
    barrier, results = SPAWN.Barrier(2), SPAWN.Queue()
    procs = [
        SPAWN.Process(target=cache_procs.race,
                      args=(str(cache_dir), "chunk-x", 200_000, str(counter), barrier, results))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    try:
        outcomes = [results.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert [p.exitcode for p in procs] == [0, 0]

    builders = counter.read_text().split()
    assert len(builders) == 1, builders
    expected = payload("chunk-x", 200_000)
    assert {o["sha"] for o in outcomes} == {hashlib.sha256(expected).hexdigest()}
    assert len({o["etag"] for o in outcomes}) == 1
    assert {o["builder"] for o in outcomes} == {int(builders[0])}
    # Metrics tell the same story: one process built, the other waited and reused it.
    by_pid = {o["pid"]: o for o in outcomes}
    builder = by_pid[int(builders[0])]
    other = next(o for pid, o in by_pid.items() if pid != int(builders[0]))
    assert (builder["builds"], builder["coalesced"]) == (1, 0)
    assert (other["builds"], other["coalesced"]) == (0, 1)


async def test_writer_killed_mid_build_leaves_no_truncated_entry(
    tmp_path: Path, pool: WorkerPool, deltas
) -> None:
    cache_dir, marker = tmp_path / "cache", tmp_path / "half-written"
    size = 300_000
    writer = SPAWN.Process(target=cache_procs.killed_writer,
                           args=(str(cache_dir), "chunk-k", size, str(marker)))
    writer.start()
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert writer.is_alive(), "writer died before writing"
            assert time.monotonic() < deadline, "writer never got half way"
            time.sleep(0.05)

        # While the writer lives: its partial file is not an orphan, nor an entry.
        reader = MediaCache(cache_dir)
        staging = list(reader.staging_dir.iterdir())
        assert len(staging) == 1 and staging[0].stat().st_size == size // 2
        assert await reader.get("chunk-k") is None
        assert not reader.contains("chunk-k")

        os.kill(writer.pid, signal.SIGKILL)
        writer.join(timeout=30)
        assert writer.exitcode == -signal.SIGKILL
        await reader.aclose()
    finally:
        if writer.is_alive():
            writer.kill()

    # After the kill: opening the cache removes the orphan; the key is still missing.
    fresh = MediaCache(cache_dir)
    try:
        assert list(fresh.staging_dir.iterdir()) == []
        assert deltas["orphans_removed"] == 1
        assert await fresh.get("chunk-k") is None

        data = payload("chunk-k", size)

        def build(out: BinaryIO) -> ItemMeta:
            out.write(data)
            return ItemMeta("application/octet-stream")

        with await fresh.get_or_build("chunk-k", build, pool) as item:
            assert item.size == size
            assert item.file.read() == data
        assert deltas["builds"] == 1
        assert fresh.stats().staging_files == 0
    finally:
        await fresh.aclose()


async def test_repair_removes_a_file_published_without_its_row(
    tmp_path: Path, pool: WorkerPool
) -> None:
    """A writer killed between the rename into the store and the commit leaves such a file."""
    cache = MediaCache(tmp_path / "cache", 10_000_000)
    try:
        def build(out: BinaryIO) -> ItemMeta:
            out.write(b"kept")
            return ItemMeta("text/plain")

        (await cache.get_or_build("kept", build, pool)).close()
        stray = cache.store_dir / "ab" / "cd" / "0123456789abcdef0123456789ab.val"
        stray.parent.mkdir(parents=True, exist_ok=True)
        stray.write_bytes(b"never committed")
        assert cache.repair() >= 1
        assert not stray.exists()
        with await cache.get_or_build("kept", build, pool) as item:
            assert item.file.read() == b"kept"
        assert cache.repair() == 0, "repair is idempotent"
    finally:
        await cache.aclose()
