"""Cross-process build locks and the staging directory where builds write.

Builds are serialised per key across every process sharing a cache directory with
``fcntl.flock`` on lock files.  Keys map onto a fixed set of *stripes* (``STRIPES``
lock files) instead of one lock file per key: a per-key file could never be deleted
safely (a process may hold a lock on a file another just unlinked, and a third would
lock a fresh file of the same name), so per-key files would pile up forever.  Two keys
sharing a stripe merely build one after the other across processes.

``flock`` locks belong to an *open file description*, so two opens of the same lock
file in one process exclude each other just as two processes do; the lock is dropped by
the kernel when the holder dies, which is what makes ``kill -9`` recoverable.

A build writes into ``staging/<stripe>.<keyhash>.<random>.part`` while holding its
stripe lock and renames the file into the store before releasing it.  So a staging
file whose stripe lock can be taken is, by construction, left over by a build that died
(or was abandoned): ``sweep_staging`` deletes exactly those.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import uuid
from pathlib import Path

STRIPES = 1024
_SUFFIX = ".part"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def stripe_of(key: str) -> int:
    return int(key_hash(key)[:8], 16) % STRIPES


class StripeLock:
    """A held stripe lock; ``release()`` is idempotent."""

    def __init__(self, stripe: int, fd: int) -> None:
        self.stripe = stripe
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the description drops the flock


class StripeLocks:
    """The lock files under ``<cache_dir>/locks``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, stripe: int) -> Path:
        return self.directory / f"{stripe:04d}.lock"

    def try_acquire(self, stripe: int) -> StripeLock | None:
        """Take the stripe's lock without waiting; None if someone holds it.  Never blocks."""
        fd = os.open(self.path(stripe), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return StripeLock(stripe, fd)


def staging_name(key: str) -> str:
    return f"{stripe_of(key):04d}.{key_hash(key)[:16]}.{uuid.uuid4().hex}{_SUFFIX}"


def _stripe_of_staging(name: str) -> int | None:
    head, _, _ = name.partition(".")
    if not name.endswith(_SUFFIX) or not head.isdigit():
        return None
    stripe = int(head)
    return stripe if 0 <= stripe < STRIPES else None


def list_staging(staging: Path) -> list[Path]:
    try:
        return [p for p in staging.iterdir() if p.is_file()]
    except FileNotFoundError:
        return []


def sweep_staging(staging: Path, locks: StripeLocks) -> int:
    """Delete staging files no live build owns; returns how many were removed.

    For each stripe with files, take its lock without waiting: if that succeeds no build
    of that stripe is running anywhere, so its files are orphans.  Files whose name is
    not ours are left alone.
    """
    by_stripe: dict[int, list[Path]] = {}
    for path in list_staging(staging):
        stripe = _stripe_of_staging(path.name)
        if stripe is not None:
            by_stripe.setdefault(stripe, []).append(path)
    removed = 0
    for stripe, paths in sorted(by_stripe.items()):
        lock = locks.try_acquire(stripe)
        if lock is None:
            continue
        try:
            for path in paths:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
        finally:
            lock.release()
    return removed
