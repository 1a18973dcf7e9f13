"""What the REST routes do, free of HTTP: submit a job, show it, page its results."""

from __future__ import annotations

import time
from typing import Any, Final

import orjson
from fnkit import Context, NotFound, Rejected, Unavailable
from fnkit.tracing import outgoing_traceparent
from minio.error import S3Error

from bulk_jobs.config import Settings
from bulk_jobs.fanout import FanOut
from bulk_jobs.models import JobView, ObjectRef, ResultPage, ResultView, SourceView
from bulk_jobs.store import JobStore, Progress, Status, new_job_id

_MISSING = frozenset({"NoSuchKey", "NoSuchBucket"})
_CACHED_VIEWS: Final = 1000


class TooManyItems(Rejected):
    code = "too_many_items"


class BulkJobs:
    def __init__(self, ctx: Context[Settings], store: JobStore, fanout: FanOut) -> None:
        self.ctx = ctx
        self.store = store
        self.fanout = fanout
        self._cache_seconds = ctx.settings.progress_cache_seconds
        self._views: dict[str, tuple[float, JobView]] = {}

    async def submit_items(self, items: list[Any]) -> JobView:
        limit = self.ctx.settings.max_inline_items
        if len(items) > limit:
            raise TooManyItems(
                f"{len(items)} items inline; at most {limit}: put larger jobs in a JSON Lines "
                "object and send its `source`"
            )
        job_id = new_job_id()
        await self.store.create(
            job_id,
            {"kind": "inline"},
            total=len(items),
            items=orjson.dumps(items),
            traceparent=outgoing_traceparent(),
        )
        self.fanout.start(job_id)
        return await self.view(job_id)

    async def submit_object(self, ref: ObjectRef) -> JobView:
        try:
            stat = await self.ctx.run_blocking(self.ctx.minio.stat_object, ref.bucket, ref.key)
        except S3Error as exc:
            if exc.code in _MISSING:
                raise Rejected(f"no object {ref.key!r} in bucket {ref.bucket!r}") from None
            if exc.code == "AccessDenied":
                raise Rejected(f"bulk-jobs may not read bucket {ref.bucket!r}") from None
            raise Unavailable(f"object storage answered {exc.code}; retry later") from None
        job_id = new_job_id()
        await self.store.create(
            job_id,
            {
                "kind": "object",
                "bucket": ref.bucket,
                "key": ref.key,
                "etag": stat.etag,
                "size": stat.size,
            },
            total=None,
            traceparent=outgoing_traceparent(),
        )
        self.fanout.start(job_id)
        return await self.view(job_id)

    async def view(self, job_id: str) -> JobView:
        """The job and its counts, read at most once per PROGRESS_CACHE_SECONDS per process.

        Counting reads every tally of the job: clients polling a running job share one read.
        """
        cached = self._views.get(job_id)
        if cached is not None and time.monotonic() - cached[0] < self._cache_seconds:
            return cached[1]
        progress = await self.store.progress(job_id)
        if progress is None:
            raise NotFound(f"no job {job_id!r}")
        view = job_view(progress)
        if view.status is Status.RUNNING:
            self._views[job_id] = (time.monotonic(), view)
            while len(self._views) > _CACHED_VIEWS:
                del self._views[next(iter(self._views))]
        else:
            self._views.pop(job_id, None)
        return view

    async def results(
        self, job_id: str, *, after: int | None, limit: int, outcome: str | None
    ) -> ResultPage:
        if await self.store.get(job_id) is None:
            raise NotFound(f"no job {job_id!r}")
        docs, next_after = await self.store.results_page(
            job_id, after=after, limit=min(limit, self.ctx.settings.max_page_size), outcome=outcome
        )
        return ResultPage(
            items=[
                ResultView(
                    index=doc["index"],
                    outcome=doc["outcome"],
                    reason=doc.get("reason"),
                    detail=doc.get("detail"),
                )
                for doc in docs
            ],
            next_after=next_after,
        )


def job_view(progress: Progress) -> JobView:
    job, counts = progress.job, progress.counts
    total = job.get("total")
    return JobView(
        id=job["_id"],
        status=progress.status,
        source=SourceView(**job["source"]),
        total=total,
        emitted=job["emitted"],
        succeeded=counts.succeeded,
        failed=counts.failed,
        pending=None if total is None else max(total - counts.recorded, 0),
        created_at=job["created_at"],
        updated_at=job["updated_at"],
        completed_at=progress.completed_at,
        error=job.get("error"),
    )
