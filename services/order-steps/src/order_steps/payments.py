"""Payments, through a simulated provider whose behaviour the payment token chooses.

| token | charge-payment | later |
|---|---|---|
| `tok_decline` | declined: 422, not retried | the reservation is released |
| `tok_fail_<N>` | unavailable (503) on its first N attempts, then approved | |
| `tok_commit_fail` | approved | commit-inventory fails, so the payment is refunded |
| any other `tok_*` | approved | |

Charges and refunds are idempotent the way a real provider's are, by an idempotency key (the
order): the charge is the document `<order>/charge` and the refund `<order>/refund`, unique
`_id`s, so a retried or repeated call never charges or refunds twice. Attempts are counted by
inserting one document each (counting documents is exact on every server; an `$inc` is not on
FerretDB).
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Final

from fnkit import Rejected, Unavailable
from fnkit.mongo import insert_once
from fnkit.mongo import now as _now
from pymongo.asynchronous.database import AsyncDatabase

from order_steps.models import ValidatedOrder

PAYMENTS: Final = "payments"
ATTEMPTS: Final = "payment_attempts"
DECLINE: Final = "tok_decline"
COMMIT_FAIL: Final = "tok_commit_fail"
_FLAKY: Final = re.compile(r"^tok_fail_(\d{1,3})$")


class PaymentDeclined(Rejected):
    code = "payment_declined"


class ProviderUnavailable(Unavailable):
    code = "payment_provider_unavailable"


class Payments:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.payments = db[PAYMENTS]
        self.attempts = db[ATTEMPTS]

    async def create_indexes(self) -> None:
        await self.attempts.create_index("order_id", name="order")

    async def charge(self, order: ValidatedOrder) -> dict[str, Any]:
        """Charge the order's total once; PaymentDeclined (422) or ProviderUnavailable (503)."""
        key = f"{order.order_id}/charge"
        earlier = await self.payments.find_one({"_id": key})
        if earlier is not None:
            return _charge_view(earlier)
        await self.attempts.insert_one({"order_id": order.order_id, "at": _now()})
        attempts = await self.attempts.count_documents({"order_id": order.order_id})
        flaky = _FLAKY.match(order.payment_token)
        if flaky and attempts <= int(flaky[1]):
            raise ProviderUnavailable(
                f"the payment provider is unavailable (attempt {attempts}; {order.payment_token} "
                f"fails {flaky[1]} times)"
            )
        if order.payment_token == DECLINE:
            raise PaymentDeclined("the card was declined", details={"token": DECLINE})
        charge = {
            "_id": key,
            "kind": "charge",
            "order_id": order.order_id,
            "charge_id": f"ch_{uuid.uuid4().hex[:20]}",
            "amount_minor": order.total_minor,
            "currency": order.currency,
            "at": _now(),
        }
        stored, _ = await insert_once(self.payments, charge)
        return _charge_view(stored)

    async def refund(self, order: ValidatedOrder) -> dict[str, Any]:
        """Refund the order's charge in full, once; nothing to do if nothing was charged."""
        charge = await self.payments.find_one({"_id": f"{order.order_id}/charge"})
        if charge is None:
            return {"refunded": False, "reason": "nothing was charged"}
        refund = {
            "_id": f"{order.order_id}/refund",
            "kind": "refund",
            "order_id": order.order_id,
            "refund_id": f"re_{uuid.uuid4().hex[:20]}",
            "charge_id": charge["charge_id"],
            "amount_minor": charge["amount_minor"],
            "currency": charge["currency"],
            "at": _now(),
        }
        stored, _ = await insert_once(self.payments, refund)
        return {
            "refunded": True,
            "refund_id": stored["refund_id"],
            "charge_id": stored["charge_id"],
            "amount_minor": stored["amount_minor"],
            "currency": stored["currency"],
        }


def _charge_view(charge: dict[str, Any]) -> dict[str, Any]:
    return {
        "charge_id": charge["charge_id"],
        "amount_minor": charge["amount_minor"],
        "currency": charge["currency"],
    }
