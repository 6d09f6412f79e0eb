"""Small in-process LRUs of what warm requests resolve, valid while the store is unchanged.

A warm media request used to spend most of its time in database round trips (token ->
user, job -> access, job -> media scope), each ~0.4 ms through the async driver.  Their
answers only change when something is written, so they are cached here keyed by the
:class:`~framesvc.store.db.StoreGeneration` token taken *before* resolving: an entry is
served only while the token is still the same, so any committed write in this process
(and, on SQLite, in any process) invalidates every entry at once.  ``ttl`` additionally
bounds an entry's age where writes elsewhere might not be seen (other databases than
SQLite) or where a policy wants it anyway.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

from framesvc.store.db import StoreGeneration

V = TypeVar("V")


class ResolvedCache(Generic[V]):
    """Bounded LRU of ``key -> value``; see the module docstring.  Event loop only."""

    def __init__(self, generation: StoreGeneration, max_entries: int,
                 ttl: float | None = None) -> None:
        self.generation = generation
        self.max_entries = max_entries
        self.ttl = ttl
        self._entries: OrderedDict[Hashable, tuple[V, object, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and (self.ttl is None or self.ttl > 0)

    def token(self) -> object:
        """Take this before resolving; pass it to :meth:`put` with the result."""
        return self.generation.token()

    def get(self, key: Hashable, token: object | None = None) -> V | None:
        """The value if still valid (``token``: the current one, if already taken)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, stored, deadline = entry
        if token is None:
            token = self.generation.token()
        if stored != token or time.monotonic() >= deadline:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: Hashable, value: V, token: object) -> None:
        if not self.enabled:
            return
        deadline = time.monotonic() + self.ttl if self.ttl is not None else float("inf")
        self._entries[key] = (value, token, deadline)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
