"""Fixtures for the media cache tests: a real worker pool and a cache in a temp dir.

Not a ``conftest.py``: the suite's root conftest is imported as the module ``conftest``
(tests do ``from conftest import LiveServer``), and a second ``conftest.py`` here would
take that name.  Test modules import the fixtures below explicitly instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from framesvc import metrics
from framesvc.cache import MediaCache
from framesvc.workers import WorkerPool

MiB = 1024 * 1024


@pytest.fixture(name="pool")
def pool_fixture() -> Iterator[WorkerPool]:
    workers = WorkerPool(4)
    yield workers
    workers.shutdown()


@pytest.fixture(name="cache")
async def cache_fixture(tmp_path: Path) -> AsyncIterator[MediaCache]:
    media_cache = MediaCache(tmp_path / "cache", 64 * MiB,
                             transient_dir=tmp_path / "transient")
    (tmp_path / "transient").mkdir()
    yield media_cache
    await media_cache.aclose()


class MetricDeltas:
    """Counter values relative to when the object was made (metrics are process-global)."""

    NAMES = ("hits", "misses", "coalesced", "builds", "build_failures", "transient",
             "evictions", "orphans_removed")

    def __init__(self) -> None:
        self._start = {name: self._read(name) for name in self.NAMES}

    @staticmethod
    def _read(name: str) -> float:
        return metrics.sample(f"framesvc_cache_{name}_total")

    def __getitem__(self, name: str) -> float:
        return self._read(name) - self._start[name]


@pytest.fixture(name="deltas")
def deltas_fixture() -> MetricDeltas:
    return MetricDeltas()
