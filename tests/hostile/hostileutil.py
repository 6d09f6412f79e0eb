"""What every hostile test checks after the fact: the server is alive, answered no 5xx
and logged no traceback while the test ran."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from authutil import basic, call
from conftest import LiveServer

#: The access log line of ``framesvc.http.middleware``: ``<id> <METHOD> <path> <status> <n>B``.
_ACCESS = re.compile(r" (?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (\S+) (\d{3}) \d+B ")


def admin(server: LiveServer) -> dict[str, str]:
    return basic(server.admin_user, server.admin_password)


def api(server: LiveServer, method: str, path: str, **kwargs: Any) -> Any:
    headers = {**admin(server), **kwargs.pop("headers", {})}
    return call(server, method, path, headers=headers, **kwargs)


def log_size(server: LiveServer) -> int:
    return server.log_path.stat().st_size


def log_since(server: LiveServer, offset: int) -> str:
    with server.log_path.open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def server_errors(text: str) -> list[str]:
    """Lines of ``text`` that show a 5xx answer, a traceback or an unhandled error."""
    markers = ("Traceback", "unhandled error", "Unhandled exception")
    bad = []
    for line in text.splitlines():
        access = _ACCESS.search(line)
        if (access and access.group(2).startswith("5")) or any(m in line for m in markers):
            bad.append(line)
    return bad


def assert_alive(server: LiveServer) -> None:
    assert server.process.poll() is None, f"framesvc died:\n{server.log_tail()}"
    reply = call(server, "GET", "/api/server/about")
    assert reply.status == 200, reply.raw


@contextmanager
def no_server_errors(server: LiveServer) -> Iterator[None]:
    """The block must leave the server alive with no 5xx or traceback in its log."""
    offset = log_size(server)
    yield
    assert_alive(server)
    text = log_since(server, offset)
    problems = server_errors(text)
    if problems:
        first = text.find(problems[0])
        context = text[max(0, first - 500): first + 4000]
        raise AssertionError("\n".join(problems) + "\n--- log ---\n" + context)
