"""The fan-in: each item's result stored and counted once, each job completed once.

Results are written together (fnkit.batch): the events being handled at the same moment share
one insert of results and one of tallies (see bulk_jobs.store). After a write that stored
new results, each job concerned is checked for completion, at most every
`check_interval_seconds` and always once more after its latest new result, off the request
path. A sweep checks every running job now and then too, recounting one that stopped short of
its total (a crash between a write's results and its tallies).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Final

from bulk_jobs.store import ItemResult, JobStore
from fnkit import BadEvent, Rejected, Unavailable
from fnkit.batch import Batcher
from fnkit.mongo import now
from pymongo.errors import OperationFailure

from job_aggregator.config import Settings

log = logging.getLogger("job_aggregator")

ITEM_PROCESSED: Final = "io.knative-playbook.item.processed.v1"
ITEM_FAILED: Final = "io.knative-playbook.item.failed.v1"

# What a result keeps of its event's data (fixed keys: nothing from outside becomes a key).
_DETAIL_KEYS: Final = ("sku", "product_id", "change", "errors", "dead_letter_id")
_MAX_REASON: Final = 2000
_MAX_ERRORS: Final = 50


def item_result(event_type: str, event_id: str, data: Any) -> ItemResult:
    """The result an item.processed or item.failed reports; BadEvent if it names no item."""
    if not isinstance(data, Mapping):
        raise BadEvent("result data must be a JSON object")
    job_id, index = data.get("job_id"), data.get("index")
    if not isinstance(job_id, str) or not job_id:
        raise BadEvent("result data needs a string `job_id`")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise BadEvent("result data needs the item's `index`: a whole number >= 0")
    detail = {key: data[key] for key in _DETAIL_KEYS if key in data}
    if isinstance(detail.get("errors"), list):
        detail["errors"] = detail["errors"][:_MAX_ERRORS]
    succeeded = event_type == ITEM_PROCESSED
    reason = None
    if not succeeded:
        reason = str(data.get("reason") or "no reason given")[:_MAX_REASON]
    return ItemResult(job_id, index, succeeded, reason, detail, event_id)


class Aggregator:
    def __init__(self, store: JobStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._batcher: Batcher[ItemResult, bool] = Batcher(
            "job-aggregator-results", self._write, max_items=settings.record_batch_max
        )
        self._totals: OrderedDict[str, tuple[int | None, float]] = OrderedDict()
        self._checks: dict[str, asyncio.Task[None]] = {}
        self._dirty: set[str] = set()
        self._sweeper: asyncio.Task[None] | None = None

    async def record(self, result: ItemResult) -> bool:
        """Store the result unless its item has one; True if it was new (and is counted)."""
        total = await self._total(result.job_id)
        if total is not None and result.index >= total:
            raise Rejected(f"job {result.job_id} has {total} items; no item {result.index}")
        new = await self._batcher.submit(result)
        if new:
            self.check_soon(result.job_id)
        return new

    async def _write(self, results: Sequence[ItemResult]) -> list[bool | Exception]:
        try:
            outcomes = await self.store.record(results)
        except OperationFailure as exc:
            raise Unavailable(f"results not stored: {exc}") from exc
        return [
            Unavailable(f"result not stored: {outcome}; retry")
            if isinstance(outcome, Exception)
            else outcome
            for outcome in outcomes
        ]

    async def _total(self, job_id: str) -> int | None:
        """The job's total (None while unknown); Rejected if there is no such job.

        Read once per job, and while the total is unknown (a JSON Lines job still being
        read), at most once a second: not once per result.
        """
        known = self._totals.get(job_id)
        if known is not None and (known[0] is not None or time.monotonic() - known[1] < 1.0):
            self._totals.move_to_end(job_id)
            return known[0]
        job = await self.store.get(job_id)
        if job is None:
            raise Rejected(f"no job {job_id!r}")
        self._totals[job_id] = (job.get("total"), time.monotonic())
        if len(self._totals) > self.settings.known_jobs:
            self._totals.popitem(last=False)
        return job.get("total")

    # -- completion -----------------------------------------------------------------------

    def check_soon(self, job_id: str) -> None:
        """Check the job's completion now, or once more after the check under way."""
        if job_id in self._checks:
            self._dirty.add(job_id)
            return
        self._checks[job_id] = asyncio.create_task(self._check(job_id), name=f"check-{job_id}")

    async def _check(self, job_id: str) -> None:
        try:
            while True:
                self._dirty.discard(job_id)
                missing = None
                try:
                    check = await self.store.check(job_id)
                    if check.completed:
                        return
                    missing = check.missing
                except Exception as exc:
                    # The sweep checks again later; the next new result sooner.
                    log.warning(
                        "completion check failed",
                        extra={"job_id": job_id, "error": f"{type(exc).__name__}: {exc}"},
                    )
                await asyncio.sleep(self._pause(missing))
                if job_id not in self._dirty:
                    return
        finally:
            del self._checks[job_id]

    def _pause(self, missing: int | None) -> float:
        """Checks read every tally of the job: far from the end, fewer of them are enough."""
        shortest = self.settings.check_interval_seconds
        if not missing:
            return shortest
        return min(self.settings.check_interval_max_seconds, shortest * (1 + missing / 100))

    async def sweep(self) -> None:
        """Check every running job; recount one that has not moved for repair_after_seconds."""
        quiet = timedelta(seconds=self.settings.repair_after_seconds)
        for job in await self.store.running():
            job_id = job["_id"]
            if job.get("total") is None or await self.store.complete_if_done(job_id):
                continue
            counts = await self.store.counts(job_id)
            last_moved = max(filter(None, (counts.last_at, job["updated_at"])))
            if now() - last_moved > quiet and await self.store.repair(job_id, quiet):
                await self.store.complete_if_done(job_id)

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("sweep failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            await asyncio.sleep(self.settings.sweep_interval_seconds)

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="aggregator-sweep")

    async def close(self) -> None:
        tasks: list[asyncio.Task[Any]] = [*self._checks.values()]
        if self._sweeper is not None:
            tasks.append(self._sweeper)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
