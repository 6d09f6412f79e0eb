"""Request hardening that no single handler should have to remember.

* **Security headers** on every response the application sends (JSON, media files,
  errors, 404s): ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``,
  ``Referrer-Policy: same-origin``, a ``Content-Security-Policy`` that lets nothing load
  or frame (the API serves data, never pages), and ``Server: framesvc`` without a version.
* **Body limits per route**, checked from ``Content-Length`` before anything is read and
  enforced while reading when the body is chunked: uploads keep ``max_request_bytes``,
  annotations get ``max_annotations_bytes`` (CVAT's 100 MiB), every other JSON body
  ``max_json_bytes``.  413 ``{"detail": ...}``.  Compressed request bodies are refused
  (415): aiohttp would otherwise inflate them, a zip bomb by HTTP.
* **Slow clients**: a body must arrive within ``request_body_timeout`` seconds plus one
  second per ``request_body_min_rate`` bytes received (Apache ``mod_reqtimeout``'s
  rule), or the request is answered 408 and the connection closed.  Idle keep-alive
  connections and clients that trickle their headers are closed after
  ``keepalive_timeout`` by aiohttp itself (:func:`handler_args`).
* **Login throttling**: failed password checks (``POST /api/auth/login`` and Basic auth)
  are counted per username and per client address in a sliding window; beyond the limit
  the caller gets DRF's 429 with ``Retry-After`` and no password is verified at all, so
  guessing is slow and the Argon2 KDF cannot be used to exhaust the worker pool.
* **Strict JSON** (:func:`loads_json`): ``NaN``/``Infinity`` and absurd nesting are
  parse errors (400), not values that crash a handler later.

Wired in by ``framesvc.app.make_app`` (:func:`install`, :data:`guard` right after the
request-context middleware, :func:`handler_args`); ``framesvc.http.auth`` asks
:func:`login_throttle` before verifying a password.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import time
from collections import OrderedDict, deque
from collections.abc import Iterator, MutableMapping
from typing import Any

from aiohttp import web, web_response
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import StreamReader

from framesvc.config import Settings
from framesvc.http.errors import ApiError, json_response
from framesvc.media.limits import configure_pillow

SETTINGS = web.AppKey("security.settings", Settings)

#: Every response carries these unless a handler chose otherwise.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
}
SERVER_NAME = "framesvc"

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_ANNOTATIONS = re.compile(r"^/api/(?:tasks|jobs)/[0-9]+/annotations/?$")
_UPLOADS = re.compile(r"^/api/tasks/[0-9]+/data(?:/[0-9a-fA-F-]{36})?/?$")


# --- wiring ----------------------------------------------------------------------------------


def handler_args(settings: Settings) -> dict[str, Any]:
    """Arguments of aiohttp's per-connection handler (``web.Application(handler_args=)``).

    ``keepalive_timeout`` also bounds a connection that opens and never completes its
    headers (aiohttp arms the timer at connection start).  ``auto_decompress=False``:
    request bodies are taken as sent; :data:`guard` refuses a ``Content-Encoding``.
    """
    return {"keepalive_timeout": float(settings.keepalive_timeout), "auto_decompress": False}


def install(app: web.Application, settings: Settings) -> None:
    """Remember the settings, add the header hook and align Pillow's pixel limit."""
    app[SETTINGS] = settings
    app.on_response_prepare.append(_add_security_headers)
    # aiohttp names itself and its version in ``Server`` on every response, also on the
    # 400s its HTTP parser sends before any application code runs; that default is a
    # module constant, so it is replaced here rather than per response.
    web_response.SERVER_SOFTWARE = SERVER_NAME  # type: ignore[attr-defined]
    configure_pillow(settings.max_image_pixels)
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedHttpFilter) for f in server_log.filters):
        server_log.addFilter(MalformedHttpFilter())


