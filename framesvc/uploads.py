"""Upload sessions: where a task's not-yet-ingested files live, and how bytes reach them.

CVAT's client attaches local files to a task in a session of several requests
(``Upload-Start``, any number of ``Upload-Multiple`` multipart batches and TUS 1.0
uploads, then ``Upload-Finish``).  This module keeps that session's state, with no
HTTP in it: one ``upload_files`` row per received file (client name, kind, order,
declared length and current offset) and the file itself under
``<upload_root>/<task id>/<file id>``.  Files are stored under a random id rather than
their client name so that a hostile name can never address anything on disk; the name
is only used once the ingest copies the files into the task's ``raw/`` directory.

Why a small TUS core instead of ``aiohttp-tus`` (1.1.0): that library owns the POST
route of its upload URL (ours also carries Upload-Start/-Multiple/-Finish), answers
``Tus-Temp-Filename`` rather than the ``Upload-Filename`` header the CVAT SDK requires,
reads each PATCH body fully into memory, refuses a second file of the same name, and
keeps its state in JSON side files instead of our database.  The protocol subset CVAT
uses (creation, PATCH at offset, HEAD) is small enough to keep here, tested.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from framesvc.config import Settings
from framesvc.store.db import utcnow
from framesvc.store.schema import upload_files
from framesvc.workers import WorkerPool

KIND_MULTIPART = "multipart"
KIND_TUS = "tus"

#: Bytes gathered before one write is handed to the worker pool.
WRITE_BUFFER = 1024 * 1024

#: Longest accepted file name (bytes of UTF-8), as most file systems allow.
MAX_NAME_BYTES = 255


class UploadError(Exception):
    """A client mistake in an upload; ``status`` is the HTTP status the caller should use."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class UploadTooLarge(UploadError):
    def __init__(self, message: str) -> None:
        super().__init__(message, status=413)


@dataclass(frozen=True)
class UploadedFile:
    id: str
    task_id: int
    filename: str
    kind: str
    ordinal: int
    length: int
    offset: int
    created: dt.datetime

    @property
    def complete(self) -> bool:
        return self.offset >= self.length


def safe_filename(raw: str) -> str:
    """The basename of a client-supplied path, or :class:`UploadError` if it is unusable.

    The SDK sends the client's absolute path (``/home/u/img_00.png``, or a Windows
    path), so both separators are cut.  Names that could address something other than
    a plain file in one directory (empty, ``.``, ``..``, NUL or other control
    characters, over-long) are refused.
    """
    name = raw.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name or name in (".", "..") or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise UploadError(f"File name {raw} is not allowed")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise UploadError(f"File name {raw[:64]}... is too long")
    return name


def new_file_id() -> str:
    return str(uuid.uuid4())


def parse_file_id(raw: str) -> str | None:
    """The canonical form of a file id from a URL, or None if it is not one of ours."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        return None


def session_dir(settings: Settings, task_id: int) -> Path:
    return settings.upload_root / str(task_id)


def file_path(settings: Settings, task_id: int, file_id: str) -> Path:
    return session_dir(settings, task_id) / file_id


# -- blocking helpers (run them in the worker pool) -------------------------------------


def remove_session_files(settings: Settings, task_id: int) -> None:
    shutil.rmtree(session_dir(settings, task_id), ignore_errors=True)


def create_empty(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb"):
        pass


def write_at(path: Path, offset: int, data: bytes) -> None:
    """Write ``data`` at ``offset`` (the file exists), flushing to the OS before returning."""
    fd = os.open(path, os.O_WRONLY)
    try:
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, offset)
            offset += written
            view = view[written:]
    finally:
        os.close(fd)


def sync_files(paths: Sequence[Path]) -> None:
    """Flush files (and their directories) to the device before the store records them.

    Ordering, not just durability: the session row (multipart) or the offset (TUS) that
    acknowledges the bytes is committed only after this, so the store can never claim
    bytes that a power loss would turn into zeros or garbage.  (A process crash loses
    nothing the kernel accepted, with or without it.)  A batch's files are synced
    together at its end: the first ``fsync`` commits the file system's journal for all
    of them, the others find little left to do.  Measured cost: ``docs/security.md``,
    "Crash safety".
    """
    for path in [*paths, *sorted({p.parent for p in paths})]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


# -- streaming ---------------------------------------------------------------------------


class StreamSink:
    """Copies chunks from an async source to a file at an offset, via the worker pool.

    ``written`` always says how many bytes reached the file, also after an exception,
    so a TUS PATCH that breaks off mid-body still advances the offset by what arrived.
    """

    def __init__(self, pool: WorkerPool, path: Path, offset: int, limit: int) -> None:
        self.pool = pool
        self.path = path
        self.offset = offset
        self.limit = limit
        self.written = 0
        self._buffer = bytearray()

    async def feed(self, chunk: bytes) -> None:
        room = self.limit - self.written - len(self._buffer)
        if len(chunk) > room:
            # Keep what fits (a TUS client resumes from the offset it is told).
            self._buffer += chunk[: max(room, 0)]
            await self.flush()
            raise UploadTooLarge(f"The upload is larger than the allowed {self.limit} bytes")
        self._buffer += chunk
        if len(self._buffer) >= WRITE_BUFFER:
            await self.flush()

    async def flush(self) -> None:
        if not self._buffer:
            return
        data = bytes(self._buffer)
        self._buffer.clear()
        await self.pool.run(write_at, self.path, self.offset + self.written, data)
        self.written += len(data)

    async def copy(self, read_chunk: Callable[[], Awaitable[bytes]]) -> int:
        """Feed every chunk until ``read_chunk`` returns ``b""``; always flushes what came."""
        try:
            while True:
                chunk = await read_chunk()
                if not chunk:
                    break
                await self.feed(chunk)
        finally:
            await self.flush()
        return self.written


# -- session rows ------------------------------------------------------------------------


def _from_row(row: sa.Row) -> UploadedFile:  # type: ignore[type-arg]
    m = row._mapping
    return UploadedFile(
        id=m["id"],
        task_id=m["task_id"],
        filename=m["filename"],
        kind=m["kind"],
        ordinal=m["ordinal"],
        length=m["length"],
        offset=m["offset"],
        created=m["created"],
    )


async def list_files(conn: AsyncConnection, task_id: int) -> list[UploadedFile]:
    """The session's files in task order: multipart ones first, then TUS, each as received."""
    kind_order = sa.case((upload_files.c.kind == KIND_MULTIPART, 0), else_=1)
    rows = await conn.execute(
        sa.select(upload_files)
        .where(upload_files.c.task_id == task_id)
        .order_by(kind_order, upload_files.c.ordinal)
    )
    return [_from_row(r) for r in rows]


