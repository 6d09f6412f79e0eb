"""Low-priority builds of the chunks a client will most likely ask for next.

A client that plays a job (the CVAT UI, an SDK loop) fetches chunk *i*, then *i+1*, ...
When chunk *i* has been served, the handler offers *i+1..i+k* here
(``Settings.prefetch_chunks`` = *k*), and they are built in the background so that the
next request is a cache hit.

Prefetching must never make a client wait, so it only uses capacity nobody else wants:

* a batch starts only while the worker pool has a worker to spare: at most
  ``workers - 1`` jobs running or queued (``pool.queue_depth``), so one worker stays
  free for the next client request.  A pool of one worker therefore never prefetches;
* before each build of a batch the check is repeated; when the pool has become busy the
  rest of the batch is dropped, not queued (a stale prefetch is worth nothing);
* at most ``workers - 1`` batches run at once; further offers are dropped;
* items already cached (or being built) are skipped without a cache lookup that would
  count as a miss.

A build that a prefetch has started is an ordinary single-flight build: a client that
asks for the same chunk meanwhile waits for it instead of building it again.  What a
prefetch cannot do is pre-empt a build it already started, so a client request can
still wait for a free worker behind it when *all* other workers are busy too.

Every offered, started, skipped, dropped and failed prefetch is counted in ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from framesvc import metrics
from framesvc.cache import Build, MediaCache

log = logging.getLogger("framesvc.prefetch")

PREFETCH_OFFERED = Counter(
    "framesvc_prefetch_offered_total",
    "Items offered for prefetching (the chunks after one a client fetched).",
    registry=metrics.REGISTRY,
)
PREFETCH_BUILDS = Counter(
    "framesvc_prefetch_builds_total",
    "Prefetches that ran a build in the worker pool.",
    registry=metrics.REGISTRY,
)
PREFETCH_SKIPPED = Counter(
    "framesvc_prefetch_skipped_total",
    "Offered items that were already cached or being built.",
    registry=metrics.REGISTRY,
)
PREFETCH_DROPPED = Counter(
    "framesvc_prefetch_dropped_total",
    "Offered items dropped because the worker pool was busy or enough prefetches ran.",
    registry=metrics.REGISTRY,
)
PREFETCH_FAILURES = Counter(
    "framesvc_prefetch_failures_total",
    "Prefetch builds that raised (the client's own request would then build it again).",
    registry=metrics.REGISTRY,
)


@dataclass(frozen=True)
class Candidate:
    """An item worth building ahead: its cache key and how to get its build.

    ``prepare`` is awaited only when the item will really be built (it may query the
    database, e.g. for image paths).
    """

    key: str
    prepare: Callable[[], Awaitable[Build]]


class Prefetcher:
    """Runs prefetch batches as background tasks; see the module docstring."""

    def __init__(self, cache: MediaCache, pool: Any, *, depth: int, reserve: int = 1) -> None:
        self.cache = cache
        self.pool = pool
        self.depth = max(0, depth)
        #: Workers kept free for client requests.
        self.reserve = max(1, reserve)
        self._tasks: set[asyncio.Task[None]] = set()
        self._keys: set[str] = set()
        self._closed = False

    @property
    def enabled(self) -> bool:
        return self.depth > 0 and self.max_batches > 0

    @property
    def max_batches(self) -> int:
        return max(0, int(self.pool.workers) - self.reserve)

    def has_capacity(self) -> bool:
        return int(self.pool.queue_depth) < int(self.pool.workers) - self.reserve

    def offer(self, candidates: Sequence[Candidate]) -> bool:
        """Start a batch for ``candidates`` if capacity allows; returns whether it started."""
        candidates = [c for c in candidates if c.key not in self._keys]
        if not candidates:
            return False
        PREFETCH_OFFERED.inc(len(candidates))
        if (self._closed or not self.enabled or len(self._tasks) >= self.max_batches
                or not self.has_capacity()):
            PREFETCH_DROPPED.inc(len(candidates))
            return False
        self._keys.update(c.key for c in candidates)
        task = asyncio.create_task(self._run(candidates))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run(self, candidates: Sequence[Candidate]) -> None:
        pending = list(candidates)
        try:
            while pending:
                candidate = pending.pop(0)
                if self._closed or not self.has_capacity():
                    PREFETCH_DROPPED.inc(1 + len(pending))
                    return
                if await self._present(candidate.key):
                    PREFETCH_SKIPPED.inc()
                    continue
                await self._build(candidate)
        finally:
            self._keys.difference_update(c.key for c in candidates)

    async def _present(self, key: str) -> bool:
        loop = asyncio.get_running_loop()
        try:
            # ``contains`` is a blocking index lookup that does not count as a use.
            return bool(await loop.run_in_executor(None, self.cache.contains, key))
        except Exception:  # a busy index: treat as absent, the build path will tell
            return False

    async def _build(self, candidate: Candidate) -> None:
        ran = False
        try:
            build = await candidate.prepare()

            def tracked(out: Any) -> Any:
                nonlocal ran
                ran = True
                return build(out)

            item = await self.cache.get_or_build(candidate.key, tracked, self.pool)
            item.close()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            PREFETCH_FAILURES.inc()
            log.info("prefetch of %s failed: %s", candidate.key, exc)
            return
        if ran:
            PREFETCH_BUILDS.inc()
        else:
            PREFETCH_SKIPPED.inc()

    async def aclose(self) -> None:
        """Stop starting builds and wait for the running ones (their items stay cached)."""
        self._closed = True
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
