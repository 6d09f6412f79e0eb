"""``framesvc user``: manage accounts in the same store ``framesvc serve`` uses.

    framesvc user add NAME [--superuser] [--email E] [--password P]   (else read from stdin)
    framesvc user list
    framesvc user passwd NAME [--password P]
    framesvc user token NAME [--name LABEL] [--expires-days N]

Every sub-command takes the store options of ``serve`` (``--data-dir``, ``--database-url``,
or the ``FRAMESVC_*`` variables) and migrates the store first, so it works on a fresh data
dir and on one a running server is using (SQLite in WAL mode allows both).  Errors go to
stderr with exit code 1.  ``token`` prints only the secret on stdout, so that
``TOKEN=$(framesvc user token alice)`` works.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import sys
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from framesvc.cli import add_store_options, command, settings_from_args
from framesvc.http.context import iso
from framesvc.security import hash_password, password_problems
from framesvc.store.auth import create_access_token, delete_user_sessions
from framesvc.store.db import create_engine, migrate, utcnow
from framesvc.store.users import (
    UserExistsError,
    create_user,
    get_user_by_username,
    list_users,
    set_password_hash,
)


class CommandError(Exception):
    """A user-facing failure: printed to stderr, exit code 1."""


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "Manage user accounts."
    sub = parser.add_subparsers(dest="user_command", required=True, metavar="COMMAND")

    add = sub.add_parser("add", help="create a user")
    add.add_argument("name", help="username (letters, digits and @.+-_)")
    add.add_argument("--superuser", action="store_true", help="make the user an administrator")
    add.add_argument("--email", default="", help="e-mail address")
    add.add_argument("--first-name", default="", help="first name")
    add.add_argument("--last-name", default="", help="last name")
    add.add_argument("--password", default=None,
                     help="password (default: prompt, or read one line from stdin)")
    add_store_options(add)

    lst = sub.add_parser("list", help="list users")
    add_store_options(lst)

    passwd = sub.add_parser("passwd", help="set a user's password (ends their sessions)")
    passwd.add_argument("name")
    passwd.add_argument("--password", default=None,
                        help="new password (default: prompt, or read one line from stdin)")
    add_store_options(passwd)

    token = sub.add_parser("token", help="mint a personal access token (printed once)")
    token.add_argument("name", help="the user the token acts as")
    token.add_argument("--name", dest="label", default="cli", help="label of the token")
    token.add_argument("--expires-days", type=int, default=None,
                       help="lifetime in days (default: no expiry)")
    add_store_options(token)


def read_password(given: str | None) -> str:
    """``--password``, else a prompt (twice) on a terminal, else the first line of stdin."""
    if given is not None:
        password = given
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password (again): ") != password:
            raise CommandError("passwords do not match")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    problems = password_problems(password)
    if problems:
        raise CommandError(" ".join(problems))
    return password


async def _add(engine: AsyncEngine, args: argparse.Namespace) -> int:
    password_hash = hash_password(read_password(args.password))
    async with engine.begin() as conn:
        try:
            user = await create_user(
                conn, username=args.name, password_hash=password_hash, email=args.email,
                first_name=args.first_name, last_name=args.last_name,
                is_superuser=args.superuser,
            )
        except UserExistsError as exc:
            raise CommandError(f"cannot add {args.name!r}: {exc.message}") from exc
        except ValueError as exc:
            raise CommandError(f"cannot add {args.name!r}: {exc}") from exc
    role = "superuser" if user.is_superuser else "user"
    print(f"created {role} {user.username!r} (id {user.id})")
    return 0


async def _list(engine: AsyncEngine, args: argparse.Namespace) -> int:
    async with engine.connect() as conn:
        users = await list_users(conn)
    rows = [("ID", "USERNAME", "EMAIL", "SUPERUSER", "ACTIVE", "LAST LOGIN")]
    for u in users:
        rows.append((str(u.id), u.username, u.email, "yes" if u.is_superuser else "no",
                     "yes" if u.is_active else "no", iso(u.last_login) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0


async def _passwd(engine: AsyncEngine, args: argparse.Namespace) -> int:
    async with engine.connect() as conn:
        user = await get_user_by_username(conn, args.name)
    if user is None:
        raise CommandError(f"no user named {args.name!r}")
    password_hash = hash_password(read_password(args.password))
    async with engine.begin() as conn:
        await set_password_hash(conn, user.id, password_hash)
        ended = await delete_user_sessions(conn, user.id)
    print(f"password of {user.username!r} changed; {ended} session(s) ended", file=sys.stderr)
    return 0


async def _token(engine: AsyncEngine, args: argparse.Namespace) -> int:
    if args.expires_days is not None and args.expires_days <= 0:
        raise CommandError("--expires-days must be positive")
    expires = (utcnow() + dt.timedelta(days=args.expires_days)
               if args.expires_days is not None else None)
    async with engine.begin() as conn:
        user = await get_user_by_username(conn, args.name)
        if user is None:
            raise CommandError(f"no user named {args.name!r}")
        token, secret = await create_access_token(conn, user.id, args.label, expires=expires)
    until = f"until {iso(expires)}" if expires else "without expiry"
    print(f"token {token.id} ({token.name!r}) for {user.username!r}, valid {until}; "
          "it is shown only once:", file=sys.stderr)
    print(secret)
    return 0


_HANDLERS: dict[str, Callable[[AsyncEngine, argparse.Namespace], Awaitable[int]]] = {
    "add": _add,
    "list": _list,
    "passwd": _passwd,
    "token": _token,
}


async def _run(url: str, args: argparse.Namespace) -> int:
    engine = create_engine(url)
    try:
        return await _HANDLERS[args.user_command](engine, args)
    finally:
        await engine.dispose()


@command("user", _configure)
def user(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    try:
        migrate(settings.effective_database_url)
        return asyncio.run(_run(settings.effective_database_url, args))
    except CommandError as exc:
        print(f"framesvc user {args.user_command}: {exc}", file=sys.stderr)
        return 1
