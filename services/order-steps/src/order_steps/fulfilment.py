"""After the sale: the customer's confirmation and the invoice, one of each per order.

Both are simulated and stored: the confirmation is the e-mail that would be sent (in
`notifications`), the invoice a document in `invoices`. Each has a unique `_id` derived from
the order, so repeating a step never sends or invoices twice.
"""

from __future__ import annotations

from typing import Any, Final

from fnkit.mongo import insert_once
from fnkit.mongo import now as _now
from pymongo.asynchronous.database import AsyncDatabase

from order_steps.models import ValidatedOrder

INVOICES: Final = "invoices"
NOTIFICATIONS: Final = "notifications"


class Fulfilment:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.invoices = db[INVOICES]
        self.notifications = db[NOTIFICATIONS]

    async def notify_customer(self, order: ValidatedOrder) -> dict[str, Any]:
        amount = f"{order.total_minor / 100:.2f} {order.currency}"
        message, _ = await insert_once(
            self.notifications,
            {
                "_id": f"{order.order_id}/order-confirmed",
                "order_id": order.order_id,
                "to": order.customer.email,
                "subject": f"Your order {order.order_id} is confirmed",
                "body": f"Dear {order.customer.name}, we have your order of "
                f"{sum(line.quantity for line in order.lines)} item(s) for {amount}.",
                "at": _now(),
            },
        )
        return {"notification_id": message["_id"], "to": message["to"]}

    async def create_invoice(self, order: ValidatedOrder) -> dict[str, Any]:
        invoice, _ = await insert_once(
            self.invoices,
            {
                "_id": order.order_id,
                "invoice_id": f"inv_{order.order_id}",
                "customer": order.customer.model_dump(),
                "lines": [
                    {
                        "sku": line.sku,
                        "name": line.name,
                        "quantity": line.quantity,
                        "unit_price_minor": line.unit_price_minor,
                    }
                    for line in order.lines
                ],
                "total_minor": order.total_minor,
                "currency": order.currency,
                "issued_at": _now(),
            },
        )
        return {
            "invoice_id": invoice["invoice_id"],
            "total_minor": invoice["total_minor"],
            "currency": invoice["currency"],
        }
