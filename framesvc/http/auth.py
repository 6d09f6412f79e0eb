"""Authentication: who is calling, and the ``/api/auth`` login, logout and register endpoints.

The ``authenticate`` middleware runs before every other module's middleware (``"auth"`` is
first in ``ROUTE_MODULES``) and sets ``request[USER]`` from the first scheme that applies,
in the order of CVAT's DRF authentication classes:

1. ``Authorization: Token <key>``: the key that login returns;
2. ``Authorization: Bearer <secret>``: a personal access token (``framesvc user token``);
3. the ``sessionid`` cookie, with a CSRF check on unsafe methods (``X-CSRFToken`` must equal
   the ``csrftoken`` cookie and the session's token; the SDK always sends both);
4. ``Authorization: Basic``: username (or e-mail) and password.

Invalid credentials are 401 ``{"detail": ...}``; a request under ``/api/`` with none is 401
too, except the public endpoints in :data:`PUBLIC`.  A stale or unknown session cookie is
ignored, as Django does, so it falls through to the next scheme.  Paths outside ``/api/``
(``/metrics``, say) are not guarded here.

Basic auth verifies an Argon2 hash (~0.1 s of CPU) in the worker pool, and remembers
recently verified credentials (keyed by an HMAC of username and password, together with
the stored hash they were checked against) so that a client sending Basic on every call
does not pay the KDF every time, and a password change anywhere invalidates the entry.

Content negotiation: nothing here (or in aiohttp) answers 406, whatever ``Accept`` says;
CVAT's ``application/vnd.cvat+json`` with or without ``; version=``, ``*/*`` and no header
at all are served alike.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import enum
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from framesvc.app import SERVICES, Services, services
from framesvc.cache.resolved import ResolvedCache
from framesvc.http.context import USER
from framesvc.http.errors import ApiError, bad_request, field_errors, forbidden, json_response
from framesvc.http.security import loads_json, login_throttle
from framesvc.openapi import models
from framesvc.openapi.operations import cvat_json, errors, operation
from framesvc.security import (
    MAX_PASSWORD_LENGTH,
    burn_verify,
    generate_password,
    hash_password,
    needs_rehash,
    password_problems,
    same,
    verify_password,
)
from framesvc.store.auth import (
    SESSION_AGE,
    Session,
    create_session,
    delete_auth_tokens,
    delete_expired_sessions,
    delete_session,
    get_or_create_auth_token,
    get_session,
    user_for_access_token,
    user_for_auth_token,
)
from framesvc.store.db import utcnow
from framesvc.store.users import (
    User,
    UserExistsError,
    count_users,
    create_user,
    get_user_and_hash,
    get_user_by_email,
    get_user_by_username,
    set_last_login,
    set_password_hash,
    username_error,
)

log = logging.getLogger("framesvc.auth")

#: ``request[SESSION]`` is the :class:`Session` when the caller came in with a session cookie.
SESSION = web.RequestKey("session", Session)

SESSION_COOKIE = "sessionid"
CSRF_COOKIE = "csrftoken"
CSRF_HEADER = "X-CSRFToken"
#: Django's ``CSRF_COOKIE_AGE``: a year.  The token itself lives as long as its session.
CSRF_COOKIE_AGE = dt.timedelta(days=365)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

#: Passwords far longer than any valid one are never fed to the KDF at login.
MAX_LOGIN_PASSWORD_LENGTH = 16 * MAX_PASSWORD_LENGTH
REGISTER_USERNAME_MIN_LENGTH = 5
NAME_MAX_LENGTH = 150
EMAIL_MAX_LENGTH = 254

LOGIN_FAILED = "Unable to log in with provided credentials."
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


class Access(enum.Enum):
    #: Credentials are required.
    REQUIRED = "required"
    #: Credentials are used when valid and otherwise ignored (about, plugins, logout).
    OPTIONAL = "optional"
    #: Nobody is identified (login and register need no caller, and skip the CSRF check).
    SKIP = "skip"


#: Public endpoints: (method, path without trailing slash) -> access.  ``HEAD`` is looked
#: up as ``GET`` (:func:`access_for`), so it can never be more open or more closed.
PUBLIC: dict[tuple[str, str], Access] = {
    ("GET", "/api/server/about"): Access.OPTIONAL,
    ("GET", "/api/server/plugins"): Access.OPTIONAL,
    ("GET", "/api/schema"): Access.OPTIONAL,
    ("POST", "/api/auth/login"): Access.SKIP,
    ("POST", "/api/auth/register"): Access.SKIP,
    # dj-rest-auth's LogoutView is AllowAny: logging out without a live session is fine.
    ("POST", "/api/auth/logout"): Access.OPTIONAL,
}


def access_for(method: str, path: str) -> Access:
    normalized = path.rstrip("/") or "/"
    method = method.upper()
    if method == "HEAD":  # Django runs the GET view for HEAD, permission checks included
        method = "GET"
    return PUBLIC.get((method, normalized), Access.REQUIRED)


def _unauthorized(message: str) -> ApiError:
    # DRF names its first authentication scheme in WWW-Authenticate; "Token" (not "Basic")
    # also keeps browsers from popping up a password dialog.
    return ApiError(401, {"detail": message}, headers={"WWW-Authenticate": "Token"})


def _not_provided() -> ApiError:
    return _unauthorized("Authentication credentials were not provided.")


# --- Basic-auth verification cache --------------------------------------------------------


class BasicAuthCache:
    """Recently verified Basic credentials, so repeated calls skip the password KDF.

    Entries are keyed by an HMAC (with a per-process random key) of username and password,
    so the cache never holds a password, and remember the stored hash they were verified
    against: when that hash changes (``framesvc user passwd``, even from another process),
    the entry no longer matches.
    """

    def __init__(self, ttl: float = 300.0, max_entries: int = 1024) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._secret = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, tuple[int, str, float]] = OrderedDict()

    def key(self, username: str, password: str) -> bytes:
        message = username.encode() + b"\0" + password.encode()
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def hit(self, key: bytes, user_id: int, password_hash: str) -> bool:
        entry = self._entries.get(key)
        if entry is None:
            return False
        cached_id, cached_hash, expires = entry
        if expires < time.monotonic() or cached_id != user_id or cached_hash != password_hash:
            del self._entries[key]
            return False
        self._entries.move_to_end(key)
        return True

    def put(self, key: bytes, user_id: int, password_hash: str) -> None:
        self._entries[key] = (user_id, password_hash, time.monotonic() + self.ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


_BASIC_CACHE = "auth.basic_cache"


def _basic_cache(svc: Services) -> BasicAuthCache:
    cache = svc.extras.get(_BASIC_CACHE)
    if cache is None:
        cache = svc.extras[_BASIC_CACHE] = BasicAuthCache()
    return cache


#: Seconds a resolved Token/Bearer/session credential may be reused.  Within that, an
#: entry is also dropped at once by any committed write (``StoreGeneration``; on SQLite
#: that includes other processes, e.g. ``framesvc user passwd``), so the TTL only bounds
#: what a write on another database server could leave unseen.
CALLER_TTL = 5.0
CALLER_ENTRIES = 4096
_CALLERS = "auth.caller_cache"
_CREDENTIAL_SECRET = secrets.token_bytes(32)

Caller = tuple[User, Session | None]


def caller_cache(svc: Services) -> ResolvedCache[Caller]:
    """The per-application cache of credential -> caller (disabled, i.e. 0 entries, on
    databases where other processes' writes cannot be seen at once)."""
    cache: ResolvedCache[Caller] | None = svc.extras.get(_CALLERS)
    if cache is None:
        size = CALLER_ENTRIES if svc.generation.cross_process else 0
        cache = svc.extras[_CALLERS] = ResolvedCache(svc.generation, size, CALLER_TTL)
    return cache


def _credential_key(scheme: bytes, secret: str) -> tuple[bytes, bytes]:
    """A cache key that does not hold the secret itself (keyed hash, per process)."""
    digest = hashlib.blake2b(secret.encode("utf-8", "surrogatepass"),
                             key=_CREDENTIAL_SECRET, digest_size=20).digest()
    return scheme, digest


# --- Identification -----------------------------------------------------------------------


def _check_active(user: User) -> User:
    if not user.is_active:
        raise _unauthorized("User inactive or deleted.")
    return user


def _single_credential(credentials: str) -> str:
    if not credentials:
        raise _unauthorized("Invalid token header. No credentials provided.")
    if " " in credentials:
        raise _unauthorized("Invalid token header. Token string should not contain spaces.")
    return credentials


async def _token_user(svc: Services, credentials: str) -> User:
    key = _single_credential(credentials)

    async def lookup() -> User | None:
        if len(key) > 40:
            return None
        async with svc.engine.connect() as conn:
            return await user_for_auth_token(conn, key)

    return await _cached_user(svc, b"token", key, lookup)


async def _bearer_user(svc: Services, credentials: str) -> User:
    secret = _single_credential(credentials)

    async def lookup() -> User | None:
        async with svc.engine.begin() as conn:  # the lookup may note ``last_used``
            return await user_for_access_token(conn, secret)

    # (When the lookup noted ``last_used``, that write moved the generation, so the
    # entry it leaves is already stale and the next request looks again, without writing.)
    return await _cached_user(svc, b"bearer", secret, lookup)


async def _cached_user(svc: Services, scheme: bytes, secret: str,
                       lookup: Callable[[], Awaitable[User | None]]) -> User:
    """The active user a ``scheme`` credential names: from the caller cache while the
    store generation is unchanged, else from ``lookup`` (401 if it finds none)."""
    cache = caller_cache(svc)
    cache_key = _credential_key(scheme, secret)
    token = cache.token()
    hit = cache.get(cache_key, token)
    if hit is not None:
        return _check_active(hit[0])
    user = await lookup()
    if user is None:
        raise _unauthorized("Invalid token.")
    cache.put(cache_key, (user, None), token)
    return _check_active(user)


async def _session_caller(svc: Services, session_key: str) -> Caller | None:
    cache = caller_cache(svc)
    cache_key = _credential_key(b"session", session_key)
    token = cache.token()
    hit = cache.get(cache_key, token)
    if hit is not None:
        session = hit[1]
        if session is not None and session.expires > utcnow():
            return hit
    async with svc.engine.connect() as conn:
        found = await get_session(conn, session_key)
    if found is None:
        return None
    session, user = found
    caller: Caller = (user, session)
    cache.put(cache_key, caller, token)
    return caller


def _check_csrf(request: web.Request, session: Session) -> None:
    if request.method in SAFE_METHODS:
        return
    header = request.headers.get(CSRF_HEADER, "")
    if not header:
        raise forbidden("CSRF Failed: CSRF token missing.")
    cookie = request.cookies.get(CSRF_COOKIE)
    if cookie is not None and not same(cookie, header):
        raise forbidden(f"CSRF Failed: CSRF token from the '{CSRF_HEADER}' HTTP header "
                        "does not match the cookie.")
    if not same(header, session.csrf_token):
        raise forbidden(f"CSRF Failed: CSRF token from the '{CSRF_HEADER}' HTTP header "
                        "incorrect.")


def _account(found: tuple[User, str] | None, given: str) -> str:
    """The throttle's key for a login name: the user's id when it exists, so that the
    username and the e-mail of one account share one count; else the name as given."""
    return f"id:{found[0].id}" if found is not None else f"name:{given.strip().casefold()}"


async def _basic_user(svc: Services, credentials: str, remote: str | None) -> User:
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True)
        try:
            text = decoded.decode("utf-8")
        except UnicodeDecodeError:
            text = decoded.decode("latin-1")
        username, sep, password = text.partition(":")
        if not sep:
            raise ValueError("no colon")
    except (ValueError, binascii.Error) as exc:
        raise _unauthorized(
            "Invalid basic header. Credentials not correctly base64 encoded."
        ) from exc
    if len(password) > MAX_LOGIN_PASSWORD_LENGTH:
        raise _unauthorized("Invalid username/password.")
    cache = _basic_cache(svc)
    key = cache.key(username, password)
    throttle = login_throttle(svc.extras, svc.settings)
    async with svc.engine.connect() as conn:
        found = await get_user_and_hash(conn, username=username)
        if found is None and "@" in username:
            found = await get_user_and_hash(conn, email=username)
    if found is not None and cache.hit(key, found[0].id, found[1]):
        return _check_active(found[0])  # verified recently: no password check to throttle
    account = _account(found, username)
    attempt = throttle.admit(remote, account)
    if found is None:
        await svc.pool.run(burn_verify, password)
        raise _unauthorized("Invalid username/password.")
    user, password_hash = found
    if not await svc.pool.run(verify_password, password_hash, password):
        raise _unauthorized("Invalid username/password.")
    throttle.succeeded(remote, account, attempt)
    cache.put(key, user.id, password_hash)
    return _check_active(user)


