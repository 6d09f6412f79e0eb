"""Code run in separate (spawned) processes by the cache tests; importable by name."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path
from typing import Any, BinaryIO

from framesvc import metrics
from framesvc.cache import ItemMeta, MediaCache
from framesvc.workers import WorkerPool


def payload(key: str, size: int) -> bytes:
    """Deterministic, incompressible-looking bytes for a key."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{key}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def race(cache_dir: str, key: str, size: int, counter_path: str, barrier: Any,
         results: Any) -> None:
    """Build ``key`` in a fresh MediaCache after all racers reached the barrier."""

    async def main() -> dict[str, Any]:
        pool = WorkerPool(2)
        cache = MediaCache(cache_dir, 64 * 1024 * 1024)

        def build(out: BinaryIO) -> ItemMeta:
            with open(counter_path, "a") as counter:
                counter.write(f"{os.getpid()}\n")
            time.sleep(0.5)  # long enough for the other process to arrive and wait
            out.write(payload(key, size))
            return ItemMeta("application/octet-stream", {"builder": os.getpid()})

        barrier.wait()
        item = await cache.get_or_build(key, build, pool)
        with item:
            data = item.file.read()
        await cache.aclose()
        pool.shutdown()
        return {
            "pid": os.getpid(),
            "etag": item.etag,
            "sha": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "builder": item.extra["builder"],
            "builds": metrics.sample("framesvc_cache_builds_total"),
            "coalesced": metrics.sample("framesvc_cache_coalesced_total"),
        }

    results.put(asyncio.run(main()))


def killed_writer(cache_dir: str, key: str, size: int, marker: str) -> None:
    """Start building ``key``, write half of it, announce that, and hang until killed."""

    async def main() -> None:
        pool = WorkerPool(1)
        cache = MediaCache(cache_dir, 64 * 1024 * 1024)
        data = payload(key, size)

        def build(out: BinaryIO) -> ItemMeta:
            out.write(data[: size // 2])
            out.flush()
            Path(marker).write_text(str(os.getpid()))
            time.sleep(600)
            out.write(data[size // 2:])
            return ItemMeta("application/octet-stream")

        await cache.get_or_build(key, build, pool)

    asyncio.run(main())