class MalformedHttpFilter(logging.Filter):
    """aiohttp logs every request its parser rejects (a 400 it answers itself: request
    line or header too long, bad characters) at ERROR with a traceback.  That is the
    client's fault, not ours, and a cheap way to flood the log: one WARNING line, with
    the reason cut short, is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 400) < 500:
            original = record.getMessage()
            record.msg = "%s: malformed HTTP request (%s)"
            record.args = (original, str(exc.message)[:200])
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def apply_response_defaults(headers: MutableMapping[str, str]) -> None:
    """What every response gets: the security headers a handler did not set itself, and
    ``Server`` (also used by ``http/fastlane.py``, which writes answers without aiohttp)."""
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    headers["Server"] = SERVER_NAME


async def _add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    apply_response_defaults(response.headers)


# --- body limits and slow bodies ----------------------------------------------------------------


class BodyTimeout(Exception):
    """The client stopped sending its request body (see :class:`BodyWatch`)."""


def body_limit(settings: Settings, method: str, path: str) -> int:
    """The largest body ``method path`` may send."""
    if _UPLOADS.match(path) and method in ("POST", "PATCH"):
        return settings.max_request_bytes
    if _ANNOTATIONS.match(path):
        return settings.max_annotations_bytes
    return settings.max_json_bytes


def too_large(limit: int) -> ApiError:
    return ApiError(413, {"detail": f"The request body is larger than {limit} bytes."})


class BodyWatch:
    """Fails a request body that arrives slower than the configured minimum.

    The allowance is ``timeout + received / min_rate`` seconds from the first check, so
    any client faster than ``min_rate`` bytes/s never notices it, while one that sends a
    byte now and then is cut off after about ``timeout`` seconds.  It counts bytes
    *received* (``StreamReader.total_bytes``), not bytes the handler consumed.  When it
    fires, the reader's pending and future reads raise :class:`BodyTimeout`.
    """

    def __init__(self, stream: StreamReader, timeout: float, min_rate: float,
                 tick: float = 1.0) -> None:
        self._stream = stream
        self._timeout = timeout
        self._min_rate = max(1.0, min_rate)
        self._tick = min(tick, max(0.05, timeout / 4))
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()
        self.fired = False
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(self._tick, self._check)

    def _check(self) -> None:
        self._handle = None
        stream = self._stream
        if stream.is_eof() or stream.exception() is not None:
            return
        allowed = self._timeout + stream.total_bytes / self._min_rate
        if self._loop.time() - self._start > allowed:
            self.fired = True
            stream.set_exception(BodyTimeout(
                f"no complete request body after {allowed:.0f} s "
                f"({stream.total_bytes} bytes received)"
            ))
            return
        self._handle = self._loop.call_later(self._tick, self._check)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def _body_timeout_response(request: web.Request) -> web.Response:
    """408, then the connection closes.  The body is marked complete first: otherwise
    aiohttp would try to drain the rest of it ("lingering") and meet the timeout again."""
    request.content.feed_eof()
    response = json_response(
        {"detail": "The request body was not received in time."}, status=408
    )
    response.force_close()
    return response


@web.middleware
async def guard(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Body encoding, size and time limits; everything else passes straight through."""
    if request.method not in BODY_METHODS or not request.body_exists:
        return await handler(request)
    settings = request.app[SETTINGS]
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise ApiError(415, {"detail": f'Unsupported Content-Encoding "{encoding[:40]}": '
                                       "send request bodies uncompressed."})
    limit = body_limit(settings, request.method, request.path)
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    # A clone is aiohttp's public way to give one request its own body limit; what the
    # handler records on it (the cache outcome for the access log) is copied back.
    inner = request.clone(client_max_size=limit)
    watch = BodyWatch(inner.content, settings.request_body_timeout,
                      settings.request_body_min_rate)
    try:
        return await handler(inner)
    except BodyTimeout:
        return _body_timeout_response(inner)
    except web.HTTPRequestEntityTooLarge:
        raise too_large(limit) from None
    except ApiError:
        if watch.fired:  # a handler turned the broken-off body into its own error
            return _body_timeout_response(inner)
        raise
    finally:
        watch.cancel()
        for key, value in inner.items():
            request[key] = value


# --- login throttling -------------------------------------------------------------------------


