"""The transactional outbox, kept inside the document whose change an event announces.

MongoDB-protocol servers without transactions (FerretDB) still write one document atomically,
so a change and the event that announces it are stored together, in the document's `outbox`
array, in that same write: both or neither. After the write the event is posted to the broker
and then popped from the array. When the broker is down the event simply stays; a sweep, at
start-up and then periodically, sends what is still pending. Delivery is therefore at least
once: a crash between the post and the pop, or a sweep racing a request, sends an event twice,
with the same id (and the very same stored bytes), which is how consumers recognise it.

A document's events leave in the order they were written, and the pop is conditional on the
event being at the head of the array, so two senders racing each other pop it only once.

Use: append `entry(event, at)` to the document's `outbox` in the write that makes the change,
then `relay.send_soon(doc_id, doc["outbox"])`; `start()` the sweep at start-up and `close()`
it on shutdown. A subclass adds what its documents need after a pop or a sweep (products-api
removes a deleted product's tombstone once its last event is out).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bson import Binary
from prometheus_client import Counter, Gauge
from pymongo.asynchronous.collection import AsyncCollection

from fnkit.errors import EmitError
from fnkit.events import CloudEvent, from_json, to_json
from fnkit.locks import KeyedLock

__all__ = ["FIELD", "OutboxRelay", "entry"]

log = logging.getLogger("fnkit.outbox")

FIELD: Final = "outbox"

SWEEPS: Final = Counter(
    "fnkit_outbox_sweeps",
    "Completed passes of an outbox sweep, by collection and outcome.",
    ["collection", "outcome"],
)
PENDING: Final = Gauge(
    "fnkit_outbox_pending_documents",
    "Documents with events the broker has not taken yet, as counted by the last sweep.",
    ["collection"],
)

Emit = Callable[[CloudEvent], Awaitable[None]]
Entry = Mapping[str, Any]


def entry(event: CloudEvent, at: datetime) -> dict[str, Any]:
    """The outbox entry that stores `event`, to be appended in the same write as its change."""
    return {
        "id": event.get_id(),
        "type": event.get_type(),
        "at": at,
        "event": Binary(to_json(event)),
    }


class OutboxRelay:
    """Sends the events a collection's documents carry, in order, popping each once sent."""

    def __init__(
        self,
        collection: AsyncCollection[dict[str, Any]],
        emit: Emit,
        *,
        grace_seconds: float,
        interval_seconds: float,
        batch: int = 100,
        locks: KeyedLock | None = None,
    ) -> None:
        self.collection = collection
        self.locks = locks or KeyedLock()
        self._emit = emit
        self.grace = timedelta(seconds=grace_seconds)
        self.interval = interval_seconds
        self.batch = batch
        # Documents this process is sending right now, and those written to meanwhile: a
        # document has one sender per process, which then picks up what was appended behind it.
        self._sending: set[Any] = set()
        self._written_again: set[Any] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    async def create_indexes(self) -> None:
        """The index the sweep's query uses."""
        await self.collection.create_index(f"{FIELD}.at", name="outbox_at")

    def send_soon(self, doc_id: Any, pending: Sequence[Entry]) -> None:
        """Send a document's pending events in the background, right after the write."""
        if doc_id in self._sending:
            self._written_again.add(doc_id)
            return
        task = asyncio.create_task(self._send_in_background(doc_id, pending))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_in_background(self, doc_id: Any, pending: Sequence[Entry]) -> None:
        try:
            await self.send(doc_id, pending)
        except Exception as exc:
            # The events stay pending, and the sweep tries again.
            log.warning(
                "outbox send failed; the sweep will retry",
                extra={"doc_id": str(doc_id), "error": f"{type(exc).__name__}: {exc}"},
            )

    async def send(self, doc_id: Any, pending: Sequence[Entry]) -> bool:
        """Send `pending` (the document's outbox, oldest first); False if the broker refused."""
        if doc_id in self._sending:
            self._written_again.add(doc_id)
            return True
        self._sending.add(doc_id)
        try:
            while True:
                for item in pending:
                    try:
                        await self._emit(from_json(bytes(item["event"])))
                    except EmitError as exc:
                        log.warning(
                            "broker unavailable; event left pending",
                            extra={
                                "event_id": item["id"],
                                "event_type": item["type"],
                                "error": str(exc),
                            },
                        )
                        return False
                    await self._pop(doc_id, item)
                if doc_id not in self._written_again:
                    return True
                self._written_again.discard(doc_id)
                doc = await self.collection.find_one({"_id": doc_id}, {FIELD: 1})
                pending = doc.get(FIELD, []) if doc else []
        finally:
            self._sending.discard(doc_id)
            self._written_again.discard(doc_id)

    async def _pop(self, doc_id: Any, item: Entry) -> None:
        # Conditional on the event being at the head, so a racing sender cannot pop a newer one.
        async with self.locks(doc_id):
            await self.collection.update_one(
                {"_id": doc_id, f"{FIELD}.0.id": item["id"]}, {"$pop": {FIELD: -1}}
            )
            await self.popped(doc_id, item)

    async def popped(self, doc_id: Any, item: Entry) -> None:
        """Called under the document's lock once `item` is sent and popped; for subclasses."""

    async def swept(self, cutoff: datetime) -> None:
        """Called after a sweep that sent everything older than `cutoff`; for subclasses."""

    def observe_sweep(self, outcome: str, pending: int | None) -> None:
        """Record a sweep's outcome (complete, broker_unavailable, failed) and what is left."""
        name = self.collection.name
        SWEEPS.labels(name, outcome).inc()
        if pending is not None:
            PENDING.labels(name).set(pending)

    async def sweep(self) -> bool:
        """Send every event older than the grace period; False if the broker refused one."""
        cutoff = datetime.now(UTC) - self.grace
        query: dict[str, Any] = {f"{FIELD}.at": {"$lte": cutoff}}
        while True:
            docs = (
                await self.collection.find(query, {FIELD: 1})
                .sort("_id", 1)
                .limit(self.batch)
                .to_list()
            )
            for doc in docs:
                if doc["_id"] not in self._sending and not await self.send(doc["_id"], doc[FIELD]):
                    return False
            if len(docs) < self.batch:
                break
            query["_id"] = {"$gt": docs[-1]["_id"]}
        await self.swept(cutoff)
        return True

    async def _sweep_forever(self) -> None:
        while True:
            pending: int | None = None
            try:
                outcome = "complete" if await self.sweep() else "broker_unavailable"
                pending = await self.collection.count_documents({f"{FIELD}.0": {"$exists": True}})
            except Exception as exc:
                outcome = "failed"
                log.warning("outbox sweep failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            self.observe_sweep(outcome, pending)
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        """Start sweeping: once now (events a previous process left behind), then periodically."""
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="outbox-sweep")

    async def flush(self) -> None:
        """Wait for the sends started after writes to finish, whatever their outcome."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        """Stop sweeping and let the sends already under way finish."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        await self.flush()