async def identify(request: web.Request) -> User | None:
    """The caller, by the first scheme that applies; None when no credentials were sent.

    Raises a 401 :class:`ApiError` for bad credentials and 403 for a failed CSRF check.
    """
    svc = services(request)
    scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
    scheme = scheme.lower()
    credentials = credentials.strip()
    if scheme == "token":
        return await _token_user(svc, credentials)
    if scheme == "bearer":
        return await _bearer_user(svc, credentials)
    session_key = request.cookies.get(SESSION_COOKIE)
    if session_key:
        found = await _session_caller(svc, session_key)
        if found is not None and found[0].is_active:
            user, session = found
            assert session is not None
            _check_csrf(request, session)
            request[SESSION] = session
            return user
    if scheme == "basic":
        return await _basic_user(svc, credentials, request.remote)
    return None


@web.middleware
async def authenticate(request: web.Request, handler):  # type: ignore[no-untyped-def]
    path = request.path
    if path != "/api" and not path.startswith("/api/"):
        return await handler(request)
    access = access_for(request.method, path)
    if access is Access.SKIP:
        return await handler(request)
    try:
        user = await identify(request)
    except ApiError as exc:
        if access is Access.OPTIONAL and exc.status == 401:
            user = None
        else:
            raise
    if user is not None:
        request[USER] = user
    elif access is Access.REQUIRED:
        raise _not_provided()
    return await handler(request)


