"""Authentication, /api/server and /api/users against a real server and the real cvat-sdk."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from authutil import basic, call, cli, db_execute, login, register, unique
from conftest import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    LiveServer,
    database_url_for,
    start_server,
    stop_server,
)
from cvat_sdk import make_client
from cvat_sdk.api_client.exceptions import UnauthorizedException
from packaging.version import Version

from framesvc.http.auth import BasicAuthCache
from framesvc.store.auth import create_session, delete_expired_sessions, get_session
from framesvc.store.db import create_engine, migrate, utcnow
from framesvc.store.users import create_user

PASSWORD = "pass-Word-123"


def new_user(server: LiveServer) -> tuple[str, str]:
    """A fresh non-admin account (registered through the API) and its token key."""
    name = unique()
    reply = register(server, name, PASSWORD)
    assert reply.status == 201, reply.raw
    return name, reply.json["key"]


def token_header(key: str) -> dict[str, str]:
    return {"Authorization": f"Token {key}"}


# --- /api/server ----------------------------------------------------------------------------


def test_about_is_public_and_complete(server: LiveServer) -> None:
    reply = call(server, "GET", "/api/server/about")
    assert reply.status == 200
    about = reply.json
    for name in ("name", "description", "version", "logo_url", "subtitle"):
        assert isinstance(about[name], str) and about[name], name
    assert Version(about["version"]) == Version("2.80.0")
    assert about["name"] == "framesvc"
    assert about["logo_url"] == f"{server.url}/static/logo.svg"
    logo = call(server, "GET", "/static/logo.svg")
    assert logo.status == 200 and logo.headers["Content-Type"].startswith("image/svg+xml")

    plugins = call(server, "GET", "/api/server/plugins")
    assert plugins.status == 200 and plugins.json == {"ANALYTICS": False, "MODELS": False}


def test_about_ignores_bad_credentials(server: LiveServer) -> None:
    # The SDK calls about before anything else; a stale token must not break it.
    reply = call(server, "GET", "/api/server/about", headers=token_header("0" * 40))
    assert reply.status == 200


def test_no_credentials_is_401(server: LiveServer) -> None:
    for path in ("/api/users/self", "/api/users", "/api/users/1", "/api/anything-else"):
        reply = call(server, "GET", path)
        assert reply.status == 401, path
        assert reply.json == {"detail": "Authentication credentials were not provided."}
    assert call(server, "GET", "/api/server/about").status == 200


def test_trailing_slash_optional(server: LiveServer) -> None:
    auth = basic(ADMIN_USER, ADMIN_PASSWORD)
    for path in ("/api/users/self", "/api/users/self/", "/api/users", "/api/users/"):
        assert call(server, "GET", path, headers=auth).status == 200, path
    assert call(server, "GET", "/api/server/about/").status == 200
    assert call(server, "GET", "/api/server/plugins/").status == 200
    reply = call(server, "POST", "/api/auth/login/",
                 body={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
    assert reply.status == 200 and len(reply.json["key"]) == 40


@pytest.mark.parametrize("accept", [
    "application/vnd.cvat+json",
    "application/vnd.cvat+json; version=2.0",
    "application/vnd.cvat+json; version=1.0",
    "*/*",
    None,
    "image/png",
    "text/html",
])
def test_accept_header_never_406(server: LiveServer, accept: str | None) -> None:
    headers = {"Accept": accept} if accept else {}
    assert call(server, "GET", "/api/server/about", headers=headers).status == 200
    headers.update(basic(ADMIN_USER, ADMIN_PASSWORD))
    assert call(server, "GET", "/api/users/self", headers=headers).status == 200


# --- Password login through the SDK, session, logout ------------------------------------------


def test_sdk_password_login_uses_session(server: LiveServer) -> None:
    with make_client(f"http://{server.host}", port=server.port,
                     credentials=(ADMIN_USER, ADMIN_PASSWORD)) as client:
        cookies = client.api_client.cookies
        assert "sessionid" in cookies and "csrftoken" in cookies
        me = client.users.retrieve_current_user()
        assert me.username == ADMIN_USER
        assert me.is_superuser and me.groups == ["admin"]
        assert me.last_login is not None
        # The same session works from a raw client.
        reply = call(server, "GET", "/api/users/self",
                     cookies={"sessionid": cookies["sessionid"].value})
        assert reply.status == 200 and reply.json["username"] == ADMIN_USER


def test_sdk_logout_ends_the_session(server: LiveServer) -> None:
    # A fresh user: logout also deletes the user's token key, which other tests' admin
    # clients may hold.
    name, _ = new_user(server)
    with make_client(f"http://{server.host}", port=server.port,
                     credentials=(name, PASSWORD)) as client:
        session_id = client.api_client.cookies["sessionid"].value
        csrf = client.api_client.cookies["csrftoken"].value
        assert client.users.retrieve_current_user().username == name
        client.logout()
    reply = call(server, "GET", "/api/users/self",
                 cookies={"sessionid": session_id, "csrftoken": csrf})
    assert reply.status == 401


def test_login_response_and_cookies(server: LiveServer) -> None:
    reply = login(server, ADMIN_USER, ADMIN_PASSWORD)
    assert reply.status == 200
    assert set(reply.json) == {"key"} and re.fullmatch(r"[0-9a-f]{40}", reply.json["key"])
    headers = reply.set_cookie_headers()
    session_header = next(h for h in headers if h.startswith("sessionid="))
    csrf_header = next(h for h in headers if h.startswith("csrftoken="))
    for header in (session_header, csrf_header):
        assert "Path=/" in header and "SameSite=Lax" in header and "expires=" in header
    assert "HttpOnly" in session_header and "HttpOnly" not in csrf_header
    assert "Max-Age=1209" in session_header  # 14 days, Django's SESSION_COOKIE_AGE
    # The token key is one per user: a second login returns the same key, a new session.
    again = login(server, ADMIN_USER, ADMIN_PASSWORD)
    assert again.json["key"] == reply.json["key"]
    assert again.cookies()["sessionid"] != reply.cookies()["sessionid"]
    assert again.cookies()["csrftoken"] != reply.cookies()["csrftoken"]


def test_login_by_email_and_errors(server: LiveServer) -> None:
    name, _ = new_user(server)
    by_email = call(server, "POST", "/api/auth/login",
                    body={"email": f"{name}@example.com", "password": PASSWORD})
    assert by_email.status == 200
    failed = {"non_field_errors": ["Unable to log in with provided credentials."]}
    wrong = login(server, name, "not-the-password")
    assert wrong.status == 400 and wrong.json == failed
    unknown = login(server, unique("ghost"), PASSWORD)
    assert unknown.status == 400 and unknown.json == failed
    missing = call(server, "POST", "/api/auth/login", body={"username": name})
    assert missing.status == 400 and missing.json == {"password": ["This field is required."]}
    neither = call(server, "POST", "/api/auth/login", body={"password": PASSWORD})
    assert neither.status == 400 and list(neither.json) == ["non_field_errors"]
    garbage = call(server, "POST", "/api/auth/login", raw_body=b"{not json",
                   headers={"Content-Type": "application/json"})
    assert garbage.status == 400 and isinstance(garbage.json, list)
    not_object = call(server, "POST", "/api/auth/login", body=["x"])
    assert not_object.status == 400 and "non_field_errors" in not_object.json


def test_session_csrf_on_unsafe_methods(server: LiveServer) -> None:
    name, _ = new_user(server)
    cookies = login(server, name, PASSWORD).cookies()
    session = {"sessionid": cookies["sessionid"], "csrftoken": cookies["csrftoken"]}
    # Safe methods need no CSRF header.
    assert call(server, "GET", "/api/users/self", cookies=session).status == 200
    no_header = call(server, "POST", "/api/auth/logout", cookies=session)
    assert no_header.status == 403 and "CSRF" in no_header.json["detail"]
    wrong = call(server, "POST", "/api/auth/logout", cookies=session,
                 headers={"X-CSRFToken": "x" * 64})
    assert wrong.status == 403
    # A csrftoken cookie forged to match a forged header is still not the session's token.
    forged = call(server, "POST", "/api/auth/logout",
                  cookies={"sessionid": cookies["sessionid"], "csrftoken": "y" * 64},
                  headers={"X-CSRFToken": "y" * 64})
    assert forged.status == 403
    # The session survived the failed attempts; the right header logs out.
    assert call(server, "GET", "/api/users/self", cookies=session).status == 200
    ok = call(server, "POST", "/api/auth/logout", cookies=session,
              headers={"X-CSRFToken": cookies["csrftoken"], "Content-Type": "application/json"})
    assert ok.status == 200 and ok.json == {"detail": "Successfully logged out."}
    assert any(h.startswith("sessionid=") for h in ok.set_cookie_headers())
    assert call(server, "GET", "/api/users/self", cookies=session).status == 401


def test_expired_session_is_rejected(server: LiveServer) -> None:
    name, _ = new_user(server)
    cookies = login(server, name, PASSWORD).cookies()
    session = {"sessionid": cookies["sessionid"]}
    assert call(server, "GET", "/api/users/self", cookies=session).status == 200
    user_id = call(server, "GET", "/api/users/self", cookies=session).json["id"]
    db_execute(server, "UPDATE sessions SET expires = ? WHERE user_id = ?",
               (dt.datetime(2000, 1, 1, tzinfo=dt.UTC), user_id))
    assert call(server, "GET", "/api/users/self", cookies=session).status == 401


def test_logout_without_credentials_is_fine(server: LiveServer) -> None:
    reply = call(server, "POST", "/api/auth/logout", body={})
    assert reply.status == 200 and reply.json == {"detail": "Successfully logged out."}


# --- Token, Bearer and Basic ----------------------------------------------------------------


def test_token_auth_and_logout_deletes_token(server: LiveServer) -> None:
    name, key = new_user(server)
    me = call(server, "GET", "/api/users/self", headers=token_header(key))
    assert me.status == 200 and me.json["username"] == name
    bad = call(server, "GET", "/api/users/self", headers=token_header("f" * 40))
    assert bad.status == 401 and bad.json == {"detail": "Invalid token."}
    spaced = call(server, "GET", "/api/users/self", headers={"Authorization": "Token a b"})
    assert spaced.status == 401
    # dj-rest-auth deletes the caller's token on logout, whatever scheme was used.
    out = call(server, "POST", "/api/auth/logout", headers=token_header(key))
    assert out.status == 200
    assert call(server, "GET", "/api/users/self", headers=token_header(key)).status == 401
    new_key = login(server, name, PASSWORD).json["key"]
    assert new_key != key
    assert call(server, "GET", "/api/users/self", headers=token_header(new_key)).status == 200


def test_bearer_token_minted_by_cli(server: LiveServer) -> None:
    name, _ = new_user(server)
    minted = cli(server, "user", "token", name, "--name", "ci")
    assert minted.returncode == 0, minted.stderr
    secret = minted.stdout.strip()
    assert secret and "\n" not in secret and "shown only once" in minted.stderr

    with make_client(f"http://{server.host}", port=server.port, access_token=secret) as client:
        assert client.users.retrieve_current_user().username == name
    reply = call(server, "GET", "/api/users/self", headers={"Authorization": f"Bearer {secret}"})
    assert reply.status == 200
    bad = call(server, "GET", "/api/users/self", headers={"Authorization": "Bearer nope"})
    assert bad.status == 401
    db_execute(server, "UPDATE access_tokens SET expires = ? WHERE name = 'ci' AND user_id = ?",
               (dt.datetime(2000, 1, 1, tzinfo=dt.UTC), reply.json["id"]))
    expired = call(server, "GET", "/api/users/self",
                   headers={"Authorization": f"Bearer {secret}"})
    assert expired.status == 401


def test_basic_auth(server: LiveServer) -> None:
    name, _ = new_user(server)
    first = call(server, "GET", "/api/users/self", headers=basic(name, PASSWORD))
    assert first.status == 200 and first.json["username"] == name
    # Served from the verification cache the second time; still the same answer.
    assert call(server, "GET", "/api/users/self", headers=basic(name, PASSWORD)).status == 200
    wrong = call(server, "GET", "/api/users/self", headers=basic(name, "wrong-password"))
    assert wrong.status == 401 and wrong.json == {"detail": "Invalid username/password."}
    garbled = call(server, "GET", "/api/users/self", headers={"Authorization": "Basic %%%"})
    assert garbled.status == 401
    by_email = call(server, "GET", "/api/users/self",
                    headers=basic(f"{name}@example.com", PASSWORD))
    assert by_email.status == 200

    # A password changed from the CLI (another process) invalidates the cached credentials.
    changed = cli(server, "user", "passwd", name, "--password", "a-new-Password-9")
    assert changed.returncode == 0, changed.stderr
    assert call(server, "GET", "/api/users/self", headers=basic(name, PASSWORD)).status == 401
    assert call(server, "GET", "/api/users/self",
                headers=basic(name, "a-new-Password-9")).status == 200


def test_inactive_user_is_rejected(server: LiveServer) -> None:
    name, key = new_user(server)
    cookies = login(server, name, PASSWORD).cookies()
    db_execute(server, "UPDATE users SET is_active = ? WHERE username = ?", (False, name))
    token = call(server, "GET", "/api/users/self", headers=token_header(key))
    assert token.status == 401 and token.json == {"detail": "User inactive or deleted."}
    assert call(server, "GET", "/api/users/self", headers=basic(name, PASSWORD)).status == 401
    assert call(server, "GET", "/api/users/self",
                cookies={"sessionid": cookies["sessionid"]}).status == 401
    assert login(server, name, PASSWORD).status == 400


# --- Registration -----------------------------------------------------------------------------


def test_register_flow(server: LiveServer) -> None:
    name = unique()
    reply = register(server, name, PASSWORD, first_name="Ada", last_name="Lovelace")
    assert reply.status == 201
    body = reply.json
    assert {k: body[k] for k in ("username", "email", "first_name", "last_name",
                                 "email_verification_required")} == {
        "username": name, "email": f"{name}@example.com", "first_name": "Ada",
        "last_name": "Lovelace", "email_verification_required": False,
    }
    assert re.fullmatch(r"[0-9a-f]{40}", body["key"])
    assert {"sessionid", "csrftoken"} <= set(reply.cookies())

    me = call(server, "GET", "/api/users/self", headers=token_header(body["key"])).json
    assert me["groups"] == ["user"] and not me["is_superuser"] and not me["is_staff"]
    assert me["first_name"] == "Ada" and me["is_active"]
    with make_client(f"http://{server.host}", port=server.port,
                     credentials=(name, PASSWORD)) as client:
        assert client.users.retrieve_current_user().username == name


def test_register_validation(server: LiveServer) -> None:
    name, _ = new_user(server)
    taken = register(server, name)
    assert taken.status == 400
    assert taken.json["username"] == ["A user with that username already exists."]
    assert taken.json["email"] == ["A user is already registered with this e-mail address."]

    mismatch = call(server, "POST", "/api/auth/register", body={
        "username": unique(), "email": f"{unique()}@example.com",
        "password1": PASSWORD, "password2": PASSWORD + "x"})
    assert mismatch.status == 400
    assert mismatch.json == {"non_field_errors": ["The two password fields didn't match."]}

    short = register(server, unique(), "short1")
    assert short.status == 400 and list(short.json) == ["password1"]
    assert "too short" in short.json["password1"][0]
    numeric = register(server, unique(), "12345678901")
    assert numeric.json["password1"] == ["This password is entirely numeric."]

    bad_name = register(server, "bad name!")
    assert bad_name.status == 400 and "username" in bad_name.json
    tiny_name = register(server, "abc")
    assert tiny_name.json["username"] == ["Ensure this field has at least 5 characters."]
    bad_email = call(server, "POST", "/api/auth/register", body={
        "username": unique(), "email": "not-an-email",
        "password1": PASSWORD, "password2": PASSWORD})
    assert bad_email.json == {"email": ["Enter a valid email address."]}

    empty = call(server, "POST", "/api/auth/register", body={})
    assert empty.status == 400
    for field in ("username", "email", "password1", "password2"):
        assert empty.json[field] == ["This field is required."]


# --- /api/users -------------------------------------------------------------------------------


def test_users_list_and_retrieve(server: LiveServer) -> None:
    tag = unique("grp")
    names = []
    for first in ("Alpha", "Beta", "Gamma"):
        name = f"{tag}{first.lower()}"
        assert register(server, name, PASSWORD, first_name=first).status == 201
        names.append(name)
    admin = basic(ADMIN_USER, ADMIN_PASSWORD)

    found = call(server, "GET", f"/api/users?search={tag}&page_size=2", headers=admin).json
    assert found["count"] == 3 and len(found["results"]) == 2 and found["next"]
    # Default order is CVAT's -id: the newest account first.
    assert [u["username"] for u in found["results"]] == [names[2], names[1]]
    assert found["results"][0]["email"] == f"{names[2]}@example.com"  # admins see everything
    page2 = call(server, "GET", f"/api/users?search={tag}&page_size=2&page=2",
                 headers=admin).json
    assert [u["username"] for u in page2["results"]] == [names[0]] and page2["next"] is None

    by_name = call(server, "GET", f"/api/users?username={names[1]}", headers=admin).json
    assert [u["username"] for u in by_name["results"]] == [names[1]]
    sorted_up = call(server, "GET", f"/api/users?search={tag}&sort=first_name",
                     headers=admin).json
    assert [u["first_name"] for u in sorted_up["results"]] == ["Alpha", "Beta", "Gamma"]
    logic = json.dumps({"and": [{"in": [tag, {"var": "username"}]},
                                {"==": [{"var": "first_name"}, "Beta"]}]})
    filtered = call(server, "GET", "/api/users?" + urlencode({"filter": logic}), headers=admin)
    assert [u["username"] for u in filtered.json["results"]] == [names[1]]
    inactive = call(server, "GET", f"/api/users?search={tag}&is_active=False", headers=admin)
    assert inactive.status == 200 and inactive.json["count"] == 0
    assert call(server, "GET", "/api/users?id=abc", headers=admin).status == 400
    bad_var = call(server, "GET", "/api/users?" + urlencode({"filter": '{"var":"password_hash"}'}),
                   headers=admin)
    assert bad_var.status == 400
    assert call(server, "GET", "/api/users?filter=%7Bnope", headers=admin).status == 400

    # A regular user sees BasicUser entries, themself in full, and nobody else's record.
    me = basic(names[0], PASSWORD)
    listed = call(server, "GET", f"/api/users?search={tag}", headers=me).json
    assert listed["count"] == 3
    assert all(set(u) == {"url", "id", "username", "first_name", "last_name"}
               for u in listed["results"] if u["username"] != names[0])
    other_id = next(u["id"] for u in listed["results"] if u["username"] == names[1])
    own_id = next(u["id"] for u in listed["results"] if u["username"] == names[0])
    assert call(server, "GET", f"/api/users/{other_id}", headers=me).status == 403
    own = call(server, "GET", f"/api/users/{own_id}", headers=me)
    assert own.status == 200 and own.json["email"] == f"{names[0]}@example.com"
    assert own.json["url"] == f"{server.url}/api/users/{own_id}"
    assert call(server, "GET", f"/api/users/{other_id}", headers=admin).status == 200
    assert call(server, "GET", "/api/users/999999", headers=admin).status == 404


def test_sdk_lists_users(sdk_client) -> None:  # type: ignore[no-untyped-def]
    users = sdk_client.users.list()
    assert any(u.username == ADMIN_USER for u in users)
    me = sdk_client.users.retrieve_current_user()
    assert sdk_client.users.retrieve(me.id).username == ADMIN_USER


# --- First start and a closed server --------------------------------------------------------


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server started without FRAMESVC_ADMIN_* and with registration disabled."""
    live = start_server(tmp_path_factory.mktemp("bare"),
                        {"FRAMESVC_REGISTRATION_ENABLED": "false"}, admin=False)
    yield live
    stop_server(live)


