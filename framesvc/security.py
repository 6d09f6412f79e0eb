"""Password hashing and the random secrets of authentication.

Passwords are hashed with Argon2id through ``argon2-cffi`` (a memory-hard KDF; nothing here
is hand-rolled).  Hashing and verifying take ~0.1 s of CPU on purpose, so callers on the
event loop must run them in the worker pool (``await pool.run(verify_password, ...)``).

Every other secret (API token keys, session ids, CSRF tokens, personal access tokens,
generated passwords) comes from :mod:`secrets`.  Secrets that only need to be recognised,
never shown again (session ids, personal access tokens), are stored as a SHA-256 digest so
that a copy of the database does not hand out live credentials.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

#: Argon2id with argon2-cffi's defaults (RFC 9106 "low memory" profile: t=3, m=64 MiB, p=4).
_hasher = PasswordHasher()

_ALNUM = string.ascii_letters + string.digits
_LOWER_ALNUM = string.ascii_lowercase + string.digits

#: Prefix of personal access tokens, so a leaked one is recognisable in logs and scanners.
ACCESS_TOKEN_PREFIX = "fsvc_"


def hash_password(password: str) -> str:
    """An Argon2id PHC string (``$argon2id$v=19$m=...``) with a fresh random salt."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches; False for a mismatch or an unusable stored hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than the current ones."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_hex(16))


def burn_verify(password: str) -> None:
    """Spend the time of one verification when there is no user to check against.

    Login answers "unknown user" and "wrong password" in the same time, so response
    timing does not tell which usernames exist.
    """
    verify_password(_dummy_hash(), password)


def new_token_key() -> str:
    """A DRF-style API token key: 40 hex characters (160 random bits)."""
    return secrets.token_hex(20)


def new_session_key() -> str:
    """A Django-style session id: 32 characters of ``[a-z0-9]`` (~165 random bits)."""
    return "".join(secrets.choice(_LOWER_ALNUM) for _ in range(32))


def new_csrf_token() -> str:
    """A CSRF token: 64 alphanumeric characters, as long as Django's masked form."""
    return "".join(secrets.choice(_ALNUM) for _ in range(64))


def new_access_token() -> str:
    """A personal access token secret (shown once; only its digest is kept)."""
    return ACCESS_TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """SHA-256 hex of a high-entropy secret; the stored form of session ids and PATs.

    A plain hash is enough (no KDF) because these secrets are random, not chosen by people.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


#: Django's MinimumLengthValidator default and CVAT's MaximumLengthPasswordValidator.
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256


def password_problems(password: str) -> list[str]:
    """What is wrong with a new password, in Django's words (CVAT's validators).

    Checked on registration and by ``framesvc user add/passwd``; never on login, where
    an old password may predate the rules.
    """
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append("This password is too short. It must contain at least "
                        f"{MIN_PASSWORD_LENGTH} characters.")
    if password.isdigit():
        problems.append("This password is entirely numeric.")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"Password must be {MAX_PASSWORD_LENGTH} characters or fewer.")
    return problems


def generate_password(length: int = 20) -> str:
    """A random password with letters and digits (for the first administrator)."""
    while True:
        password = "".join(secrets.choice(_ALNUM) for _ in range(length))
        if (any(c.islower() for c in password) and any(c.isupper() for c in password)
                and any(c.isdigit() for c in password)):
            return password


def same(a: str, b: str) -> bool:
    """Constant-time string comparison (for CSRF tokens and the like)."""
    return hmac.compare_digest(a.encode(), b.encode())
