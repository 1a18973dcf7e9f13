"""Orders in MongoDB: placing one, and showing one with what its saga has done so far.

Placing an order is one insert: the order and its `order.placed` event (in the document's
outbox, see fnkit.outbox) are written together, so the event is never lost when the broker is
down, and never sent for an order that was not stored. The relay posts it after the write.

The saga's steps run in order-steps, which records them in two collections of the same
database; this service only reads them (the contract is in both READMEs):

- `order_journal`: one document per step result or transient failure, `{order_id, step,
  outcome, status?, detail?, at, result?}`; `status` names the order's state after a step that
  succeeded (INVENTORY_RESERVED, ...); the `validate` result carries the priced order.
- `order_outcomes`: `{_id: order_id, status: COMPLETED | FAILED, reason, failed_step,
  compensations, at}`, written once by the workflow's exit handler.

An order's view is the order, then its journal in time order, then its outcome: three reads by
key, no write, so a GET can never disturb the saga.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final, Protocol

import orjson
from bson import ObjectId
from fnkit import CloudEvent, NotFound, Rejected
from fnkit.mongo import is_duplicate_key
from fnkit.mongo import now as _now
from fnkit.outbox import FIELD, OutboxRelay, entry
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from orders_api.models import Customer, HistoryEntry, Money, Order, OrderIn, OrderLine

ORDERS: Final = "orders"
JOURNAL: Final = "order_journal"
OUTCOMES: Final = "order_outcomes"
PLACED: Final = "io.knative-playbook.order.placed.v1"
PENDING: Final = "PENDING"
_PLACES: Final = 2  # order-steps prices in products-api's minor units: hundredths


class EventFactory(Protocol):
    def __call__(
        self, type: str, data: Any = None, *, subject: str | None = None, **extensions: Any
    ) -> CloudEvent: ...


class IdempotencyKeyReused(Rejected):
    """The Idempotency-Key was used before, for a different order."""

    code = "idempotency_key_reused"


def fingerprint(order: OrderIn) -> str:
    """The request's identity for Idempotency-Key: the same order in any key order matches."""
    canonical = orjson.dumps(order.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def _money(minor: int, currency: str) -> Money:
    return Money(amount=f"{Decimal(minor).scaleb(-_PLACES):.{_PLACES}f}", currency=currency)


class OrderStore:
    """Place orders and read them back, with the saga's progress."""

    def __init__(
        self, db: AsyncDatabase[dict[str, Any]], relay: OutboxRelay, new_event: EventFactory
    ) -> None:
        self.orders = db[ORDERS]
        self.journal = db[JOURNAL]
        self.outcomes = db[OUTCOMES]
        self.relay = relay
        self._new_event = new_event

    async def create_indexes(self) -> None:
        # Sparse: orders placed without an Idempotency-Key do not collide on a missing key.
        await self.orders.create_index(
            "idempotency_key", unique=True, sparse=True, name="idempotency_key_unique"
        )
        await self.relay.create_indexes()
        # order-steps writes the journal; the index serves this service's read of it.
        await self.journal.create_index([("order_id", 1), ("at", 1)], name="order_at")

    async def place(self, order: OrderIn, idempotency_key: str | None) -> tuple[Order, bool]:
        """Store the order with its order.placed event; (order, False) replays an earlier POST
        with the same Idempotency-Key, which must have carried the same order."""
        order_id, placed_at = str(ObjectId()), _now()
        data = order.model_dump(mode="json")
        event = self._new_event(
            PLACED,
            {
                "order_id": order_id,
                **data,
                "placed_at": placed_at.isoformat().replace("+00:00", "Z"),
            },
            subject=order_id,
            id=f"{order_id}-placed",  # derived, so that a re-send is a recognisable duplicate
        )
        doc: dict[str, Any] = {
            "_id": order_id,
            **data,
            "fingerprint": fingerprint(order),
            "placed_at": placed_at,
            FIELD: [entry(event, placed_at)],
        }
        if idempotency_key is not None:
            doc["idempotency_key"] = idempotency_key
        try:
            await self.orders.insert_one(doc)
        except OperationFailure as exc:
            if idempotency_key is None or not is_duplicate_key(exc):
                raise
            return await self._replay(idempotency_key, doc["fingerprint"]), False
        self.relay.send_soon(order_id, doc[FIELD])
        return self._view(doc, [], None), True

    async def _replay(self, idempotency_key: str, request_fingerprint: str) -> Order:
        earlier = await self.orders.find_one({"idempotency_key": idempotency_key}, {FIELD: 0})
        if earlier is None:  # deleted in between; nothing deletes orders, but say so plainly
            raise NotFound("the order of this Idempotency-Key is gone; use a new key")
        if earlier["fingerprint"] != request_fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used for a different order; use a new key",
                details={"order_id": earlier["_id"]},
            )
        return await self.get(earlier["_id"])

    async def get(self, order_id: str) -> Order:
        doc = await self.orders.find_one({"_id": order_id}, {FIELD: 0})
        if doc is None:
            raise NotFound(f"order {order_id} does not exist")
        journal = await self.journal.find({"order_id": order_id}).sort("at", 1).to_list()
        outcome = await self.outcomes.find_one({"_id": order_id}, {FIELD: 0})
        return self._view(doc, journal, outcome)

    @staticmethod
    def _view(
        doc: Mapping[str, Any],
        journal: list[dict[str, Any]],
        outcome: Mapping[str, Any] | None,
    ) -> Order:
        history = [HistoryEntry(at=doc["placed_at"], step="place-order", outcome="placed")]
        status, total = PENDING, None
        for record in journal:
            history.append(
                HistoryEntry(
                    at=record["at"],
                    step=record["step"],
                    outcome=record["outcome"],
                    detail=record.get("detail"),
                )
            )
            if record.get("status"):
                status = record["status"]
            result = record.get("result") or {}
            if record["step"] == "validate" and "total_minor" in result:
                total = _money(result["total_minor"], result["currency"])
        view: dict[str, Any] = {}
        if outcome is not None:
            status = outcome["status"]
            history.append(
                HistoryEntry(
                    at=outcome["at"], step="saga", outcome="completed", detail=outcome["status"]
                )
            )
            view = {
                "reason": outcome.get("reason"),
                "failed_step": outcome.get("failed_step"),
                "compensations": outcome.get("compensations", []),
                "finished_at": outcome["at"],
            }
        return Order(
            id=doc["_id"],
            status=status,
            customer=Customer(**doc["customer"]),
            lines=[OrderLine(**line) for line in doc["lines"]],
            placed_at=doc["placed_at"],
            total=total,
            history=history,
            **view,
        )
