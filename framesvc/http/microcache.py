"""Replaying warm media answers without running the request pipeline again.

A viewer asks for the same frames and previews again and again, with the same
credentials.  Once such a request has been answered from the in-memory tier, everything
it resolved on the way (the caller from the credentials, the access decision, the job's
media scope, the item's key, the response headers) stays true until the store is
written to; the work of resolving it again, cheap piece by piece, is still most of a
warm request (profiled: authentication, the access and scope caches, spec and key
construction, header assembly and the middleware layers were ~60% of the CPU time of a
warm 200 KB frame).  This middleware remembers the *outcome* instead: for a GET whose
handler offered a :class:`Memo`, the next identical GET is answered at once from it
(the handler's ``answer`` callable makes the response: ``http/media.py``).

Identical means: same method (GET), same path and query string, same ``Authorization``
and ``Cookie`` headers (keyed by a keyed hash, so no secret is kept in memory in clear),
no body, and none of the headers that make a media answer differ (``Range``,
conditional ``If-*`` headers, ``Prefer``): those go the normal way.

A memo is valid only while

* the store generation (``framesvc/store/db.py``; on SQLite it includes other
  processes' commits) equals the one taken *before* the original request was resolved,
  so any write - a logout, a password change, a reassignment, a ``data/meta`` PATCH,
  new data - invalidates every memo at once, exactly like the caches it short-cuts;
* it is younger than ``ttl`` (the credential cache's own bound, ``auth.CALLER_TTL``), so
  a session that expires by the clock is not honoured longer than it is elsewhere;
* the item's bytes are still there: in the memory tier (looked up on every replay,
  which also counts as a use there, so memos pin no memory of their own), or for
  larger items the cache file, reopened by its path (``MediaCache.reopen``: a file
  that opens is that entry's, and the hit counts for LRU).

Replays update the same counters a normal hit does (hits, memory hits, media requests,
bytes served) and are logged as ``cache=hit``.  A memo whose bytes are in memory also
carries its answer's head as sent on the wire, so that ``http/fastlane.py`` can replay it
even before aiohttp builds a request; this middleware replays the rest (answers from
cache files, and requests the lane leaves to aiohttp).  Disabled (no memos) where the store
generation cannot see other processes' writes (databases other than SQLite).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import hdrs, web
from multidict import CIMultiDict, CIMultiDictProxy

from framesvc.cache.resolved import ResolvedCache
from framesvc.http.security import apply_response_defaults
from framesvc.store.db import StoreGeneration

#: Where a handler leaves its offer (``request[OFFER] = Memo(...)``).
OFFER = "microcache.offer"

#: Request headers that change a media answer: requests carrying them are not replayed.
VARYING = (hdrs.RANGE, hdrs.IF_NONE_MATCH, hdrs.IF_MATCH, hdrs.IF_MODIFIED_SINCE,
           hdrs.IF_UNMODIFIED_SINCE, hdrs.IF_RANGE, "Prefer")

ENTRIES = 4096
_SECRET = secrets.token_bytes(32)


#: Makes the replayed answer from the remembered headers, or None when its bytes are
#: gone (the request is then resolved afresh).  Counts the replay in the metrics.
Answer = Callable[[CIMultiDictProxy[str]], web.StreamResponse | None]

#: The answer's body if it is in memory (counted as a replay, like ``Answer``), else None.
Body = Callable[[], bytes | None]


@dataclass(frozen=True, slots=True)
class Memo:
    """What replaying a 200 answer needs: its headers and how to get its bytes again."""

    #: The answer's headers (Content-Type included, Content-Length not: it follows the body).
    headers: CIMultiDictProxy[str]
    answer: Answer
    #: For answers that may be in memory: the body, and the head of the answer as sent
    #: on the wire up to (excluding) its per-request headers (``http/fastlane.py``).
    body: Body | None = None
    wire_head: bytes | None = None

    @classmethod
    def of(cls, response: web.StreamResponse, answer: Answer, body: Body | None = None) -> Memo:
        headers = CIMultiDict(response.headers)
        headers.popall(hdrs.CONTENT_LENGTH, None)
        frozen = CIMultiDictProxy(headers)
        return cls(frozen, answer, body, wire_head(frozen) if body is not None else None)


#: Headers the wire head must not contain: they are per request, or per connection.
_PER_REQUEST = frozenset(name.lower() for name in (
    hdrs.CONTENT_LENGTH, hdrs.DATE, "X-Request-Id", hdrs.CONNECTION, hdrs.TRANSFER_ENCODING,
    hdrs.SET_COOKIE, hdrs.CONTENT_ENCODING))


def wire_head(headers: CIMultiDictProxy[str]) -> bytes | None:
    """``HTTP/1.1 200 OK`` and the headers a normal answer with these ``headers`` carries
    (the response defaults of ``http/security.py`` included), each line CRLF-terminated;
    None if they cannot be sent as they are (a per-request header, a CR or LF in a value,
    non-Latin-1 text), in which case the answer is only replayed the normal way."""
    complete = CIMultiDict(headers)
    apply_response_defaults(complete)
    lines = ["HTTP/1.1 200 OK\r\n"]
    for name, value in complete.items():
        if name.lower() in _PER_REQUEST or any(c in name + value for c in "\r\n\0"):
            return None
        lines.append(f"{name}: {value}\r\n")
    try:
        return "".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        return None


class Microcache:
    """Memos keyed by request identity, valid per the module docstring.  Event loop only."""

    def __init__(self, memos: ResolvedCache[Memo]) -> None:
        self._memos = memos

    @property
    def enabled(self) -> bool:
        return self._memos.enabled

    @staticmethod
    def request_key(request: web.Request) -> bytes | None:
        """The identity of a replayable request, or None if it must not be replayed."""
        if request.method != hdrs.METH_GET or request.body_exists:
            return None
        return Microcache.key_of(request.headers, request.raw_path)

    @staticmethod
    def key_of(headers: CIMultiDictProxy[str], raw_path: str) -> bytes | None:
        """The identity of a bodiless GET of ``raw_path`` with these ``headers``, or None
        if it must not be replayed."""
        for name in VARYING:
            if name in headers:
                return None
        identity = "\0".join((headers.get(hdrs.AUTHORIZATION, ""),
                              headers.get(hdrs.COOKIE, ""), raw_path))
        return hashlib.blake2b(identity.encode("utf-8", "surrogatepass"), key=_SECRET,
                               digest_size=20).digest()

    def token(self) -> object:
        return self._memos.token()

    def memo(self, key: bytes, token: object) -> Memo | None:
        """The valid memo for ``key`` (``token``: the generation token taken now)."""
        return self._memos.get(key, token)

    def replay(self, key: bytes, token: object) -> web.StreamResponse | None:
        memo = self._memos.get(key, token)
        if memo is None:
            return None
        return memo.answer(memo.headers)

    def remember(self, key: bytes, memo: Memo, token: object) -> None:
        self._memos.put(key, memo, token)


MICROCACHE = web.AppKey("microcache", Microcache)


def install(app: web.Application, generation: StoreGeneration, ttl: float,
            entries: int = ENTRIES) -> Microcache:
    """Give ``app`` its microcache (no memos where ``generation`` cannot see other
    processes' writes)."""
    size = entries if generation.cross_process else 0
    cache = app[MICROCACHE] = Microcache(ResolvedCache(generation, size, ttl))
    return cache


@web.middleware
async def microcache(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Replay a memo if there is a valid one; remember one if the handler offers it."""
    cache = request.app[MICROCACHE]
    key = cache.request_key(request) if cache.enabled else None
    if key is None:
        return await handler(request)
    token = cache.token()  # before anything is resolved: see the module docstring
    replayed = cache.replay(key, token)
    if replayed is not None:
        request["cache"] = "hit"
        return replayed
    response = await handler(request)
    offered: Memo | None = request.get(OFFER)
    # Never replay an answer that sets cookies (media answers do not; kept as a rule).
    if offered is not None and response.status == 200 and not response.cookies:
        cache.remember(key, offered, token)
    return response