def _generated_password(server: LiveServer) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = re.search(r"superuser 'admin' with generated password: (\S+)",
                          server.log_path.read_text(errors="replace"))
        if match:
            return match.group(1)
        time.sleep(0.1)
    raise AssertionError(f"no generated password in the log:\n{server.log_tail()}")


def test_generated_admin_on_first_start(bare_server: LiveServer) -> None:
    password = _generated_password(bare_server)
    assert len(password) >= 16
    with make_client(f"http://{bare_server.host}", port=bare_server.port,
                     credentials=("admin", password)) as client:
        me = client.users.retrieve_current_user()
        assert me.username == "admin" and me.is_superuser
    with pytest.raises(UnauthorizedException):
        make_client(f"http://{bare_server.host}", port=bare_server.port,
                    access_token="not-a-token").users.retrieve_current_user()


def test_registration_disabled(bare_server: LiveServer) -> None:
    reply = register(bare_server, unique())
    assert reply.status == 403 and "detail" in reply.json


def test_admin_variables_create_missing_admin(tmp_path: Path) -> None:
    """With users present but not FRAMESVC_ADMIN_USER, start creates that user too."""
    (tmp_path / "data").mkdir()
    url = database_url_for(tmp_path)
    migrate(url)

    async def seed() -> None:
        engine = create_engine(url)
        async with engine.begin() as conn:
            await create_user(conn, username="someone", password_hash="x")
        await engine.dispose()

    asyncio.run(seed())
    live = start_server(tmp_path)
    try:
        reply = login(live, ADMIN_USER, ADMIN_PASSWORD)
        assert reply.status == 200
    finally:
        stop_server(live)


