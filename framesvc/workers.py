"""The bounded worker pool that runs every blocking job (decode, encode, extract, probe).

Handlers and background requests never call blocking media code on the event loop;
they ``await pool.run(fn, ...)``.  The pool has ``workers`` threads (PyAV, Pillow,
simplejpeg and NumPy release the GIL in their heavy parts) and a bounded queue: when
``max_queue`` jobs are already waiting, further callers wait for a place instead of
failing, so a burst slows down rather than erroring.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class WorkerPool:
    def __init__(self, workers: int, max_queue: int | None = None) -> None:
        self.workers = max(1, workers)
        self.max_queue = max_queue if max_queue is not None else self.workers * 16
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="framesvc-worker")
        self._slots = asyncio.Semaphore(self.workers + self.max_queue)
        self._pending = 0

    @property
    def queue_depth(self) -> int:
        """Jobs submitted and not yet finished (running or waiting)."""
        return self._pending

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        async with self._slots:
            self._pending += 1
            try:
                loop = asyncio.get_running_loop()
                ctx = contextvars.copy_context()
                call = functools.partial(ctx.run, fn, *args, **kwargs)
                return await loop.run_in_executor(self._executor, call)
            finally:
                self._pending -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
