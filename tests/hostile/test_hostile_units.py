"""The pure parts of ``framesvc/http/security.py``, without a server: strict JSON, the
sliding-window failure counts, the per-route body limits and the log filter."""

from __future__ import annotations

import json
import logging

import pytest
from aiohttp.http_exceptions import LineTooLong

from framesvc.config import Settings
from framesvc.http.errors import ApiError
from framesvc.http.security import (
    MAX_JSON_DEPTH,
    FailureWindow,
    LoginThrottle,
    MalformedHttpFilter,
    body_limit,
    json_depth_exceeds,
    loads_json,
)


@pytest.mark.parametrize("raw", [
    b"NaN", b"[Infinity]", b'{"a": -Infinity}', b"[" * 100_000 + b"]" * 100_000,
    b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), b'"\\ud800"',
    b'{"\\udfff": 1}', b'["ok", {"x": "a\\udc00b"}]', b"\xff", b"{", b"",
])
def test_loads_json_refuses_with_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        loads_json(raw)


@pytest.mark.parametrize("raw", [
    b'{"a": 1}', b"[]", b'"\\ud83d\\ude00"', b"\xef\xbb\xbf{}", "[1.5e300]",
    b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH,
    json.dumps({"shapes": [{"points": [1, 2]}] * 1000}).encode(),
])
def test_loads_json_accepts_what_json_accepts(raw: bytes | str) -> None:
    assert loads_json(raw) == json.loads(raw.decode("utf-8-sig") if isinstance(raw, bytes)
                                         else raw)


def test_depth_walk_is_iterative_and_exact() -> None:
    value: list = []
    for _ in range(5000):
        value = [value]
    assert json_depth_exceeds(value, 4999)
    assert not json_depth_exceeds(value, 5001)
    assert not json_depth_exceeds({"a": [1, 2, {"b": []}]}, 4)
    assert json_depth_exceeds({"a": [1, 2, {"b": []}]}, 3)
    # Without a depth limit only what the parser cannot handle is refused.
    assert loads_json(b"[" * 500 + b"]" * 500, max_depth=None)


def test_failure_window_slides_and_forgets() -> None:
    window = FailureWindow(limit=3, window=10.0, max_keys=2)
    for t in (0.0, 1.0, 2.0):
        assert window.retry_after("a", t) is None
        window.record("a", t)
    assert window.retry_after("a", 3.0) == pytest.approx(7.0)
    assert window.retry_after("a", 10.5) is None  # the first failure left the window
    window.forget("a", 1.0)
    window.record("b", 4.0)
    window.record("c", 5.0)  # max_keys: the least recently failed key ("a") goes
    assert window.retry_after("a", 5.0) is None


def test_login_throttle_counts_admitted_attempts() -> None:
    now = [0.0]
    settings = Settings(login_failures_per_user=2, login_failures_per_ip=3,
                        login_failure_window=60)
    throttle = LoginThrottle(settings, clock=lambda: now[0])
    throttle.admit("1.2.3.4", "id:1")
    throttle.admit("1.2.3.4", "id:1")
    with pytest.raises(ApiError) as info:
        throttle.admit("5.6.7.8", "id:1")
    assert info.value.status == 429 and info.value.headers["Retry-After"] == "60"
    token = throttle.admit("1.2.3.4", "id:2")  # the third from this address
    throttle.succeeded("1.2.3.4", "id:2", token)  # ... but it was right: not counted
    throttle.admit("1.2.3.4", "id:3")
    with pytest.raises(ApiError):
        throttle.admit("1.2.3.4", "id:4")
    now[0] = 61.0
    throttle.admit("1.2.3.4", "id:1")


def test_body_limits_per_route() -> None:
    s = Settings(max_json_bytes=10, max_annotations_bytes=20, max_request_bytes=30)
    assert body_limit(s, "POST", "/api/tasks") == 10
    assert body_limit(s, "PATCH", "/api/jobs/5/annotations/") == 20
    assert body_limit(s, "PUT", "/api/tasks/5/annotations") == 20
    assert body_limit(s, "POST", "/api/tasks/5/data/") == 30
    assert body_limit(s, "PATCH", "/api/tasks/5/data/0f0e0d0c-0b0a-0908-0706-050403020100") == 30
    assert body_limit(s, "PATCH", "/api/tasks/5/data/meta") == 10


def test_malformed_http_is_one_warning_line() -> None:
    try:
        raise LineTooLong(b"x" * 9000, 8190)
    except LineTooLong:
        import sys

        record = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1,
                                   "Error handling request from %s", ("1.2.3.4",),
                                   sys.exc_info())
    assert MalformedHttpFilter().filter(record)
    assert record.levelno == logging.WARNING and record.exc_info is None
    message = record.getMessage()
    assert message.startswith("Error handling request from 1.2.3.4: malformed HTTP request")
    assert len(message) < 300
