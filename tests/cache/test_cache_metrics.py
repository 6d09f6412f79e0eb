"""The metrics module renders every cache series for a /metrics endpoint."""

from __future__ import annotations

from typing import BinaryIO

from cache_fixtures import cache_fixture, pool_fixture  # noqa: F401 (fixtures)

from framesvc import metrics
from framesvc.cache import ItemMeta, MediaCache
from framesvc.workers import WorkerPool


async def test_render_includes_cache_series_with_current_values(
    cache: MediaCache, pool: WorkerPool
) -> None:
    def build(out: BinaryIO) -> ItemMeta:
        out.write(b"abc")
        return ItemMeta("text/plain")

    (await cache.get_or_build("m", build, pool)).close()
    metrics.track_queue_depth(lambda: pool.queue_depth)
    body, content_type = metrics.render()
    text = body.decode()
    assert content_type.startswith("text/plain")
    for name in ("framesvc_cache_hits_total", "framesvc_cache_misses_total",
                 "framesvc_cache_builds_total", "framesvc_cache_build_seconds_bucket",
                 "framesvc_cache_evictions_total", "framesvc_bytes_served_total",
                 "framesvc_worker_queue_depth", "framesvc_cache_inflight_builds",
                 "process_cpu_seconds_total"):
        assert name in text, name
    builds = metrics.sample("framesvc_cache_builds_total")
    assert f"framesvc_cache_builds_total {builds}" in text
    assert metrics.sample("framesvc_cache_build_seconds_count") >= 1
    assert metrics.sample("framesvc_worker_queue_depth") == 0
