"""order-steps: the app, as `fnkit-serve order_steps.main:app` serves it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fnkit import Context, Function
from fnkit.locks import COLLECTION as LOCKS
from fnkit.locks import LeaseLock
from fnkit.outbox import OutboxRelay

from order_steps import outcome
from order_steps.config import Settings
from order_steps.fulfilment import Fulfilment
from order_steps.inventory import Inventory
from order_steps.journal import COLLECTION as JOURNAL
from order_steps.journal import Journal
from order_steps.outcome import Outcomes
from order_steps.payments import Payments
from order_steps.saga import Saga

if TYPE_CHECKING:
    from fastapi import FastAPI

DESCRIPTION = """\
The order saga's steps and compensations, called by the order-saga Argo Workflow over HTTP
(cluster-local). Each runs once per (order, step): a repeated call answers as the first did.

- 200: done. 422: a business rejection (the workflow compensates, never retries).
  503: transient trouble (the workflow retries with exponential backoff).
- Payment is simulated and driven by the token: `tok_decline`, `tok_fail_<N>`,
  `tok_commit_fail`; any other `tok_*` is approved.
- `POST /outcomes` (the workflow's exit handler) records COMPLETED or FAILED and emits
  `io.knative-playbook.order.completed.v1` or `...order.failed.v1` through an outbox.
"""


def create_app(settings: Settings | None = None) -> Function[Settings]:
    """The order-steps function, reading its settings from the environment by default."""
    settings = settings or Settings()
    fn = Function(
        "order-steps",
        settings_class=Settings,
        settings=settings,
        mongo=True,
        description=DESCRIPTION,
    )

    @fn.rest
    def routes(app: FastAPI) -> None:
        from fnkit.rest import install

        from order_steps import api

        install(app, max_body_bytes=settings.max_body_bytes)
        app.include_router(api.router)

    async def open_saga(ctx: Context[Settings]) -> None:
        db, config = ctx.db, ctx.settings
        locks = LeaseLock(
            db[LOCKS],
            lease_seconds=config.lock_lease_seconds,
            wait_seconds=config.lock_wait_seconds,
        )
        journal = Journal(db[JOURNAL], locks)
        # Stop writing stock with less than a fifth of the lease left: the write must land
        # while the lock is still ours.
        inventory = Inventory(db, locks, margin_seconds=config.lock_lease_seconds / 5)
        payments, fulfilment = Payments(db), Fulfilment(db)
        relay = OutboxRelay(
            db[outcome.COLLECTION],
            ctx.emit,
            grace_seconds=config.outbox_grace_seconds,
            interval_seconds=config.outbox_sweep_interval_seconds,
        )
        for part in (journal, inventory, payments, relay):
            await part.create_indexes()
        relay.start()
        fn.state.saga = Saga(db, journal, inventory, payments, fulfilment)
        fn.state.outcomes = Outcomes(db[outcome.COLLECTION], journal, relay, ctx.event)

    async def close_saga(ctx: Context[Settings]) -> None:
        outcomes: Outcomes | None = getattr(fn.state, "outcomes", None)
        if outcomes is not None:
            del fn.state.outcomes, fn.state.saga
            await outcomes.relay.close()

    fn.on_startup(open_saga)
    fn.on_shutdown(close_saga)
    return fn


app = create_app()
