"""``GET /metrics``: the Prometheus text exposition of framesvc's metrics.

Public, like most Prometheus endpoints, so a scraper needs no credentials: it lies
outside ``/api/`` (the authentication middleware does not guard it) and shows only
aggregate counters of this process (cache hits, misses, builds and their durations,
evictions, bytes served, worker queue depth, prefetches, per-type media requests) and
the usual process figures; no ids, names or users.  Operators who do not want it
reachable from outside block ``/metrics`` at their reverse proxy, as they would for any
exporter.

The worker queue depth is read from the pool at scrape time, not pushed, so it cannot
drift.
"""

from __future__ import annotations

from aiohttp import hdrs, web

from framesvc import metrics
from framesvc.app import SERVICES


async def metrics_handler(request: web.Request) -> web.Response:
    body, content_type = metrics.render()
    return web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type,
                                            hdrs.CACHE_CONTROL: "no-store"})


async def on_startup(app: web.Application) -> None:
    pool = app[SERVICES].pool
    metrics.track_queue_depth(lambda: pool.queue_depth)


routes = [("GET", "/metrics", metrics_handler)]
