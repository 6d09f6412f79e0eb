"""The fast lane: warm in-memory media answers written straight from the connection.

The microcache (``http/microcache.py``) already answers a repeated media GET before
authentication and routing.  What such an answer still costs is aiohttp's own per-request
machinery: a ``Request`` object, a task per request, the middleware chain, a response
object and its header serialization (profiled on a warm 200 KB frame: about half of the
server's CPU time, the other half being the kernel's ``send`` of the bytes).  For the one
answer that needs none of it - a memo whose body is in the memory tier - this module
answers at the protocol level, as soon as aiohttp's HTTP parser hands over the request:
the memo's head, precomputed when the memo was made, the three per-request headers
(``Content-Length``, ``X-Request-Id``, and ``Date`` from the helper aiohttp uses for its
own answers), and the body, written to the transport.
It keeps what every answer has: an access line, the same counters as any replay
(``MediaCache.recall``, the ``hit`` callback, bytes served) and the keep-alive timer.

Only aiohttp's parser reads the request (:class:`LaneParser` wraps it), and a request
takes the lane only if all of this holds, else it is queued for aiohttp exactly as the
parser produced it:

* the connection is idle: aiohttp's request loop is waiting for a message, none is
  queued, the connection is not closing, not upgraded and can take more output (writing
  not paused by flow control).  Answers therefore leave in request order: in a pipelined
  batch the lane stops at the first request it does not answer;
* it is an HTTP/1.1 ``GET`` without a body, without ``Connection: close`` or an upgrade,
  and without the headers that make a media answer differ (``microcache.VARYING``);
* the microcache has a valid memo for it (same rules as the middleware: store
  generation, age, credentials) that carries a wire head, and the body is in memory now.

Everything else - first requests, chunks served from disk, ``Range``, conditional
requests, ``HEAD``, HTTP/1.0 - goes the normal way, through the microcache middleware
and the handlers.

:func:`run_app` is ``aiohttp.web.run_app`` for what framesvc uses of it (host and port,
or inherited sockets), with :class:`LaneRunner` instead of ``AppRunner``: aiohttp has no
public way to choose the connection handler class.  It relies on ``RequestHandler``
internals (``_parser``, ``_messages``, ``_waiter``, the keep-alive fields), so the aiohttp
version is pinned to a minor release in ``pyproject.toml``; ``tests/test_fastlane.py``
checks that the lane is used and that the answers it writes equal the normal ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import hdrs, web
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import HttpVersion11, RawRequestMessage
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_protocol import RequestHandler

from framesvc import metrics
from framesvc.http.microcache import MICROCACHE, Microcache
from framesvc.http.middleware import access_log, request_ids

log = logging.getLogger("framesvc.fastlane")
_RUNNING = "======== Running on {} ========\n(Press CTRL+C to quit)"


class FastLane:
    """Answers requests from in-memory memos (module docstring).  Event loop only."""

    def __init__(self, microcache: Microcache) -> None:
        self._microcache = microcache

    def answer(self, handler: LaneHandler, message: Any, payload: Any) -> bool:
        """Write the answer to ``message`` if it may take the lane; False leaves it to
        aiohttp (nothing has been written or counted then)."""
        if (payload is not EMPTY_PAYLOAD or not isinstance(message, RawRequestMessage)
                or message.method != hdrs.METH_GET or message.version != HttpVersion11
                or message.should_close or message.upgrade):
            return False
        started = time.perf_counter()
        microcache = self._microcache
        key = microcache.key_of(message.headers, message.path)
        if key is None:
            return False
        memo = microcache.memo(key, microcache.token())
        if memo is None or memo.body is None or memo.wire_head is None:
            return False
        transport = handler.transport
        if transport is None or transport.is_closing() or handler.writing_paused:
            return False
        body = memo.body()
        if body is None:
            return False
        request_id = request_ids.for_headers(message.headers)
        size = len(body)
        transport.write(b"%sContent-Length: %d\r\nX-Request-Id: %s\r\nDate: %s\r\n\r\n" % (
            memo.wire_head, size, request_id.encode("ascii"),
            rfc822_formatted_time().encode("ascii")))
        transport.write(body)
        metrics.BYTES_SERVED.inc(size)
        metrics.FASTLANE_ANSWERS.inc()
        handler.request_answered()
        if access_log.enabled():
            access_log.request(request_id, hdrs.METH_GET, message.path, 200, size,
                               (time.perf_counter() - started) * 1000, "hit")
        return True


class LaneParser:
    """aiohttp's request parser, with the requests the fast lane answers taken out of
    what it hands on.  Every other call goes to the parser itself."""

    __slots__ = ("_handler", "_lane", "_parser")

    def __init__(self, parser: Any, handler: LaneHandler, lane: FastLane) -> None:
        self._parser = parser
        self._handler = handler
        self._lane = lane

    def feed_data(self, data: bytes) -> tuple[list[Any], bool, bytes]:
        parser = self._parser
        messages, upgraded, tail = parser.feed_data(data)
        if not messages or not self._handler.idle():
            return messages, upgraded, tail
        answered = self._answer_leading(messages)
        # The parser stops after as many unconsumed messages as aiohttp queues at most,
        # keeping the rest of the data; the answered ones are consumed, so go on.
        while answered == len(messages):
            messages, upgraded, tail = parser.feed_data(b"")
            if not messages:
                return messages, upgraded, tail
            answered = self._answer_leading(messages)
        rest = messages[answered:]
        if answered and not upgraded:
            # aiohttp only re-parses held data once it paused for a full queue, which it
            # would not do for the fewer messages it gets: parse what is held now, up to
            # a full queue (then aiohttp pauses, and re-parses the rest as it drains).
            while len(rest) < self._handler.queue_limit:
                more, upgraded, tail = parser.feed_data(b"")
                if not more:
                    break
                rest.extend(more)
                if upgraded:
                    break
        return rest, upgraded, tail

    def _answer_leading(self, messages: list[Any]) -> int:
        """Answer messages from the front while the lane takes them; how many it took."""
        answered = 0
        for message, payload in messages:
            try:
                took = self._lane.answer(self._handler, message, payload)
            except Exception:
                # Whether anything was written is unknown: the stream cannot go on.
                log.exception("fast lane failed; closing the connection")
                self._handler.force_close()
                break
            if not took:
                break
            answered += 1
            self._parser.message_consumed()
        return answered

    def message_consumed(self) -> None:
        self._parser.message_consumed()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parser, name)


class LaneHandler(RequestHandler):
    """aiohttp's connection handler with the fast lane in front of its request queue."""

    def __init__(self, manager: web.Server, *, lane: FastLane | None = None,
                 **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        if lane is not None and self._parser is not None:
            self._parser = LaneParser(self._parser, self, lane)

    @property
    def queue_limit(self) -> int:
        """How many parsed requests aiohttp queues before it stops reading."""
        return self._max_msg_queue_size

    def idle(self) -> bool:
        """aiohttp's request loop waits for a message and nothing stands before one."""
        waiter = self._waiter
        return (waiter is not None and not waiter.done() and not self._messages
                and not self._force_close and not self._close and not self._upgraded)

    def request_answered(self) -> None:
        """Book a request answered by the lane as aiohttp books one it answered."""
        self._request_count += 1
        self._manager.requests_count += 1  # type: ignore[union-attr]
        self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout
        if self._keepalive_handle is None and self._keepalive_timeout > 0:
            self._keepalive_handle = self._loop.call_at(self._next_keepalive_close_time,
                                                        self._process_keepalive)


class LaneServer(web.Server):
    """Makes :class:`LaneHandler` connections."""

    def __init__(self, *args: Any, lane: FastLane | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lane = lane

    def __call__(self) -> RequestHandler:
        return LaneHandler(self, lane=self._lane, loop=self._loop, **self._kwargs)


class LaneRunner(web.AppRunner):
    """``AppRunner`` whose server makes :class:`LaneHandler` connections (no lane if the
    application has no microcache or it is disabled)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        cache = self.app.get(MICROCACHE)
        lane = FastLane(cache) if cache is not None and cache.enabled else None
        return LaneServer(server.request_handler, request_factory=server.request_factory,
                          handler_cancellation=server.handler_cancellation,
                          loop=server._loop, lane=lane, **server._kwargs)


def run_app(app: web.Application, *, host: str | None = None, port: int | None = None,
            sockets: Iterable[Any] = (), shutdown_timeout: float = 60.0,
            print: Callable[[str], None] | None = print) -> None:
    """Serve ``app`` until SIGINT/SIGTERM, like ``aiohttp.web.run_app``: on ``sockets``
    if given, else on ``host:port``; then shut down gracefully within
    ``shutdown_timeout`` and cancel what is left."""
    loop = asyncio.new_event_loop()
    runner = LaneRunner(app, handle_signals=True, access_log=None,
                        shutdown_timeout=shutdown_timeout)

    async def serve() -> None:
        await runner.setup()
        try:
            listening = list(sockets)
            sites = ([web.SockSite(runner, sock) for sock in listening] if listening
                     else [web.TCPSite(runner, host, port)])
            for site in sites:
                await site.start()
            if print is not None:
                print(_RUNNING.format(", ".join(sorted(str(s.name) for s in runner.sites))))
            while True:
                await asyncio.sleep(3600)
        finally:
            await runner.cleanup()

    main = loop.create_task(serve())
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
