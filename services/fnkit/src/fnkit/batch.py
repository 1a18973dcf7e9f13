"""Group commit: the writes of concurrent invocations made together, in one round trip.

A MongoDB-protocol server charges per write command far more than per document: on FerretDB
(SQLite) one `insert_many` of a hundred documents costs about what two `insert_one` calls do,
because each command is a transaction of its own. A function that handles many events at once
(a fan-out's processors and aggregator) therefore queues each event's write, and one flush
writes everything queued so far; what arrives during a flush waits for the next one. Batches
grow with the load and stay at one item when it is light, so nothing waits for a timer.

Every caller still gets its own outcome, and only once its write is done: a handler that
answers 2xx after `submit` returns has its write stored, as it would with a write of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Generic, TypeVar

from prometheus_client import Histogram

from fnkit.errors import Unavailable

__all__ = ["Batcher"]

log = logging.getLogger("fnkit.batch")

T = TypeVar("T")
R = TypeVar("R")

Write = Callable[[Sequence[T]], Awaitable[Sequence[R | Exception]]]

BATCH_ITEMS: Final = Histogram(
    "fnkit_batch_items",
    "Items written together by one flush of a group-commit batcher.",
    ["batch"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)


class Batcher(Generic[T, R]):
    """`await batcher.submit(item)`: queue `item` for the next flush and return its outcome.

    `write(items)` stores a batch and returns one outcome per item, in order: a result, or an
    exception for that item alone. An exception raised by `write` fails the whole batch.
    One flush runs at a time, at most `max_items` items each.
    """

    def __init__(self, name: str, write: Write[T, R], *, max_items: int = 500) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self.name = name
        self.max_items = max_items
        self._write = write
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._observe = BATCH_ITEMS.labels(name).observe

    async def submit(self, item: T) -> R:
        """Queue `item`, wait for the flush that writes it, and return its outcome."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_all(), name=f"batch-{self.name}")
        # A caller that goes away (cancelled) leaves its item queued: it is written anyway,
        # which at-least-once writers must allow for in any case.
        return await future

    def pending(self) -> int:
        """Items queued and not yet flushed."""
        return len(self._queue)

    async def _flush_all(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self.max_items]
                del self._queue[: self.max_items]
                await self._flush(batch)
        except BaseException:
            # Cancelled (the process is stopping): whoever still waits gets a 503 to retry.
            stopped = Unavailable(f"{self.name}: stopped before the write; retry")
            for _, future in self._queue:
                _settle(future, stopped)
            self._queue.clear()
            raise
        finally:
            self._flusher = None

    async def _flush(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        self._observe(len(batch))
        try:
            outcomes = await self._write([item for item, _ in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(
                    f"{self.name}: write returned {len(outcomes)} outcomes for {len(batch)} items"
                )
        except Exception as exc:
            for _, future in batch:
                _settle(future, exc)
            return
        except BaseException:
            stopped = Unavailable(f"{self.name}: stopped during the write; retry")
            for _, future in batch:
                _settle(future, stopped)
            raise
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            _settle(future, outcome)


def _settle(future: asyncio.Future[R], outcome: R | Exception) -> None:
    if future.done():  # its caller was cancelled
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