# --- Store-level pieces -----------------------------------------------------------------------


async def test_session_store_expiry(tmp_path: Path) -> None:
    url = database_url_for(tmp_path)
    await asyncio.to_thread(migrate, url)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            user = await create_user(conn, username="sessions", password_hash="x")
            live = await create_session(conn, user.id)
            dead = await create_session(conn, user.id, age=dt.timedelta(seconds=-1))
        async with engine.connect() as conn:
            found = await get_session(conn, live.key)
            assert found is not None and found[1].id == user.id
            assert found[0].csrf_token == live.csrf_token
            assert found[0].expires > utcnow() + dt.timedelta(days=13)
            assert await get_session(conn, dead.key) is None
            assert await get_session(conn, "unknown") is None
        async with engine.begin() as conn:
            assert await delete_expired_sessions(conn) == 1
        async with engine.connect() as conn:
            assert await get_session(conn, live.key) is not None
    finally:
        await engine.dispose()


def test_basic_cache_entries() -> None:
    cache = BasicAuthCache(ttl=60, max_entries=2)
    key = cache.key("u", "p")
    assert key != cache.key("u", "q") and key != cache.key("u\0p", "")
    assert not cache.hit(key, 1, "hash")
    cache.put(key, 1, "hash")
    assert cache.hit(key, 1, "hash")
    assert not cache.hit(key, 1, "other-hash")  # password changed: entry dropped
    assert not cache.hit(key, 1, "hash")
    cache.put(key, 1, "hash")
    cache.put(cache.key("a", "b"), 2, "h2")
    cache.put(cache.key("c", "d"), 3, "h3")  # evicts the least recently used entry
    assert not cache.hit(key, 1, "hash")
    expired = BasicAuthCache(ttl=-1)
    expired.put(key, 1, "hash")
    assert not expired.hit(key, 1, "hash")
