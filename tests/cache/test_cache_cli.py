"""``framesvc cache stats|clear`` on a populated cache directory, run as a real command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO

from cache_fixtures import pool_fixture  # noqa: F401 (fixtures)
from cache_procs import payload

from framesvc.cache import ItemMeta, MediaCache
from framesvc.workers import WorkerPool


def framesvc(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMESVC_")}
    return subprocess.run([sys.executable, "-m", "framesvc.cli", *args], capture_output=True,
                          text=True, env=env, timeout=60)


async def test_stats_and_clear(tmp_path: Path, pool: WorkerPool) -> None:
    cache_dir = tmp_path / "cache"
    cache = MediaCache(cache_dir, 5_000_000)
    sizes = {"a": 10_000, "b": 20_000, "c": 30_000}
    try:
        for key, size in sizes.items():
            def build(out: BinaryIO, key: str = key, size: int = size) -> ItemMeta:
                out.write(payload(key, size))
                return ItemMeta("image/jpeg")

            (await cache.get_or_build(key, build, pool)).close()
    finally:
        await cache.aclose()
    # A partial file left by a killed build (its stripe lock is free).
    (cache_dir / "staging" / "0007.0123456789abcdef.deadbeef.part").write_bytes(b"half")

    done = framesvc("cache", "stats", "--cache-dir", str(cache_dir), "--json")
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert stats["entries"] == 3
    assert stats["bytes"] == sum(sizes.values())
    assert stats["size_limit"] == 5_000_000  # the CLI does not reset the server's limit
    assert stats["bytes"] < stats["volume"] <= stats["size_limit"]
    assert stats["orphans_removed"] == 1
    assert stats["staging_files"] == 0

    done = framesvc("cache", "stats", "--cache-dir", str(cache_dir))
    assert done.returncode == 0, done.stderr
    assert "entries:          3" in done.stdout
    assert f"item bytes:       {sum(sizes.values())} " in done.stdout

    done = framesvc("cache", "clear", "--cache-dir", str(cache_dir))
    assert done.returncode == 0, done.stderr
    assert "removed 3 entries" in done.stdout
    assert list((cache_dir / "store").rglob("*.val")) == []

    done = framesvc("cache", "stats", "--cache-dir", str(cache_dir), "--json")
    assert json.loads(done.stdout)["entries"] == 0
    assert json.loads(done.stdout)["bytes"] == 0


def test_stats_of_a_missing_cache_fails_clearly(tmp_path: Path) -> None:
    done = framesvc("cache", "stats", "--cache-dir", str(tmp_path / "nothing"))
    assert done.returncode == 1
    assert "no media cache" in done.stdout
    assert not (tmp_path / "nothing").exists()
    done = framesvc("cache", "clear", "--cache-dir", str(tmp_path / "nothing"))
    assert done.returncode == 0