middlewares = [authenticate]


# --- Request bodies -----------------------------------------------------------------------


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object (DRF's JSON parser; also accepts an HTML form)."""
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            form = await request.post()
        except (ValueError, AssertionError, HttpProcessingError) as exc:
            raise bad_request(f"Form parse error - {exc}") from exc
        return {k: v for k, v in form.items() if isinstance(v, str)}
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = loads_json(raw)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        raise bad_request(f"JSON parse error - {exc}") from exc
    if not isinstance(data, dict):
        raise field_errors({"non_field_errors": [
            f"Invalid data. Expected a dictionary, but got {type(data).__name__}."
        ]})
    return data


def _string_field(
    data: dict[str, Any], name: str, errors: dict[str, list[str]], *,
    required: bool = False, allow_blank: bool = False, strip: bool = True,
    max_length: int | None = None, min_length: int | None = None,
) -> str:
    """One DRF ``CharField``: the same checks, in the same order, with DRF's messages."""
    if name not in data:
        if required:
            errors[name] = ["This field is required."]
        return ""
    value = data[name]
    if value is None:
        errors[name] = ["This field may not be null."]
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        errors[name] = ["Not a valid string."]
        return ""
    text = str(value).strip() if strip else str(value)
    if "\x00" in text:  # DRF's ProhibitNullCharactersValidator; no database holds such text
        errors[name] = ["Null characters are not allowed."]
        return ""
    if not text:
        if not allow_blank:
            errors[name] = ["This field may not be blank."]
        return ""
    if max_length is not None and len(text) > max_length:
        errors[name] = [f"Ensure this field has no more than {max_length} characters."]
    elif min_length is not None and len(text) < min_length:
        errors[name] = [f"Ensure this field has at least {min_length} characters."]
    return text


# --- Cookies --------------------------------------------------------------------------------


def _http_date(when: dt.datetime) -> str:
    return email.utils.format_datetime(when.astimezone(dt.UTC), usegmt=True)


def set_session_cookies(response: web.StreamResponse, session: Session) -> None:
    """``sessionid`` (HttpOnly) and ``csrftoken``, in Django's format, both on ``Path=/``."""
    now = utcnow()
    session_age = max(0, int((session.expires - now).total_seconds()))
    response.set_cookie(
        SESSION_COOKIE, session.key, expires=_http_date(session.expires), max_age=session_age,
        path="/", httponly=True, samesite="Lax",
    )
    csrf_age = int(CSRF_COOKIE_AGE.total_seconds())
    response.set_cookie(
        CSRF_COOKIE, session.csrf_token, expires=_http_date(now + CSRF_COOKIE_AGE),
        max_age=csrf_age, path="/", samesite="Lax",
    )


# --- Handlers -----------------------------------------------------------------------------


@operation("auth_create_login", "Log in: a token key and a session",
           body=models.LoginSerializerExRequest,
           responses={200: cvat_json(models.Token), **errors(400),
                      429: cvat_json(models.ErrorDetail, "Too many failed attempts")})
async def login(request: web.Request) -> web.Response:
    """dj-rest-auth's LoginView: ``{"key": ...}`` plus a session (cookies) for the SDK."""
    svc = services(request)
    data = await read_json_object(request)
    errors: dict[str, list[str]] = {}
    username = _string_field(data, "username", errors, allow_blank=True)
    email_addr = _string_field(data, "email", errors, allow_blank=True)
    password = _string_field(data, "password", errors, required=True, strip=False)
    if email_addr and "email" not in errors and not _EMAIL_RE.match(email_addr):
        errors["email"] = ["Enter a valid email address."]
    if errors:
        raise field_errors(errors)
    if not (username or email_addr):
        raise field_errors({"non_field_errors": [
            'Must include either "username" or "email" and "password".'
        ]})

    async with svc.engine.connect() as conn:
        if email_addr:
            found = await get_user_and_hash(conn, email=email_addr)
        else:
            found = await get_user_and_hash(conn, username=username)
            if found is None and "@" in username:
                found = await get_user_and_hash(conn, email=username)
    throttle = login_throttle(svc.extras, svc.settings)
    account = _account(found, email_addr or username)
    attempt = throttle.admit(request.remote, account)
    too_long = len(password) > MAX_LOGIN_PASSWORD_LENGTH
    if found is None or too_long:
        if not too_long:
            await svc.pool.run(burn_verify, password)
        raise field_errors({"non_field_errors": [LOGIN_FAILED]})
    user, password_hash = found
    if not await svc.pool.run(verify_password, password_hash, password) or not user.is_active:
        raise field_errors({"non_field_errors": [LOGIN_FAILED]})
    throttle.succeeded(request.remote, account, attempt)
    new_hash = (await svc.pool.run(hash_password, password)
                if needs_rehash(password_hash) else None)

    async with svc.engine.begin() as conn:
        if new_hash is not None:
            await set_password_hash(conn, user.id, new_hash)
        key = await get_or_create_auth_token(conn, user.id)
        previous = request.cookies.get(SESSION_COOKIE)
        if previous:
            await delete_session(conn, previous)
        session = await create_session(conn, user.id)
        await set_last_login(conn, user.id, utcnow())
    response = json_response({"key": key})
    set_session_cookies(response, session)
    return response


@operation("auth_create_logout", "Log out: end the session and delete the token key",
           responses={200: cvat_json(models.RestAuthDetail)})
async def logout(request: web.Request) -> web.Response:
    """dj-rest-auth's LogoutView: end the session and delete the caller's token key."""
    svc = services(request)
    user: User | None = request.get(USER)
    cookie = request.cookies.get(SESSION_COOKIE)
    async with svc.engine.begin() as conn:
        if cookie:
            await delete_session(conn, cookie)
        if user is not None:
            await delete_auth_tokens(conn, user.id)
    response = json_response({"detail": "Successfully logged out."})
    if cookie:
        response.del_cookie(SESSION_COOKIE, path="/", samesite="Lax")
    return response


@operation("auth_create_register", "Create an account",
           body=models.RegisterSerializerExRequest,
           responses={201: cvat_json(models.RegisterSerializerEx), **errors(400, 403)})
async def register(request: web.Request) -> web.Response:
    """CVAT's RegisterViewEx: a new active user, its token key and a session (201).

    With ``Settings.registration_enabled = False`` the endpoint answers 403 (a permission
    refusal in CVAT's ``{"detail"}`` shape) rather than 404/405, so a client can tell a
    closed server from an old one.
    """
    svc = services(request)
    if not svc.settings.registration_enabled:
        raise forbidden("Registration is disabled on this server.")
    data = await read_json_object(request)
    errors: dict[str, list[str]] = {}
    username = _string_field(data, "username", errors, required=True,
                             max_length=NAME_MAX_LENGTH,
                             min_length=REGISTER_USERNAME_MIN_LENGTH)
    email_addr = _string_field(data, "email", errors, required=True,
                               max_length=EMAIL_MAX_LENGTH)
    password1 = _string_field(data, "password1", errors, required=True, strip=False)
    password2 = _string_field(data, "password2", errors, required=True, strip=False)
    first_name = _string_field(data, "first_name", errors, allow_blank=True,
                               max_length=NAME_MAX_LENGTH)
    last_name = _string_field(data, "last_name", errors, allow_blank=True,
                              max_length=NAME_MAX_LENGTH)
    if username and "username" not in errors:
        problem = username_error(username)
        if problem:
            errors["username"] = [problem]
    if email_addr and "email" not in errors and not _EMAIL_RE.match(email_addr):
        errors["email"] = ["Enter a valid email address."]
    if password1 and "password1" not in errors:
        problems = password_problems(password1)
        if problems:
            errors["password1"] = problems
    async with svc.engine.connect() as conn:
        if username and "username" not in errors and (
            await get_user_by_username(conn, username)
        ):
            errors["username"] = ["A user with that username already exists."]
        if email_addr and "email" not in errors and await get_user_by_email(conn, email_addr):
            errors["email"] = ["A user is already registered with this e-mail address."]
    if errors:
        raise field_errors(errors)
    if password1 != password2:
        raise field_errors({"non_field_errors": ["The two password fields didn't match."]})

    password_hash = await svc.pool.run(hash_password, password1)
    async with svc.engine.begin() as conn:
        try:
            user = await create_user(
                conn, username=username, password_hash=password_hash, email=email_addr,
                first_name=first_name, last_name=last_name,
            )
        except UserExistsError as exc:
            raise field_errors({exc.field: [exc.message]}) from exc
        key = await get_or_create_auth_token(conn, user.id)
        session = await create_session(conn, user.id)
        await set_last_login(conn, user.id, utcnow())
    response = json_response(
        {
            "username": user.username,
            "email": user.email,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "email_verification_required": False,
            "key": key,
        },
        status=201,
    )
    # allauth's complete_signup logs the new user in, so CVAT answers with a session too.
    set_session_cookies(response, session)
    return response


routes = [
    ("POST", "/api/auth/login", login),
    ("POST", "/api/auth/logout", logout),
    ("POST", "/api/auth/register", register),
]


# --- First start --------------------------------------------------------------------------


async def ensure_admin(svc: Services) -> User | None:
    """Create the first superuser; returns it when one was created.

    * No users at all: ``admin_user`` (default ``admin``) with ``admin_password``, or with a
      generated password printed once to stdout.
    * ``FRAMESVC_ADMIN_USER``/``FRAMESVC_ADMIN_PASSWORD`` set and that user missing while
      others exist: create it too, because deployment scripts rely on the variables.
    An existing user is never modified (use ``framesvc user passwd`` to change a password).
    """
    settings = svc.settings
    name = settings.admin_user or "admin"
    configured = bool(settings.admin_user or settings.admin_password)
    async with svc.engine.connect() as conn:
        empty = await count_users(conn) == 0
        missing = await get_user_by_username(conn, name) is None
    if not (empty or (configured and missing)):
        return None
    password = settings.admin_password or generate_password()
    password_hash = await svc.pool.run(hash_password, password)
    try:
        async with svc.engine.begin() as conn:
            user = await create_user(conn, username=name, password_hash=password_hash,
                                     is_superuser=True)
    except UserExistsError:  # another replica created it first
        return None
    except ValueError as exc:
        raise SystemExit(f"FRAMESVC_ADMIN_USER {name!r} is not a valid username: {exc}") from exc
    if settings.admin_password:
        print(f"framesvc: created superuser {name!r} from FRAMESVC_ADMIN_USER/"
              "FRAMESVC_ADMIN_PASSWORD", flush=True)
    else:
        print(f"framesvc: created superuser {name!r} with generated password: {password}",
              flush=True)
        print("framesvc: this password is shown only once; change it with "
              f"`framesvc user passwd {name}`", flush=True)
    return user


async def on_startup(app: web.Application) -> None:
    svc = app[SERVICES]
    await ensure_admin(svc)
    async with svc.engine.begin() as conn:
        removed = await delete_expired_sessions(conn)
    if removed:
        log.info("removed %d expired sessions", removed)


__all__ = [
    "PUBLIC",
    "SESSION",
    "SESSION_AGE",
    "Access",
    "BasicAuthCache",
    "access_for",
    "authenticate",
    "ensure_admin",
    "identify",
    "middlewares",
    "on_startup",
    "read_json_object",
    "routes",
    "set_session_cookies",
]
