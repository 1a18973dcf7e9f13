"""An order's shapes at the API boundary: what clients send and what they get back.

Input models forbid unknown keys and hold only constrained strings and numbers, so nothing a
client sends can become a MongoDB operator or a dotted path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

MAX_LINES: Final = 50
MAX_QUANTITY: Final = 1000
# Letters, digits, spaces and punctuation; no control characters (nothing that hides in logs).
_TEXT: Final = r"^[^\x00-\x1f\x7f-\x9f]+$"

Sku = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
    Field(description="A product's sku (products-api).", examples=["SHOE-RED-42"]),
]
PaymentToken = Annotated[
    str,
    StringConstraints(pattern=r"^tok_[a-z0-9_]{1,60}$"),
    Field(
        description="A payment provider's token for the customer's payment method. The "
        "simulated provider reads it: `tok_approve`, `tok_decline`, `tok_fail_<N>` (fails "
        "transiently N times, then approves), `tok_commit_fail` (approves, then the inventory "
        "commit fails); see order-steps.",
        examples=["tok_approve"],
    ),
]

Status = Annotated[
    str,
    Field(
        description="PENDING until the saga starts; then the last step done (VALIDATED, "
        "INVENTORY_RESERVED, PAYMENT_CHARGED, INVENTORY_COMMITTED, CUSTOMER_NOTIFIED, INVOICED, "
        "INVENTORY_RELEASED, PAYMENT_REFUNDED); finally COMPLETED or FAILED.",
        examples=["COMPLETED"],
    ),
]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Customer(_Input):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_TEXT)]
    email: Annotated[
        str, StringConstraints(max_length=254, pattern=r"^[^@\s\x00-\x1f]+@[^@\s\x00-\x1f]+$")
    ]


class OrderLine(_Input):
    sku: Sku
    quantity: Annotated[int, Field(ge=1, le=MAX_QUANTITY, strict=True)]


class OrderIn(_Input):
    """A new order: what to buy, for whom, paid how."""

    customer: Customer
    lines: Annotated[list[OrderLine], Field(min_length=1, max_length=MAX_LINES)]
    payment_token: PaymentToken

    @field_validator("lines")
    @classmethod
    def _one_line_per_sku(cls, lines: list[OrderLine]) -> list[OrderLine]:
        skus = [line.sku for line in lines]
        if len(set(skus)) != len(skus):
            raise ValueError("each sku may appear on one line only; add up the quantities")
        return lines


class Money(BaseModel):
    amount: str = Field(description="Exact decimal, as a string.", examples=["179.80"])
    currency: str = Field(examples=["EUR"])


class HistoryEntry(BaseModel):
    """One thing that happened to the order, as the saga's steps recorded it."""

    at: datetime
    step: str = Field(examples=["charge-payment"])
    outcome: Literal["succeeded", "rejected", "failed", "placed", "completed"] = Field(
        description="`failed` is a transient failure the workflow retries; `rejected` is final."
    )
    detail: str | None = None


class Order(BaseModel):
    id: str
    status: Status
    customer: Customer
    lines: list[OrderLine]
    placed_at: datetime
    total: Money | None = Field(default=None, description="Known once the order is validated.")
    reason: str | None = Field(default=None, description="Why it FAILED.")
    failed_step: str | None = None
    compensations: list[str] = Field(
        default_factory=list,
        description="Compensating steps that ran (release-inventory, refund-payment).",
    )
    finished_at: datetime | None = None
    history: list[HistoryEntry]


ORDER_EXAMPLE: Final[dict[str, Any]] = {
    "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
    "lines": [{"sku": "SHOE-RED-42", "quantity": 2}],
    "payment_token": "tok_approve",
}
