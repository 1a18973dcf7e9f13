"""The saga's steps and compensations, each run once per (order, step) through the journal.

| step | does | status after | rejects (422) |
|---|---|---|---|
| validate | prices the order from the catalogue | VALIDATED | unknown sku, mixed currencies |
| reserve-inventory | takes the units off stock | INVENTORY_RESERVED | not enough stock |
| charge-payment | charges the total | PAYMENT_CHARGED | card declined |
| commit-inventory | the sale stands | INVENTORY_COMMITTED | `tok_commit_fail`, no reservation |
| notify-customer | the confirmation e-mail | CUSTOMER_NOTIFIED | |
| create-invoice | the invoice | INVOICED | |
| release-inventory | gives reserved units back | INVENTORY_RELEASED | |
| refund-payment | refunds the charge | PAYMENT_REFUNDED | |

Transient trouble (MongoDB unreachable, a lock held too long, the payment provider down) is a
503, which the workflow retries with backoff.
"""

from __future__ import annotations

from typing import Any, Final

from fnkit import Rejected
from pymongo.asynchronous.database import AsyncDatabase

from order_steps.fulfilment import Fulfilment
from order_steps.inventory import PRODUCTS, Inventory
from order_steps.journal import Journal, Work
from order_steps.models import PlacedOrder, PricedLine, ValidatedOrder
from order_steps.payments import COMMIT_FAIL, Payments


class InvalidOrder(Rejected):
    code = "invalid_order"


class CommitFailed(Rejected):
    code = "commit_failed"


STATUS: Final = {
    "validate": "VALIDATED",
    "reserve-inventory": "INVENTORY_RESERVED",
    "charge-payment": "PAYMENT_CHARGED",
    "commit-inventory": "INVENTORY_COMMITTED",
    "notify-customer": "CUSTOMER_NOTIFIED",
    "create-invoice": "INVOICED",
    "release-inventory": "INVENTORY_RELEASED",
    "refund-payment": "PAYMENT_REFUNDED",
}


class Saga:
    def __init__(
        self,
        db: AsyncDatabase[dict[str, Any]],
        journal: Journal,
        inventory: Inventory,
        payments: Payments,
        fulfilment: Fulfilment,
    ) -> None:
        self.products = db[PRODUCTS]
        self.journal = journal
        self.inventory = inventory
        self.payments = payments
        self.fulfilment = fulfilment

    async def validate(self, order: PlacedOrder) -> dict[str, Any]:
        async def price() -> dict[str, Any]:
            return (await self._priced(order)).model_dump(mode="json")

        return await self._run(order.order_id, "validate", price)

    async def reserve_inventory(self, order: ValidatedOrder) -> dict[str, Any]:
        return await self._run(
            order.order_id, "reserve-inventory", lambda: self.inventory.reserve(order)
        )

    async def charge_payment(self, order: ValidatedOrder) -> dict[str, Any]:
        return await self._run(
            order.order_id, "charge-payment", lambda: self.payments.charge(order)
        )

    async def commit_inventory(self, order: ValidatedOrder) -> dict[str, Any]:
        async def commit() -> dict[str, Any]:
            if order.payment_token == COMMIT_FAIL:
                raise CommitFailed(f"the warehouse refused the commit (simulated by {COMMIT_FAIL})")
            return await self.inventory.commit(order)

        return await self._run(order.order_id, "commit-inventory", commit)

    async def notify_customer(self, order: ValidatedOrder) -> dict[str, Any]:
        return await self._run(
            order.order_id, "notify-customer", lambda: self.fulfilment.notify_customer(order)
        )

    async def create_invoice(self, order: ValidatedOrder) -> dict[str, Any]:
        return await self._run(
            order.order_id, "create-invoice", lambda: self.fulfilment.create_invoice(order)
        )

    async def release_inventory(self, order: ValidatedOrder) -> dict[str, Any]:
        return await self._run(
            order.order_id, "release-inventory", lambda: self.inventory.release(order)
        )

    async def refund_payment(self, order: ValidatedOrder) -> dict[str, Any]:
        return await self._run(
            order.order_id, "refund-payment", lambda: self.payments.refund(order)
        )

    async def _run(self, order_id: str, step: str, work: Work) -> dict[str, Any]:
        record = await self.journal.run(order_id, step, STATUS[step], work)
        return {"order_id": order_id, **record.answer()}

    async def _priced(self, order: PlacedOrder) -> ValidatedOrder:
        skus = [line.sku for line in order.lines]
        found = {
            doc["sku"]: doc
            async for doc in self.products.find(
                {"sku": {"$in": skus}, "deleted_at": {"$exists": False}},
                {"sku": 1, "name": 1, "price_minor": 1, "currency": 1},
            )
        }
        unknown = [sku for sku in skus if sku not in found]
        if unknown:
            raise InvalidOrder(
                f"no such product: {', '.join(unknown)}", details={"unknown_skus": unknown}
            )
        currencies = sorted({found[sku]["currency"] for sku in skus})
        if len(currencies) > 1:
            raise InvalidOrder(
                f"the products are priced in several currencies ({', '.join(currencies)}); "
                "place one order per currency",
                details={"currencies": currencies},
            )
        lines = [
            PricedLine(
                sku=line.sku,
                quantity=line.quantity,
                product_id=str(found[line.sku]["_id"]),
                name=found[line.sku]["name"],
                unit_price_minor=found[line.sku]["price_minor"],
            )
            for line in order.lines
        ]
        return ValidatedOrder(
            **order.model_dump(exclude={"lines"}),
            lines=lines,
            total_minor=sum(line.unit_price_minor * line.quantity for line in lines),
            currency=currencies[0],
        )
