"""HTTP for orders: status codes and headers; the logic is in store.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Header, Path, Request, Response
from fnkit.rest import error_responses

from orders_api.api.deps import StoreDep
from orders_api.models import ORDER_EXAMPLE, Order, OrderIn

router = APIRouter(prefix="/orders", tags=["orders"])

OrderId = Annotated[
    str,
    Path(
        pattern=r"^[0-9a-f]{24}$",
        description="The id POST /orders answered with.",
        examples=["6650f1c2a4b5c6d7e8f90123"],
    ),
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=r"^[\x21-\x7e]{1,255}$",
        description="Optional: a POST repeated with the same key (and the same order) places "
        "nothing new and answers as the first did; with a different order, 422.",
        examples=["3f0c2a51-checkout-1"],
    ),
]


@router.post(
    "",
    status_code=202,
    summary="Place an order; its saga runs in the background.",
    responses={
        202: {
            "description": "Accepted: the order is stored and order.placed is on its way.",
            "headers": {
                "Location": {"description": "Where to watch it.", "schema": {"type": "string"}}
            },
        },
        **error_responses(400, 413, 422, 503),
    },
)
async def place_order(
    order: Annotated[
        OrderIn,
        Body(openapi_examples={"two shoes": {"summary": "An order", "value": ORDER_EXAMPLE}}),
    ],
    store: StoreDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Order:
    """Emits `io.knative-playbook.order.placed.v1` (at least once, through an outbox), which
    starts the order saga: validate, reserve inventory, charge payment, commit inventory, then
    notify the customer and invoice; compensations when a step fails."""
    placed, created = await store.place(order, idempotency_key)
    response.headers["Location"] = f"{request.scope.get('root_path', '')}/orders/{placed.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return placed


@router.get(
    "/{order_id}",
    summary="An order: its status, its step history, and why it failed if it did.",
    responses=error_responses(404, 422, 503),
)
async def get_order(order_id: OrderId, store: StoreDep) -> Order:
    return await store.get(order_id)