async def get_file(conn: AsyncConnection, task_id: int, file_id: str) -> UploadedFile | None:
    row = (
        await conn.execute(
            sa.select(upload_files).where(
                upload_files.c.task_id == task_id, upload_files.c.id == file_id
            )
        )
    ).first()
    return _from_row(row) if row else None


async def clear_rows(conn: AsyncConnection, task_id: int) -> None:
    await conn.execute(sa.delete(upload_files).where(upload_files.c.task_id == task_id))


async def session_bytes(conn: AsyncConnection, task_id: int) -> int:
    """Declared bytes of all files in the session (TUS files count their full length)."""
    total = (
        await conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(upload_files.c.length), 0)).where(
                upload_files.c.task_id == task_id
            )
        )
    ).scalar_one()
    return int(total)


async def check_new_file(
    conn: AsyncConnection, settings: Settings, task_id: int, filename: str, length: int
) -> None:
    """Refuse a file over the size limits or with a name the session already holds.

    Two files of one name would land on one path in ``raw/`` (CVAT silently appends
    them into one corrupt file); an unfinished TUS upload of the same name is the
    client retrying its creation, so that one is dropped instead.
    """
    if length > settings.max_upload_bytes:
        raise UploadTooLarge(
            f"File size exceeds max limit of {settings.max_upload_bytes} bytes"
        )
    existing = (
        await conn.execute(
            sa.select(upload_files).where(
                upload_files.c.task_id == task_id, upload_files.c.filename == filename
            )
        )
    ).first()
    if existing is not None:
        found = _from_row(existing)
        if found.kind == KIND_TUS and not found.complete:
            await conn.execute(sa.delete(upload_files).where(upload_files.c.id == found.id))
        else:
            raise UploadError("File with same name already exists", status=409)
    if await session_bytes(conn, task_id) + length > settings.max_upload_bytes:
        raise UploadTooLarge(
            f"The files of one task may not exceed {settings.max_upload_bytes} bytes"
        )


async def add_file(
    conn: AsyncConnection,
    task_id: int,
    user_id: int | None,
    filename: str,
    kind: str,
    length: int,
    offset: int = 0,
    *,
    file_id: str | None = None,
) -> UploadedFile:
    """Record a file of the session (its bytes are at ``file_path(…, record.id)``)."""
    ordinal = (
        await conn.execute(
            sa.select(sa.func.coalesce(sa.func.max(upload_files.c.ordinal), -1)).where(
                upload_files.c.task_id == task_id
            )
        )
    ).scalar_one() + 1
    record = UploadedFile(
        id=file_id or new_file_id(),
        task_id=task_id,
        filename=filename,
        kind=kind,
        ordinal=int(ordinal),
        length=length,
        offset=offset,
        created=utcnow(),
    )
    await conn.execute(
        sa.insert(upload_files).values(
            id=record.id,
            task_id=task_id,
            user_id=user_id,
            filename=filename,
            kind=kind,
            ordinal=record.ordinal,
            length=length,
            offset=offset,
            created=record.created,
        )
    )
    return record


async def set_progress(
    conn: AsyncConnection, file_id: str, offset: int, length: int | None = None
) -> None:
    values: dict[str, int] = {"offset": offset}
    if length is not None:
        values["length"] = length
    await conn.execute(sa.update(upload_files).where(upload_files.c.id == file_id).values(values))
