"""The transactional outbox, kept inside each product document.

MongoDB-protocol servers without transactions (FerretDB) still write one document atomically,
so every change to a product appends the event that announces it to the product's own
`outbox` array in that same write: the change and its event are stored together or not at all.
After the write, the event is posted to the broker and then popped from the array. When the
broker is down the event simply stays; a sweep, at start-up and then periodically, sends what
is still pending. Delivery is therefore at least once: a crash between the post and the pop,
or a sweep racing a request, sends an event twice, with the same id (and the very same stored
bytes), which is how consumers recognise the duplicate.

A product's events leave in the order they were written, and the pop is conditional on the
event being at the head of the array, so two senders racing each other pop it only once.
Deleted products stay as tombstones (no fields but `version`, `deleted_at` and the outbox)
until their `deleted` event is out; then the tombstone is removed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bson import Binary, ObjectId
from fnkit import CloudEvent, EmitError
from fnkit.events import from_json, to_json
from prometheus_client import Counter, Gauge
from pymongo.asynchronous.collection import AsyncCollection

from products_api.locks import KeyedLock

log = logging.getLogger("products_api.outbox")

FIELD: Final = "outbox"
DELETED_TYPE: Final = "io.knative-playbook.product.deleted.v1"

SWEEPS: Final = Counter(
    "products_outbox_sweeps", "Completed passes of the outbox sweep, by outcome.", ["outcome"]
)
PENDING: Final = Gauge(
    "products_outbox_pending_products",
    "Products with events the broker has not taken yet, as counted by the last sweep.",
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
    """Sends the events products carry, in order, and pops each once the broker has it."""

    def __init__(
        self,
        collection: AsyncCollection[dict[str, Any]],
        emit: Emit,
        *,
        grace_seconds: float,
        interval_seconds: float,
        batch: int,
        locks: KeyedLock,
    ) -> None:
        self.collection = collection
        self.locks = locks
        self._emit = emit
        self.grace = timedelta(seconds=grace_seconds)
        self.interval = interval_seconds
        self.batch = batch
        # Products this process is sending right now, and those written to meanwhile: a product
        # has one sender per process, which then picks up what was appended behind it.
        self._sending: set[ObjectId] = set()
        self._written_again: set[ObjectId] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def send_soon(self, product_id: ObjectId, pending: Sequence[Entry]) -> None:
        """Send a product's pending events in the background, right after the write."""
        if product_id in self._sending:
            self._written_again.add(product_id)
            return
        task = asyncio.create_task(self._send_in_background(product_id, pending))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_in_background(self, product_id: ObjectId, pending: Sequence[Entry]) -> None:
        try:
            await self.send(product_id, pending)
        except Exception as exc:
            # The events stay pending, and the sweep tries again.
            log.warning(
                "outbox send failed; the sweep will retry",
                extra={"product_id": str(product_id), "error": f"{type(exc).__name__}: {exc}"},
            )

    async def send(self, product_id: ObjectId, pending: Sequence[Entry]) -> bool:
        """Send `pending` (the product's outbox, oldest first); False if the broker refused one."""
        if product_id in self._sending:
            self._written_again.add(product_id)
            return True
        self._sending.add(product_id)
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
                    await self._pop(product_id, item)
                if product_id not in self._written_again:
                    return True
                self._written_again.discard(product_id)
                doc = await self.collection.find_one({"_id": product_id}, {FIELD: 1})
                pending = doc.get(FIELD, []) if doc else []
        finally:
            self._sending.discard(product_id)
            self._written_again.discard(product_id)

    async def _pop(self, product_id: ObjectId, item: Entry) -> None:
        # Conditional on the event being at the head, so a racing sender cannot pop a newer one.
        async with self.locks(product_id):
            await self.collection.update_one(
                {"_id": product_id, f"{FIELD}.0.id": item["id"]}, {"$pop": {FIELD: -1}}
            )
            if item["type"] == DELETED_TYPE:
                await self.collection.delete_one(
                    {"_id": product_id, "deleted_at": {"$exists": True}, FIELD: {"$size": 0}}
                )

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
        # Tombstones whose last event went out but whose removal did not (a crash in between).
        await self.collection.delete_many({"deleted_at": {"$lte": cutoff}, FIELD: {"$size": 0}})
        return True

    async def _sweep_forever(self) -> None:
        while True:
            try:
                outcome = "complete" if await self.sweep() else "broker_unavailable"
                PENDING.set(
                    await self.collection.count_documents({f"{FIELD}.0": {"$exists": True}})
                )
            except Exception as exc:
                outcome = "failed"
                log.warning("outbox sweep failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            SWEEPS.labels(outcome).inc()
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
