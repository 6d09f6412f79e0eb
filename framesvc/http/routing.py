"""Route registration with CVAT's optional trailing slash.

CVAT accepts ``/api/tasks/1`` and ``/api/tasks/1/`` alike (``/?$`` in its URL
patterns), and the SDK uses both forms on different endpoints; every route here is
registered once with an optional final slash instead of relying on redirects, which
would break POST/PATCH bodies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Path parameters named like this are matched as integers.
INT_PARAMS = ("id", "task_id", "job_id", "user_id", "label_id")

#: ASCII digits only (``\d`` would admit other scripts' digits) and at most 19 of them, so
#: ``int()`` never sees a number longer than a 64-bit id; longer ones simply do not route.
INT_PATTERN = r"[0-9]{1,19}"


def optional_slash(path: str) -> str:
    """``/api/tasks/{id}/data/`` -> ``/api/tasks/{id:[0-9]{1,19}}/data{_slash:/?}``."""
    path = path.rstrip("/")
    for name in INT_PARAMS:
        path = path.replace("{" + name + "}", "{" + name + ":" + INT_PATTERN + "}")
    return path + "{_slash:/?}"


def add_routes(
    router: web.UrlDispatcher, routes: list[tuple[str, str, Handler]]
) -> None:
    """Register ``(method, path, handler)`` triples, each with an optional trailing slash."""
    for method, path, handler in routes:
        router.add_route(method, optional_slash(path), handler)


def int_param(request: web.Request, name: str = "id") -> int:
    return int(request.match_info[name])
