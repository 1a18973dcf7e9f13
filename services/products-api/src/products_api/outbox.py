"""The transactional outbox, kept inside each product document (fnkit.outbox does the work).

MongoDB-protocol servers without transactions (FerretDB) still write one document atomically,
so every change to a product appends the event that announces it to the product's own
`outbox` array in that same write: the change and its event are stored together or not at all.
After the write, the event is posted to the broker and then popped from the array. A create
stages its event in `products_outbox` instead, right before inserting the product, and the
insert decides: a staged event whose product exists is sent, then deleted with others in one
delete; one whose product never appeared is fenced off by a tombstone without an outbox (so
the late insert fails) and dropped. When the
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

from datetime import datetime
from typing import Any, Final

from fnkit.locks import KeyedLock
from fnkit.outbox import FIELD, Emit, Entry, OutboxRelay, entry
from prometheus_client import Counter, Gauge
from pymongo.asynchronous.collection import AsyncCollection

__all__ = ["DELETED_TYPE", "FIELD", "ProductOutbox", "entry"]

DELETED_TYPE: Final = "io.knative-playbook.product.deleted.v1"

SWEEPS: Final = Counter(
    "products_outbox_sweeps", "Completed passes of the outbox sweep, by outcome.", ["outcome"]
)
PENDING: Final = Gauge(
    "products_outbox_pending_products",
    "Products with events the broker has not taken yet, as counted by the last sweep.",
)


class ProductOutbox(OutboxRelay):
    """fnkit's outbox relay, staging creates' events, and removing deleted products' tombstones."""

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
        super().__init__(
            collection,
            emit,
            grace_seconds=grace_seconds,
            interval_seconds=interval_seconds,
            batch=batch,
            locks=locks,
            staging=True,
        )

    async def popped(self, doc_id: Any, item: Entry) -> None:
        if item["type"] == DELETED_TYPE:
            await self.collection.delete_one(
                {"_id": doc_id, "deleted_at": {"$exists": True}, FIELD: {"$size": 0}}
            )

    def fence(self, doc_id: Any, at: datetime) -> dict[str, Any]:
        # A tombstone that reads as a deleted product, kept for good: no outbox to empty.
        return {"_id": doc_id, "version": 0, "deleted_at": at}

    async def swept(self, cutoff: datetime) -> None:
        # Tombstones whose last event went out but whose removal did not (a crash in between).
        await self.collection.delete_many({"deleted_at": {"$lte": cutoff}, FIELD: {"$size": 0}})

    def observe_sweep(self, outcome: str, pending: int | None) -> None:
        SWEEPS.labels(outcome).inc()
        if pending is not None:
            PENDING.set(pending)