class FailureWindow:
    """Failures per key in a sliding window of ``window`` seconds, at most ``max_keys``
    keys (the least recently failed are forgotten first, so memory stays bounded)."""

    def __init__(self, limit: int, window: float, max_keys: int = 50_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def _live(self, key: str, now: float) -> deque[float] | None:
        events = self._events.get(key)
        if events is None:
            return None
        while events and events[0] <= now - self.window:
            events.popleft()
        if not events:
            del self._events[key]
            return None
        return events

    def retry_after(self, key: str, now: float) -> float | None:
        """Seconds until ``key`` may try again, or None when it may now."""
        if self.limit <= 0:
            return None
        events = self._live(key, now)
        if events is None or len(events) < self.limit:
            return None
        return events[-self.limit] + self.window - now

    def record(self, key: str, now: float) -> None:
        events = self._live(key, now) or deque()
        events.append(now)
        while len(events) > max(self.limit, 1):
            events.popleft()
        self._events[key] = events
        self._events.move_to_end(key)
        while len(self._events) > self.max_keys:
            self._events.popitem(last=False)

    def clear(self, key: str) -> None:
        self._events.pop(key, None)

    def forget(self, key: str, when: float) -> None:
        """Remove the event recorded at ``when`` (if it is still in the window)."""
        events = self._events.get(key)
        if events is not None:
            with contextlib.suppress(ValueError):
                events.remove(when)
            if not events:
                del self._events[key]


def _throttled(seconds: float) -> ApiError:
    wait = max(1, math.ceil(seconds))
    return ApiError(429, {"detail": f"Request was throttled. Expected available in {wait} "
                                    f"second{'s' if wait != 1 else ''}."},
                    headers={"Retry-After": str(wait)})


class LoginThrottle:
    """Failed password checks per account and per client address.

    ``account`` is any stable key for the login name (``framesvc.http.auth`` uses the
    user id, so a username and its e-mail share one count).  An attempt counts as a
    failure from the moment it is admitted (:meth:`admit`) until it turns out right
    (:meth:`succeeded`), so a burst of concurrent guesses cannot all pass the check
    before the first of them is recorded.
    """

    def __init__(self, settings: Settings, clock: Any = time.monotonic) -> None:
        window = float(settings.login_failure_window)
        self._accounts = FailureWindow(settings.login_failures_per_user, window)
        self._addresses = FailureWindow(settings.login_failures_per_ip, window)
        self._clock = clock

    def admit(self, remote: str | None, account: str) -> float:
        """Raise 429 when the account or the address has failed too often recently;
        otherwise count the attempt and return its token for :meth:`succeeded`."""
        now = self._clock()
        waits = [self._accounts.retry_after(account, now)]
        if remote:
            waits.append(self._addresses.retry_after(remote, now))
        longest = max((w for w in waits if w is not None), default=None)
        if longest is not None:
            raise _throttled(longest)
        self._accounts.record(account, now)
        if remote:
            self._addresses.record(remote, now)
        return now

    def succeeded(self, remote: str | None, account: str, token: float) -> None:
        """The password was right: the account's count is cleared and the address's
        count loses this attempt."""
        self._accounts.clear(account)
        if remote:
            self._addresses.forget(remote, token)


_THROTTLE = "security.login_throttle"


def login_throttle(extras: dict[str, Any], settings: Settings) -> LoginThrottle:
    """The process's throttle, kept in ``Services.extras``."""
    throttle = extras.get(_THROTTLE)
    if throttle is None:
        throttle = extras[_THROTTLE] = LoginThrottle(settings)
    return throttle


# --- strict JSON --------------------------------------------------------------------------------

#: Deeper JSON is refused: no client of this API nests anywhere near it, and recursive
#: code downstream (filters, validators) must never meet Python's recursion limit.
MAX_JSON_DEPTH = 64


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON value")


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """True when containers nest deeper than ``limit`` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, dict | list))
    return False


#: ``\ud800``..``\udfff`` escapes: a pair makes one character, a lone one is no text.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _walk(value: Any) -> Iterator[str]:
    """Every string (keys and values) in a decoded JSON value, iteratively."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            yield from item.keys()
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def loads_json(raw: bytes | str, max_depth: int | None = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for untrusted bodies.  ``ValueError`` (never anything else) for
    invalid JSON or UTF-8, ``NaN``/``Infinity``, nesting deeper than ``max_depth`` and
    strings holding a lone surrogate (valid JSON escapes, but not text: the database
    and every encoder refuse them later).

    ``max_depth=None`` skips the depth walk (it costs about half a parse) for large
    bodies whose consumers never recurse into them; nesting beyond what the parser
    itself can handle is still a ``ValueError``.
    """
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
        value = json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise ValueError("nesting too deep") from None
    if (max_depth is not None and text.count("[") + text.count("{") > max_depth
            and json_depth_exceeds(value, max_depth)):
        raise ValueError(f"nesting deeper than {max_depth} levels")
    if _SURROGATE_ESCAPE.search(text):
        for item in _walk(value):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("a string holds an unpaired surrogate") from None
    return value


__all__ = [
    "MAX_JSON_DEPTH",
    "SECURITY_HEADERS",
    "BodyTimeout",
    "BodyWatch",
    "FailureWindow",
    "LoginThrottle",
    "body_limit",
    "guard",
    "handler_args",
    "install",
    "json_depth_exceeds",
    "loads_json",
    "login_throttle",
]
