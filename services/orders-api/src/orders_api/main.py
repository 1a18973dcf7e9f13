"""orders-api: the app, as `fnkit-serve orders_api.main:app` serves it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fnkit import Context, Function
from fnkit.outbox import OutboxRelay

from orders_api.core.config import Settings
from orders_api.store import ORDERS, OrderStore

if TYPE_CHECKING:
    from fastapi import FastAPI

DESCRIPTION = """\
Orders: the serverless playbook's orchestration pattern (Step Functions) on Knative and Argo
Workflows.

- `POST /orders` stores the order and answers 202 with its `Location`; the order saga then
  runs in an Argo Workflow (validate, reserve inventory, charge payment, commit inventory,
  then notify the customer and invoice, with compensations when a step fails).
- `GET /orders/{id}` shows the status (PENDING, each step, COMPLETED or FAILED with the reason
  and the compensations that ran) and a timestamped history of the steps.
- `Idempotency-Key` makes a retried POST place nothing new.
- Emits `io.knative-playbook.order.placed.v1`, at least once, through an outbox in the order.
- Errors always have the body `{"error": {"code", "message", "details"}}`.
"""


def create_app(settings: Settings | None = None) -> Function[Settings]:
    """The orders-api function, reading its settings from the environment by default."""
    # Read now rather than on first use: the body limit is part of the app.
    settings = settings or Settings()
    fn = Function(
        "orders-api",
        settings_class=Settings,
        settings=settings,
        mongo=True,
        description=DESCRIPTION,
    )

    @fn.rest
    def routes(api: FastAPI) -> None:
        from fnkit.rest import install

        from orders_api.api.routes import orders

        install(api, max_body_bytes=settings.max_body_bytes)
        api.include_router(orders.router)

    async def open_store(ctx: Context[Settings]) -> None:
        relay = OutboxRelay(
            ctx.db[ORDERS],
            ctx.emit,
            grace_seconds=ctx.settings.outbox_grace_seconds,
            interval_seconds=ctx.settings.outbox_sweep_interval_seconds,
        )
        store = OrderStore(ctx.db, relay, ctx.event)
        await store.create_indexes()
        relay.start()
        fn.state.orders = store

    async def close_store(ctx: Context[Settings]) -> None:
        store: OrderStore | None = getattr(fn.state, "orders", None)
        if store is not None:
            del fn.state.orders
            await store.relay.close()

    fn.on_startup(open_store)
    fn.on_shutdown(close_store)
    return fn


app = create_app()
