"""Middlewares every request passes through: request id + log line, and error mapping."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from collections.abc import Mapping

import sqlalchemy as sa
from aiohttp import web

from framesvc.http.accesslog import AccessLog
from framesvc.http.errors import ApiError, json_response
from framesvc.store.schema import UnstorableTextError

access_log = AccessLog()
errlog = logging.getLogger("framesvc.error")


async def flush_access_log(_app: web.Application) -> None:
    access_log.flush()


#: A client's own ``X-Request-Id`` is kept if it is this tame (it lands in the log line).
_CLIENT_ID = re.compile(r"[!-~]{1,128}")


class RequestIds:
    """Unique request ids: 16 random hex digits per process, then a 16-digit counter.

    As unique as a random UUID across processes and restarts (the prefix is drawn anew
    in a forked child), and ~10x cheaper than ``uuid4`` (no ``getrandom`` per request).
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count(1)

    def next(self, request: web.Request) -> str:
        return self.for_headers(request.headers)

    def for_headers(self, headers: Mapping[str, str]) -> str:
        """The id of a request with these headers: the client's if it is tame, else ours."""
        sent = headers.get("X-Request-Id")
        if sent is not None and _CLIENT_ID.fullmatch(sent):
            return sent
        return f"{self._prefix}{next(self._counter):016x}"


request_ids = RequestIds()


@web.middleware
async def request_context(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Give each request an id, answer ApiError in CVAT's shape, log one line per request."""
    request_id = request_ids.next(request)
    request["request_id"] = request_id
    started = time.perf_counter()
    status = 500
    size = 0
    try:
        try:
            response = await handler(request)
        except ApiError as exc:
            response = exc.response()
        except web.HTTPException as exc:
            if exc.status >= 400 and exc.status != 405:
                response = json_response({"detail": exc.reason}, status=exc.status)
            elif exc.status == 405:
                response = json_response(
                    {"detail": f'Method "{request.method}" not allowed.'},
                    status=405,
                    headers={"Allow": exc.headers.get("Allow", "")},
                )
            else:
                raise
        except Exception as exc:
            if isinstance(exc, sa.exc.StatementError) and isinstance(
                exc.orig, UnstorableTextError
            ):
                # Text no database row can hold (store/schema.py: String), on every backend.
                response = json_response([str(exc.orig)], status=400)
            else:
                errlog.exception("unhandled error in %s %s [%s]", request.method, request.path,
                                 request_id)
                response = json_response({"detail": "Internal server error."}, status=500)
        status = response.status
        response.headers["X-Request-Id"] = request_id
        size = response.content_length or 0
        return response
    finally:
        if access_log.enabled():
            access_log.request(request_id, request.method, request.raw_path, status, size,
                               (time.perf_counter() - started) * 1000, request.get("cache"))
