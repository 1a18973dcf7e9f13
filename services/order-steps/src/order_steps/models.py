"""What the workflow sends each step, and what validate answers.

`validate` gets the order as `order.placed` carried it (the workflow's `order` parameter) and
answers with the priced order, which the workflow then passes to every later step: prices are
read once, and every step works on the same figures. Unknown keys are ignored, so that fields
added to `order.placed` (a compatible change within v1) do not break the saga.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_LINES: Final = 50

ObjectIdHex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{24}$")]
OrderId = ObjectIdHex
Sku = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Quantity = Annotated[int, Field(ge=1, le=1000, strict=True)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Customer(_Model):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    email: Annotated[str, StringConstraints(min_length=3, max_length=254)]


class Line(_Model):
    sku: Sku
    quantity: Quantity


class PlacedOrder(_Model):
    """The order as `order.placed` carries it."""

    order_id: OrderId
    customer: Customer
    lines: Annotated[list[Line], Field(min_length=1, max_length=MAX_LINES)]
    payment_token: Annotated[str, StringConstraints(pattern=r"^tok_[a-z0-9_]{1,60}$")]


class PricedLine(Line):
    product_id: ObjectIdHex
    name: str
    unit_price_minor: int = Field(
        strict=True, description="Hundredths of the currency, as products-api."
    )


class ValidatedOrder(PlacedOrder):
    """The order as validate answers it: priced from the catalogue, in one currency."""

    lines: Annotated[list[PricedLine], Field(min_length=1, max_length=MAX_LINES)]  # type: ignore[assignment]
    total_minor: int = Field(strict=True)
    currency: str


class OutcomeIn(_Model):
    """What the workflow's exit handler sends."""

    order_id: OrderId
    workflow: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    workflow_status: Literal["Succeeded", "Failed", "Error"] = Field(
        description="Argo's {{workflow.status}}: for the record; the journal decides the outcome."
    )
