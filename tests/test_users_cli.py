"""``framesvc user ...`` on the store of a running server, checked through its HTTP API."""

from __future__ import annotations

from authutil import basic, call, cli, login, unique
from conftest import LiveServer

PASSWORD = "cli-Password-42"


def test_add_then_login(server: LiveServer) -> None:
    name = unique("cli")
    added = cli(server, "user", "add", name, "--email", f"{name}@example.org",
                "--password", PASSWORD)
    assert added.returncode == 0, added.stderr
    assert f"created user '{name}'" in added.stdout

    reply = login(server, name, PASSWORD)
    assert reply.status == 200 and len(reply.json["key"]) == 40
    me = call(server, "GET", "/api/users/self", headers=basic(name, PASSWORD)).json
    assert me["email"] == f"{name}@example.org" and not me["is_superuser"]


def test_add_superuser_with_password_from_stdin(server: LiveServer) -> None:
    name = unique("root")
    added = cli(server, "user", "add", name, "--superuser", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    me = call(server, "GET", "/api/users/self", headers=basic(name, PASSWORD)).json
    assert me["is_superuser"] and me["groups"] == ["admin"]

    listed = cli(server, "user", "list")
    assert listed.returncode == 0
    line = next(ln for ln in listed.stdout.splitlines() if f" {name} " in f" {ln} ")
    assert "yes" in line.split()


def test_add_rejects_duplicates_and_bad_input(server: LiveServer) -> None:
    name = unique("dup")
    assert cli(server, "user", "add", name, "--password", PASSWORD).returncode == 0
    again = cli(server, "user", "add", name, "--password", PASSWORD)
    assert again.returncode == 1
    assert "already exists" in again.stderr and "Traceback" not in again.stderr
    # Usernames differing only in case would be confusing; they count as duplicates.
    assert cli(server, "user", "add", name.upper(), "--password", PASSWORD).returncode == 1

    bad_name = cli(server, "user", "add", "no spaces please", "--password", PASSWORD)
    assert bad_name.returncode == 1 and "valid username" in bad_name.stderr
    short = cli(server, "user", "add", unique("short"), "--password", "abc")
    assert short.returncode == 1 and "too short" in short.stderr
    assert cli(server, "user", "passwd", unique("ghost"), "--password", PASSWORD).returncode == 1
    assert cli(server, "user", "token", unique("ghost")).returncode == 1


def test_passwd_changes_password_and_ends_sessions(server: LiveServer) -> None:
    name = unique("pw")
    assert cli(server, "user", "add", name, "--password", PASSWORD).returncode == 0
    session = {"sessionid": login(server, name, PASSWORD).cookies()["sessionid"]}
    assert call(server, "GET", "/api/users/self", cookies=session).status == 200

    changed = cli(server, "user", "passwd", name, stdin="brand-New-pass-7\n")
    assert changed.returncode == 0, changed.stderr
    assert login(server, name, PASSWORD).status == 400
    assert login(server, name, "brand-New-pass-7").status == 200
    assert call(server, "GET", "/api/users/self", cookies=session).status == 401
