"""A diskcache ``Disk`` whose values are finished files moved into the store, never copied.

Stock diskcache copies a file-like value into a new file of its own (``set(..., read=True)``)
and hands back bare bytes or a bare file handle.  We need three things it does not do:

* **publish by rename**: a build has already written and fsynced its bytes in the
  staging directory; ``store`` renames that file into the store (same filesystem, so
  atomic), so a reader can only ever see a complete file;
* **metadata next to the file**: mime type, digest, creation time and the build's
  ``extra`` dict are kept in the row's ``value`` column as JSON, so a hit is one row
  read and eviction removes data and metadata together;
* **an open handle and its path on a hit**: ``fetch`` opens the file inside diskcache's
  lookup transaction and returns it with the path and the metadata.

Rows written by this class use their own ``MODE_MEDIA`` so they can never be mistaken
for diskcache's own value kinds.
"""

from __future__ import annotations

import contextlib
import os
import os.path as op
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import diskcache
from diskcache.core import UNKNOWN

#: ``Cache.mode`` of rows holding a media item (diskcache's own modes are 0..4).
MODE_MEDIA = 16


@dataclass
class Staged:
    """A finished file in the staging directory, to be moved into the store by ``set``."""

    path: Path
    size: int
    payload: str
    #: Where ``store`` moved the file; set as soon as the rename succeeded.
    stored_path: Path | None = None


@dataclass
class Fetched:
    """What a lookup returns: the open file, its absolute path and the row's metadata."""

    file: BinaryIO
    path: Path
    size: int
    payload: str


class MediaDisk(diskcache.Disk):
    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> tuple[int, int, str | None, Any]:
        if not isinstance(value, Staged):
            return super().store(value, read, key=key)
        filename, full_path = self.filename(key, value)
        # Another cache may remove the (empty) sub-directory between makedirs and rename
        # (``Disk.remove`` prunes empty directories); diskcache's own writer retries too.
        for attempt in range(10):
            with contextlib.suppress(OSError):
                os.makedirs(op.dirname(full_path))
            try:
                os.rename(value.path, full_path)
                break
            except FileNotFoundError:
                if not value.path.exists() or attempt == 9:
                    raise
        value.stored_path = Path(full_path)
        return value.size, MODE_MEDIA, filename, value.payload

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode != MODE_MEDIA:
            return super().fetch(mode, filename, value, read)
        assert filename is not None
        full_path = Path(op.join(self._directory, filename))
        file = open(full_path, "rb")  # noqa: SIM115 - ownership passes to the caller
        try:
            size = os.fstat(file.fileno()).st_size
        except BaseException:
            file.close()
            raise
        return Fetched(file=file, path=full_path, size=size, payload=str(value))
