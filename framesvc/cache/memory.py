"""A bounded in-memory LRU tier in front of the disk cache, for small hot items.

A warm disk hit costs a diskcache SQLite read plus its access-time update on the
cache's I/O threads, then ``sendfile``; for a 200 KB frame that is most of the request.
Items up to ``max_item`` bytes (frames, previews, small chunks) are therefore also kept
here, as bytes with the same metadata the disk entry has (etag, mime, extra, created), so
a hit is a dictionary lookup on the event loop.

Keys are the cache's content-addressed keys, so an entry can never be stale: new content
means a new key, and old keys simply age out.  Entries are also dropped when the disk
entry is deleted or the cache cleared through *this* ``MediaCache``, so that ``delete``
and ``clear`` keep their meaning in-process.  Shared by the event loop and the cache's
I/O threads, hence the lock (held only for dictionary operations).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from framesvc.cache.items import Entry

#: Largest item kept in memory.
DEFAULT_MAX_ITEM = 1024 * 1024


@dataclass(frozen=True, slots=True)
class MemoryItem:
    entry: Entry
    body: bytes


class MemoryTier:
    """LRU of ``key -> MemoryItem`` bounded by total body bytes."""

    def __init__(self, max_bytes: int, max_item: int = DEFAULT_MAX_ITEM) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self.max_item = min(max(0, int(max_item)), self.max_bytes)
        self._items: OrderedDict[str, MemoryItem] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.max_item > 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def wants(self, size: int) -> bool:
        """Whether an item of ``size`` bytes belongs in this tier."""
        return 0 < size <= self.max_item

    def get(self, key: str) -> MemoryItem | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, entry: Entry, body: bytes) -> bool:
        """Keep ``body`` under ``entry.key`` if it fits; returns whether it was kept."""
        if entry.transient or not self.wants(len(body)) or len(body) != entry.size:
            return False
        with self._lock:
            old = self._items.pop(entry.key, None)
            if old is not None:
                self._bytes -= len(old.body)
            self._items[entry.key] = MemoryItem(entry, body)
            self._bytes += len(body)
            while self._bytes > self.max_bytes and self._items:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= len(evicted.body)
        return True

    def discard(self, key: str) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old.body)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
