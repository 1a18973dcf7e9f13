"""bulk-jobs: the app, as `fnkit-serve bulk_jobs.main:app` serves it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fnkit import Context, Function
from fnkit.batch import Batcher
from fnkit.locks import COLLECTION as LOCKS
from fnkit.locks import LeaseLock
from fnkit.outbox import OutboxRelay

from bulk_jobs.config import Settings
from bulk_jobs.fanout import FanOut
from bulk_jobs.service import BulkJobs
from bulk_jobs.store import COMPLETIONS, ItemResult, JobStore

if TYPE_CHECKING:
    from fastapi import FastAPI

DESCRIPTION = """\
Bulk jobs: the serverless playbook's fan-out/fan-in pattern (SNS + SQS + an aggregator), with
a Knative broker doing the fanning out and in.

- `POST /jobs` takes the records inline (up to MAX_INLINE_ITEMS) or names a JSON Lines object
  in MinIO, which is streamed, never held in memory whole.
- Each record becomes one `io.knative-playbook.item.requested.v1` (id `<job>:<index>`), sent
  with bounded concurrency and a checkpoint, so an interrupted fan-out resumes where it stopped.
- `item-processor` handles each item; `job-aggregator` counts each result once and completes
  the job, which emits `io.knative-playbook.job.completed.v1` once.
- `GET /jobs/{id}` shows the progress, `GET /jobs/{id}/results` each item's outcome, with the
  reason of every failed one.
"""


def create_app(settings: Settings | None = None) -> Function[Settings]:
    settings = settings or Settings()
    fn = Function(
        "bulk-jobs",
        settings_class=Settings,
        settings=settings,
        mongo=True,
        minio=True,
        description=DESCRIPTION,
    )

    @fn.rest
    def routes(api: FastAPI) -> None:
        from fnkit.rest import install

        from bulk_jobs.api import router

        install(api, max_body_bytes=settings.max_body_bytes)
        api.include_router(router)

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
        results: Batcher[ItemResult, bool] = Batcher("bulk-jobs-results", store.record)
        lock = LeaseLock(
            ctx.db[LOCKS], lease_seconds=ctx.settings.emission_lease_seconds, wait_seconds=1.0
        )
        fanout = FanOut(ctx, store, lock, results)
        fn.state.jobs = BulkJobs(ctx, store, fanout)
        relay.start()
        fanout.start_resuming()

    @fn.on_shutdown
    async def stop(ctx: Context[Settings]) -> None:
        jobs: BulkJobs | None = getattr(fn.state, "jobs", None)
        if jobs is not None:
            del fn.state.jobs
            await jobs.fanout.close()
            await jobs.store.relay.close()

    return fn


app = create_app()
