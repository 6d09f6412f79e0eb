"""Small HTTP and CLI helpers for the authentication tests (real server, real CLI)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

import urllib3
from conftest import LiveServer
from conftest import db_execute as _db_execute

_http = urllib3.PoolManager(retries=False, timeout=30)


@dataclass
class Reply:
    status: int
    headers: urllib3.HTTPHeaderDict
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    def cookies(self) -> dict[str, str]:
        jar: SimpleCookie = SimpleCookie()
        for header in self.headers.getlist("Set-Cookie"):
            jar.load(header)
        return {name: morsel.value for name, morsel in jar.items()}

    def set_cookie_headers(self) -> list[str]:
        return self.headers.getlist("Set-Cookie")


def call(
    server: LiveServer,
    method: str,
    path: str,
    *,
    body: Any = None,
    raw_body: bytes | None = None,
    headers: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
) -> Reply:
    """One request with exactly the headers given (no cookie jar, no retries)."""
    all_headers = dict(headers or {})
    data = raw_body
    if body is not None:
        data = json.dumps(body).encode()
        all_headers.setdefault("Content-Type", "application/json")
    if cookies:
        all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    response = _http.request(method, server.url + path, body=data, headers=all_headers,
                             redirect=False)
    return Reply(response.status, response.headers, response.data)


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def unique(prefix: str = "user") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def register(server: LiveServer, username: str, password: str = "pass-Word-123",
             **extra: str) -> Reply:
    body = {"username": username, "email": f"{username}@example.com",
            "password1": password, "password2": password, **extra}
    return call(server, "POST", "/api/auth/register", body=body)


def login(server: LiveServer, username: str, password: str) -> Reply:
    return call(server, "POST", "/api/auth/login",
                body={"username": username, "password": password})


@dataclass(frozen=True)
class Account:
    """A user registered for a test and logged in once."""

    id: int
    username: str
    #: The login's token key, and the session cookies it set.
    key: str
    cookies: dict[str, str]

    @property
    def token(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.key}"}


def new_account(server: LiveServer, prefix: str, password: str) -> Account:
    """Register a user named ``prefix`` plus a unique suffix and log it in."""
    name = unique(prefix)
    assert register(server, name, password).status == 201
    reply = login(server, name, password)
    assert reply.status == 200, reply.raw
    key = reply.json["key"]
    me = call(server, "GET", "/api/users/self", headers={"Authorization": f"Token {key}"}).json
    return Account(int(me["id"]), name, key, reply.cookies())


def cli(server: LiveServer, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """``framesvc <args> --data-dir <the live server's data dir>``, as an operator runs it
    (with the server's database URL when that is not the data dir's SQLite file)."""
    return subprocess.run(
        [sys.executable, "-m", "framesvc.cli", *args, "--data-dir", str(server.data_dir)],
        input=stdin, capture_output=True, text=True, timeout=120, env=server.env,
    )


def db_execute(server: LiveServer, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Change the live server's store directly (what an admin tool would do)."""
    _db_execute(server, sql, params)
