"""job-aggregator: the app, as `fnkit-serve job_aggregator.main:app` serves it."""

from __future__ import annotations

from typing import Any

from bulk_jobs.store import COMPLETIONS, JobStore
from fnkit import CloudEvent, Context, Function, event_data
from fnkit.outbox import OutboxRelay

from job_aggregator.aggregator import ITEM_FAILED, ITEM_PROCESSED, Aggregator, item_result
from job_aggregator.config import Settings

DESCRIPTION = """\
The fan-in of bulk jobs: every `io.knative-playbook.item.processed.v1` and
`io.knative-playbook.item.failed.v1` (from item-processor, or from dead-letter for an item
whose request was dead-lettered) is stored once per job and item, whatever the number of
deliveries; only new results are counted. When every item of a job has its result, the job
becomes COMPLETED, once, and `io.knative-playbook.job.completed.v1` is emitted with the counts.
"""


def create_app(settings: Settings | None = None) -> Function[Settings]:
    fn = Function(
        "job-aggregator",
        settings_class=Settings,
        settings=settings,
        mongo=True,
        description=DESCRIPTION,
    )
    state: dict[str, Any] = {}

    @fn.on_startup
    async def start(ctx: Context[Settings]) -> None:
        relay = OutboxRelay(
            ctx.db[COMPLETIONS],
            ctx.emit,
            grace_seconds=ctx.settings.completion_sweep_seconds,
            interval_seconds=ctx.settings.completion_sweep_seconds,
        )
        store = JobStore(ctx.db, ctx.event, relay)
        await store.create_indexes()
        aggregator = Aggregator(store, ctx.settings)
        state["aggregator"], state["relay"] = aggregator, relay
        relay.start()
        aggregator.start()

    @fn.on_shutdown
    async def stop(ctx: Context[Settings]) -> None:
        if "aggregator" in state:
            await state.pop("aggregator").close()
            await state.pop("relay").close()

    @fn.on(ITEM_PROCESSED, ITEM_FAILED)
    async def record_result(event: CloudEvent, ctx: Context[Settings]) -> None:
        """Store the item's result once; the job completes when every item has one."""
        aggregator: Aggregator = state["aggregator"]
        await aggregator.record(item_result(event.get_type(), event.get_id(), event_data(event)))

    return fn


app = create_app()
