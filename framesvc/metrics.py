"""Prometheus metrics of the media path, defined once and incremented where things happen.

Every metric lives in one module-level registry (``REGISTRY``) rather than the
prometheus-client default one, so ``/metrics`` shows exactly framesvc's own series
plus the process and platform collectors, and so importing a library that registers
its own metrics in the default registry cannot collide with ours.  Modules import the
objects below and increment them; ``render()`` produces the text exposition for a
``/metrics`` endpoint.

Counters are per process.  Several ``framesvc serve`` processes sharing one cache
directory each report their own hits and builds; sum them in the scraper.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

# --- media cache -------------------------------------------------------------------------

CACHE_HITS = Counter(
    "framesvc_cache_hits_total",
    "Cache lookups answered by an entry that was already in the cache.",
    registry=REGISTRY,
)
CACHE_MEMORY_HITS = Counter(
    "framesvc_cache_memory_hits_total",
    "Cache hits answered from the in-memory tier of small items (also counted as hits).",
    registry=REGISTRY,
)
CACHE_MISSES = Counter(
    "framesvc_cache_misses_total",
    "Cache lookups that found no entry (the request then waited for a build).",
    registry=REGISTRY,
)
CACHE_COALESCED = Counter(
    "framesvc_cache_coalesced_total",
    "Missed requests answered by a build that another request or process ran "
    "(single-flight), instead of building again.",
    registry=REGISTRY,
)
CACHE_BUILDS = Counter(
    "framesvc_cache_builds_total",
    "Calls of a build function (one per distinct missing item, plus a second call "
    "when a full disk forces a rebuild outside the cache).",
    registry=REGISTRY,
)
CACHE_BUILD_FAILURES = Counter(
    "framesvc_cache_build_failures_total",
    "Builds that raised; nothing was cached and every waiter got the error.",
    registry=REGISTRY,
)
CACHE_BUILD_SECONDS = Histogram(
    "framesvc_cache_build_seconds",
    "Wall time of one build, including fsync and digest, excluding waiting for a worker.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
    registry=REGISTRY,
)
CACHE_TRANSIENT = Counter(
    "framesvc_cache_transient_total",
    "Items served from a temporary file outside the cache because the cache could "
    "not store them (disk full, cache database unavailable).",
    registry=REGISTRY,
)
CACHE_EVICTIONS = Counter(
    "framesvc_cache_evictions_total",
    "Entries removed by least-recently-used eviction to stay under the size limit.",
    registry=REGISTRY,
)
CACHE_ORPHANS_REMOVED = Counter(
    "framesvc_cache_orphans_removed_total",
    "Half-written temporary files of killed builds removed from the staging directory.",
    registry=REGISTRY,
)
CACHE_INFLIGHT = Gauge(
    "framesvc_cache_inflight_builds",
    "Builds this process is running or waiting to run (one per key).",
    registry=REGISTRY,
)
CACHE_ENTRIES = Gauge(
    "framesvc_cache_entries",
    "Entries in the media cache (as last observed by this process).",
    registry=REGISTRY,
)
CACHE_BYTES = Gauge(
    "framesvc_cache_bytes",
    "Bytes of cached item files (as last observed by this process).",
    registry=REGISTRY,
)

# --- serving and workers -------------------------------------------------------------------

BYTES_SERVED = Counter(
    "framesvc_bytes_served_total",
    "Media bytes sent in response bodies (chunks, frames, previews, context images).",
    registry=REGISTRY,
)
WORKER_QUEUE_DEPTH = Gauge(
    "framesvc_worker_queue_depth",
    "Jobs submitted to the media worker pool and not yet finished (running or waiting).",
    registry=REGISTRY,
)


def track_queue_depth(depth: Callable[[], float]) -> None:
    """Make ``WORKER_QUEUE_DEPTH`` read ``depth()`` at scrape time (e.g. ``pool.queue_depth``).

    A callback rather than inc/dec calls: the pool already knows its depth, and a
    scrape-time read cannot drift if a job path forgets to decrement.
    """
    WORKER_QUEUE_DEPTH.set_function(depth)


def render() -> tuple[bytes, str]:
    """The text exposition of every framesvc metric and its content type, for ``/metrics``."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def sample(name: str, labels: Mapping[str, str] | None = None) -> float:
    """Current value of one sample (0.0 if absent), e.g. ``sample("framesvc_cache_builds_total")``.

    For tests and diagnostics: read the registry the way a scraper would.
    """
    value = REGISTRY.get_sample_value(name, dict(labels or {}))
    return 0.0 if value is None else value
