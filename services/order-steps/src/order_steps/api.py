"""HTTP for the workflow: one route per step and compensation, and the exit handler's.

The workflow's HTTP templates call these; the status code is their retry contract: 200 done
(or done before: the same answer again), 422 a business rejection (not retried, the saga
compensates), 503 transient trouble (retried with backoff).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fnkit import Unavailable
from fnkit.rest import error_responses

from order_steps.models import OutcomeIn, PlacedOrder, ValidatedOrder
from order_steps.outcome import Outcomes
from order_steps.saga import Saga

router = APIRouter(tags=["saga"])
_RESPONSES = error_responses(400, 413, 422, 503)


async def _saga(request: Request) -> Saga:
    saga: Saga | None = getattr(request.app.state, "saga", None)
    if saga is None:
        raise Unavailable("order-steps is starting (creating its indexes); retry shortly")
    return saga


async def _outcomes(request: Request) -> Outcomes:
    outcomes: Outcomes | None = getattr(request.app.state, "outcomes", None)
    if outcomes is None:
        raise Unavailable("order-steps is starting (creating its indexes); retry shortly")
    return outcomes


SagaDep = Annotated[Saga, Depends(_saga)]
OutcomesDep = Annotated[Outcomes, Depends(_outcomes)]


@router.post("/steps/validate", summary="Price the order from the catalogue.", responses=_RESPONSES)
async def validate(order: PlacedOrder, saga: SagaDep) -> dict[str, Any]:
    """Answers with the priced order, which the workflow sends to every later step."""
    return await saga.validate(order)


@router.post("/steps/reserve-inventory", summary="Take the units off stock.", responses=_RESPONSES)
async def reserve_inventory(order: ValidatedOrder, saga: SagaDep) -> dict[str, Any]:
    """All lines or none; 422 `out_of_stock` when a line cannot be had."""
    return await saga.reserve_inventory(order)


@router.post("/steps/charge-payment", summary="Charge the total.", responses=_RESPONSES)
async def charge_payment(order: ValidatedOrder, saga: SagaDep) -> dict[str, Any]:
    """422 `payment_declined` (tok_decline); 503 while the provider is down (tok_fail_N)."""
    return await saga.charge_payment(order)


@router.post("/steps/commit-inventory", summary="The sale stands.", responses=_RESPONSES)
async def commit_inventory(order: ValidatedOrder, saga: SagaDep) -> dict[str, Any]:
    """422 `commit_failed` with tok_commit_fail."""
    return await saga.commit_inventory(order)


@router.post(
    "/steps/notify-customer", summary="Send the confirmation (simulated).", responses=_RESPONSES
)
async def notify_customer(order: ValidatedOrder, saga: SagaDep) -> dict[str, Any]:
    return await saga.notify_customer(order)


@router.post("/steps/create-invoice", summary="Issue the invoice.", responses=_RESPONSES)
async def create_invoice(order: ValidatedOrder, saga: SagaDep) -> dict[str, Any]:
    return await saga.create_invoice(order)


@router.post(
    "/steps/release-inventory",
    summary="Compensation: give reserved units back.",
    responses=_RESPONSES,
)
async def release_inventory(order: ValidatedOrder, saga: SagaDep) -> dict[str, Any]:
    return await saga.release_inventory(order)


@router.post(
    "/steps/refund-payment", summary="Compensation: refund the charge.", responses=_RESPONSES
)
async def refund_payment(order: ValidatedOrder, saga: SagaDep) -> dict[str, Any]:
    return await saga.refund_payment(order)


@router.post(
    "/outcomes",
    summary="The exit handler: record the order's outcome and emit order.completed/failed.",
    responses=_RESPONSES,
)
async def record_outcome(outcome: OutcomeIn, outcomes: OutcomesDep) -> dict[str, Any]:
    return await outcomes.record(outcome)
