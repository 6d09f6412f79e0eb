"""Prometheus metrics of the media path, defined once and incremented where things happen.

Every metric lives in one module-level registry (``REGISTRY``) rather than the
prometheus-client default one, so ``/metrics`` shows exactly framesvc's own series
plus the process and platform collectors, and so importing a library that registers
its own metrics in the default registry cannot collide with ours.  Modules import the
objects below and increment them; ``render()`` produces the text exposition for a
``/metrics`` endpoint.

Several server processes (``serve --processes N``): the supervisor gives every process
one private ``PROMETHEUS_MULTIPROC_DIR`` before prometheus-client is imported, so each
process's values live in memory-mapped files there, and ``render()`` - in whichever
worker answers the scrape - reports the *sum over all processes* (prometheus-client's
multiprocess mode): counters and histograms add up (also those of workers that died
and were replaced), gauges follow their ``multiprocess_mode`` below, and the
``process_*`` figures are those of the supervisor and its live workers together
(:class:`ProcessGroupCollector`).  Without that variable (one process) everything is
exactly as in a plain single-process exporter.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

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
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

#: The directory of the processes' metric files, or None in a single process.  Read once:
#: prometheus-client chooses its value storage when it is imported, so it cannot change.
MULTIPROCESS_DIR: str | None = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
#: File in ``MULTIPROCESS_DIR`` naming the processes of the group, one pid a line, the
#: supervisor first; rewritten by the supervisor whenever a worker starts or ends.
PROCESSES_FILE = "processes.txt"

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
    multiprocess_mode="livesum",
)
CACHE_ENTRIES = Gauge(
    "framesvc_cache_entries",
    "Entries in the media cache (as last observed by this process).",
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
CACHE_BYTES = Gauge(
    "framesvc_cache_bytes",
    "Bytes of cached item files (as last observed by this process).",
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)

# --- serving and workers -------------------------------------------------------------------

BYTES_SERVED = Counter(
    "framesvc_bytes_served_total",
    "Media bytes sent in response bodies (chunks, frames, previews, context images).",
    registry=REGISTRY,
)
FASTLANE_ANSWERS = Counter(
    "framesvc_fastlane_answers_total",
    "Warm media answers written by the fast lane (http/fastlane.py); also counted as hits.",
    registry=REGISTRY,
)
WORKER_QUEUE_DEPTH = Gauge(
    "framesvc_worker_queue_depth",
    "Jobs submitted to the media worker pool and not yet finished (running or waiting).",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)


#: The depth callback of this process's pool (multi-process mode, see ``track_queue_depth``).
_queue_depth: Callable[[], float] | None = None
#: How often each process copies its pool's depth into its metric file (multi-process).
QUEUE_DEPTH_INTERVAL = 1.0


def track_queue_depth(depth: Callable[[], float]) -> None:
    """Make ``WORKER_QUEUE_DEPTH`` read ``depth()`` at scrape time (e.g. ``pool.queue_depth``).

    A callback rather than inc/dec calls: the pool already knows its depth, and a
    scrape-time read cannot drift if a job path forgets to decrement.  In multi-process
    mode a scrape reads the other processes' files, not their callbacks, so each
    process also copies its depth there every ``QUEUE_DEPTH_INTERVAL`` seconds
    (:func:`sample_queue_depth`); the answering process's own value is always fresh.
    """
    global _queue_depth
    if MULTIPROCESS_DIR is None:
        WORKER_QUEUE_DEPTH.set_function(depth)
    else:
        _queue_depth = depth
        WORKER_QUEUE_DEPTH.set(depth())


async def sample_queue_depth() -> None:
    """Copy this process's pool depth into its metric file forever (multi-process mode;
    run as a task, cancel it at shutdown).  Returns at once in a single process."""
    if MULTIPROCESS_DIR is None:
        return
    while True:
        if _queue_depth is not None:
            WORKER_QUEUE_DEPTH.set(_queue_depth())
        await asyncio.sleep(QUEUE_DEPTH_INTERVAL)


def group_pids(directory: str | Path) -> list[int]:
    """The pids named in the process group's file (supervisor first); [] if none."""
    try:
        text = (Path(directory) / PROCESSES_FILE).read_text()
    except OSError:
        return []
    return [int(line) for line in text.split() if line.isdigit()]


def write_group_pids(directory: str | Path, pids: Iterable[int]) -> None:
    """Replace the process group's file atomically (the supervisor's side)."""
    target = Path(directory) / PROCESSES_FILE
    temporary = target.with_name(f".{PROCESSES_FILE}.{os.getpid()}")
    temporary.write_text("".join(f"{pid}\n" for pid in pids))
    os.replace(temporary, target)


#: How the figures of several processes combine into one: a sum, except the start time
#: (the group's, i.e. the earliest) and the descriptor limit (the lowest of any process).
_COMBINE: dict[str, Callable[[list[float]], float]] = {
    "process_start_time_seconds": min,
    "process_max_fds": min,
}


class ProcessGroupCollector:
    """``process_*`` figures of the supervisor and its workers together: CPU seconds,
    memory and open descriptors summed, so the exposition is the service's whole, the
    way the framesvc counters are.  Also ``framesvc_worker_processes``, the number of
    live worker processes (the supervisor excluded)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = directory

    def collect(self) -> Iterable[Metric]:
        pids = group_pids(self.directory) or [os.getpid()]
        values: dict[str, list[float]] = {}
        kinds: dict[str, tuple[type, str]] = {}
        live = 0
        for pid in pids:
            families = list(ProcessCollector(pid=lambda pid=pid: pid, registry=None).collect())
            if families:
                live += 1
            for family in families:
                kinds[family.name] = (type(family), family.documentation)
                values.setdefault(family.name, []).extend(s.value for s in family.samples)
        for name, collected in values.items():
            kind, documentation = kinds[name]
            combine = _COMBINE.get(name, sum)
            yield kind(name, documentation, value=combine(collected))
        yield GaugeMetricFamily("framesvc_worker_processes",
                                "Worker processes serving requests (without the supervisor).",
                                value=max(0, live - 1) if len(pids) > 1 else live)


_multiprocess_registry: CollectorRegistry | None = None


def _exposed_registry() -> CollectorRegistry:
    """What ``/metrics`` shows: ``REGISTRY``, or in multi-process mode a registry that
    reads every process's files (built once; it reads the files at each scrape)."""
    global _multiprocess_registry
    if MULTIPROCESS_DIR is None:
        return REGISTRY
    if _multiprocess_registry is None:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=MULTIPROCESS_DIR)
        PlatformCollector(registry=registry)
        registry.register(ProcessGroupCollector(MULTIPROCESS_DIR))  # type: ignore[arg-type]
        _multiprocess_registry = registry
    return _multiprocess_registry


def render() -> tuple[bytes, str]:
    """The text exposition of every framesvc metric and its content type, for ``/metrics``."""
    if MULTIPROCESS_DIR is not None and _queue_depth is not None:
        with contextlib.suppress(Exception):
            WORKER_QUEUE_DEPTH.set(_queue_depth())
    return generate_latest(_exposed_registry()), CONTENT_TYPE_LATEST


def sample(name: str, labels: Mapping[str, str] | None = None) -> float:
    """Current value of one sample (0.0 if absent), e.g. ``sample("framesvc_cache_builds_total")``.

    For tests and diagnostics: read the registry the way a scraper would.
    """
    value = _exposed_registry().get_sample_value(name, dict(labels or {}))
    return 0.0 if value is None else value
