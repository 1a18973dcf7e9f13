"""Bulk jobs in MongoDB: the job, each item's result once, the counts, the completion once.

Correct on MongoDB and on FerretDB, which applies an update by reading the document and
writing it back (two concurrent `$inc` lose one) and which serves quickly only inserts and
reads by `_id`. So every fact that decides something is an insert with a unique `_id`:

- a result is `{_id: "<job>:<index>"}`: whichever delivery of an item's result inserts it
  first is the one that counts, and a duplicate fails on the `_id`;
- the results one flush inserted are counted in a *tally* written right after them,
  `{_id: "<job>:<batch>", succeeded, failed}`; a job's counts are the sum of its tallies, so
  counting never scans results nor updates a counter. Every `compact_every` tallies, their
  writer replaces them by a summary that names them, so a count reads few documents even
  for a job of a million items;
- the job completes by inserting `{_id: "<job>"}` into the completions: the one insert that
  succeeds decides who emits `job.completed`, which travels in that document's outbox, so a
  crash after the insert still sends it (at least once, always with the same id).

A crash between a flush's results and its tally leaves those results uncounted: their
redeliveries are duplicates. `repair` finds such batches (results whose tally is missing,
older than any flush could still be running) and writes their tallies; the aggregator runs it
for a job that stopped moving short of its total.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Protocol

from bson import Binary
from fnkit import CloudEvent
from fnkit.mongo import insert_many_once, insert_once, now
from fnkit.outbox import FIELD, OutboxRelay, entry
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

log = logging.getLogger("bulk_jobs.store")

JOBS: Final = "bulk_jobs"
INPUTS: Final = "bulk_job_inputs"
RESULTS: Final = "bulk_job_results"
TALLIES: Final = "bulk_job_tallies"
COMPLETIONS: Final = "bulk_job_completions"

JOB_COMPLETED: Final = "io.knative-playbook.job.completed.v1"

_INDEX_DIGITS: Final = 12  # result ids sort by index: "<job>:000000000042"
_TALLY_ATTEMPTS: Final = 3


class Status(StrEnum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class Emission(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class EventFactory(Protocol):
    def __call__(
        self, type: str, data: Any = None, *, subject: str | None = None, **extensions: Any
    ) -> CloudEvent: ...


@dataclass(frozen=True, slots=True)
class ItemResult:
    """What became of one item, as its processor (or the dead-letter sink) reported it."""

    job_id: str
    index: int
    succeeded: bool
    reason: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class Counts:
    succeeded: int = 0
    failed: int = 0
    last_at: datetime | None = None

    @property
    def recorded(self) -> int:
        return self.succeeded + self.failed


@dataclass(frozen=True, slots=True)
class Check:
    """What a completion check found: whether it completed the job, and if not, how many
    results are missing (None when that is unknown: no total yet, or the job has ended)."""

    completed: bool
    missing: int | None


@dataclass(frozen=True, slots=True)
class Progress:
    """A job document with its current counts."""

    job: Mapping[str, Any]
    counts: Counts
    completed_at: datetime | None

    @property
    def status(self) -> Status:
        return Status.COMPLETED if self.completed_at is not None else Status(self.job["status"])


def result_id(job_id: str, index: int) -> str:
    return f"{job_id}:{index:0{_INDEX_DIGITS}d}"


def new_job_id() -> str:
    return uuid.uuid4().hex


class JobStore:
    """Every read and write of bulk jobs; shared by bulk-jobs and job-aggregator."""

    def __init__(
        self,
        db: AsyncDatabase[dict[str, Any]],
        new_event: EventFactory,
        relay: OutboxRelay,
        *,
        compact_every: int = 50,
    ) -> None:
        self.jobs = db[JOBS]
        self.inputs = db[INPUTS]
        self.results = db[RESULTS]
        self.tallies = db[TALLIES]
        self.completions = db[COMPLETIONS]
        self.relay = relay
        self._new_event = new_event
        self.compact_every = compact_every
        self._own_tallies: dict[str, list[dict[str, Any]]] = defaultdict(list)

    async def create_indexes(self) -> None:
        await self.jobs.create_index("emission", name="emission")
        await self.tallies.create_index("job_id", name="job_id")
        await self.results.create_index([("job_id", ASCENDING), ("batch", ASCENDING)], name="batch")
        await self.relay.create_indexes()

    # -- jobs -----------------------------------------------------------------------------

    async def create(
        self,
        job_id: str,
        source: Mapping[str, Any],
        *,
        total: int | None,
        items: bytes | None = None,
        traceparent: str | None = None,
    ) -> dict[str, Any]:
        """A new RUNNING job; inline items (JSON) are stored first, so they are there for it."""
        at = now()
        if items is not None:
            await self.inputs.insert_one({"_id": job_id, "items": Binary(items)})
        job = {
            "_id": job_id,
            "status": Status.RUNNING.value,
            "source": dict(source),
            "total": total,
            "emitted": 0,
            "position": 0,
            "emission": Emission.RUNNING.value,
            "created_at": at,
            "updated_at": at,
            "traceparent": traceparent,
        }
        await self.jobs.insert_one(job)
        return job

    async def get(self, job_id: str) -> dict[str, Any] | None:
        return await self.jobs.find_one({"_id": job_id})

    async def inline_items(self, job_id: str) -> bytes:
        doc = await self.inputs.find_one({"_id": job_id})
        if doc is None:
            raise LookupError(f"job {job_id} has no stored items")
        return bytes(doc["items"])

    async def checkpoint(
        self, job_id: str, emitted: int, position: int, *, done: bool = False
    ) -> None:
        """Everything before `emitted` (`position` in the source) is out; only ever moves on."""
        update: dict[str, Any] = {
            "$max": {"emitted": emitted, "position": position},
            "$set": {"updated_at": now()},
        }
        if done:
            update["$set"]["emission"] = Emission.DONE.value
        await self.jobs.update_one({"_id": job_id}, update)

    async def set_total(self, job_id: str, total: int) -> None:
        await self.jobs.update_one({"_id": job_id}, {"$set": {"total": total, "updated_at": now()}})

    async def fail(self, job_id: str, error: str) -> None:
        """The job cannot go on (its source is gone or changed): FAILED, with why."""
        await self.jobs.update_one(
            {"_id": job_id, "status": Status.RUNNING.value},
            {
                "$set": {
                    "status": Status.FAILED.value,
                    "emission": Emission.FAILED.value,
                    "error": error,
                    "updated_at": now(),
                }
            },
        )

    async def unfinished_emissions(self) -> list[str]:
        docs = await self.jobs.find({"emission": Emission.RUNNING.value}, {"_id": 1}).to_list()
        return [doc["_id"] for doc in docs]

    async def running(self) -> list[dict[str, Any]]:
        return await self.jobs.find({"status": Status.RUNNING.value}).to_list()

    async def progress(self, job_id: str) -> Progress | None:
        job = await self.get(job_id)
        if job is None:
            return None
        marker = await self.completions.find_one({"_id": job_id}, {FIELD: 0})
        if marker is not None:
            counts = Counts(marker["succeeded"], marker["failed"])
            return Progress(job, counts, marker["completed_at"])
        return Progress(job, await self.counts(job_id), None)

    # -- results --------------------------------------------------------------------------

    async def record(self, results: Sequence[ItemResult]) -> list[bool | Exception]:
        """Store each result unless its item has one; per result: True if it is new.

        The new ones are counted by this call's tallies, written before it returns: a caller
        that then answers 2xx has its result both stored and counted.
        """
        batch, at = uuid.uuid4().hex, now()
        docs = [result_document(result, batch, at) for result in results]
        outcomes: list[bool | Exception] = list(await insert_many_once(self.results, docs))
        tallies: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for result, outcome in zip(results, outcomes, strict=True):
            if outcome is True:
                tallies[result.job_id][0 if result.succeeded else 1] += 1
        if tallies:
            written: list[dict[str, Any]] = [
                {
                    "_id": f"{job_id}:{batch}",
                    "job_id": job_id,
                    "succeeded": succeeded,
                    "failed": failed,
                    "at": at,
                }
                for job_id, (succeeded, failed) in tallies.items()
            ]
            await self._write_tallies(written)
            for tally in written:
                own = self._own_tallies[tally["job_id"]]
                own.append(tally)
                if len(own) >= self.compact_every:
                    del self._own_tallies[tally["job_id"]]
                    await self._compact(own)
        return outcomes

    async def _compact(self, tallies: list[dict[str, Any]]) -> None:
        """Replace tallies this process wrote by one summary that names them (`covers`).

        A reader skips whatever a summary covers, so the counts stay exact in between (and
        after a crash in between): the summary is written first, the tallies then deleted.
        Only their writer compacts tallies, so no two summaries ever cover the same one.
        """
        job_id, covers = tallies[0]["job_id"], [tally["_id"] for tally in tallies]
        await self._write_tallies(
            [
                {
                    "_id": f"{job_id}:summary:{uuid.uuid4().hex}",
                    "job_id": job_id,
                    "succeeded": sum(tally["succeeded"] for tally in tallies),
                    "failed": sum(tally["failed"] for tally in tallies),
                    "at": max(tally["at"] for tally in tallies),
                    "covers": covers,
                }
            ]
        )
        await self.tallies.delete_many({"_id": {"$in": covers}})

    async def _write_tallies(self, tallies: list[dict[str, Any]]) -> None:
        for attempt in range(1, _TALLY_ATTEMPTS + 1):
            try:
                outcomes = await insert_many_once(self.tallies, tallies)
            except OperationFailure:
                if attempt == _TALLY_ATTEMPTS:
                    raise
                continue
            failed = [
                tally
                for tally, outcome in zip(tallies, outcomes, strict=True)
                if isinstance(outcome, Exception)
            ]
            if not failed:
                return
            if attempt == _TALLY_ATTEMPTS:
                raise OperationFailure(f"{len(failed)} tallies not written; repair will")
            tallies = failed

    async def counts(self, job_id: str) -> Counts:
        tallies = await self.tallies.find({"job_id": job_id}).to_list()
        covered = {tally_id for tally in tallies for tally_id in tally.get("covers", ())}
        counted = [tally for tally in tallies if tally["_id"] not in covered]
        return Counts(
            sum(tally["succeeded"] for tally in counted),
            sum(tally["failed"] for tally in counted),
            max((tally["at"] for tally in counted), default=None),
        )

    async def results_page(
        self, job_id: str, *, after: int | None, limit: int, outcome: str | None
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Results in index order after `after`, and the index to pass for the next page."""
        start = 0 if after is None else after + 1
        query: dict[str, Any] = {
            "_id": {"$gte": result_id(job_id, start), "$lte": f"{job_id}:{'9' * _INDEX_DIGITS}"}
        }
        if outcome is not None:
            query["outcome"] = outcome
        docs = await self.results.find(query).sort("_id", ASCENDING).limit(limit + 1).to_list()
        more = len(docs) > limit
        docs = docs[:limit]
        return docs, docs[-1]["index"] if more else None

    # -- completion -----------------------------------------------------------------------

    async def complete_if_done(self, job_id: str) -> bool:
        """Complete the job if every item has its result; True if this call completed it."""
        return (await self.check(job_id)).completed

    async def check(self, job_id: str) -> Check:
        """Complete the job if every item has its result, else say how many are missing."""
        job = await self.get(job_id)
        if job is None or job["status"] != Status.RUNNING.value or job.get("total") is None:
            return Check(completed=False, missing=None)
        counts = await self.counts(job_id)
        if counts.recorded < job["total"]:
            return Check(completed=False, missing=job["total"] - counts.recorded)
        if counts.recorded > job["total"]:
            log.error(
                "more results than items",
                extra={"job_id": job_id, "total": job["total"], "recorded": counts.recorded},
            )
        return Check(completed=await self._complete(job, counts), missing=0)

    async def _complete(self, job: Mapping[str, Any], counts: Counts) -> bool:
        job_id, at = job["_id"], now()
        event = self._new_event(
            JOB_COMPLETED,
            {
                "job_id": job_id,
                "total": job["total"],
                "succeeded": counts.succeeded,
                "failed": counts.failed,
                "source": job["source"],
                "created_at": job["created_at"],
                "completed_at": at,
            },
            subject=job_id,
            id=f"{job_id}:completed",
            traceparent=job.get("traceparent"),
        )
        marker, created = await insert_once(
            self.completions,
            {
                "_id": job_id,
                "total": job["total"],
                "succeeded": counts.succeeded,
                "failed": counts.failed,
                "completed_at": at,
                FIELD: [entry(event, at)],
            },
        )
        # The marker decided; the job document follows it (again, after a crash in between).
        await self.jobs.update_one(
            {"_id": job_id},
            {
                "$set": {
                    "status": Status.COMPLETED.value,
                    "succeeded": marker["succeeded"],
                    "failed": marker["failed"],
                    "completed_at": marker["completed_at"],
                    "updated_at": at,
                }
            },
        )
        if created:
            self.relay.send_soon(job_id, marker[FIELD])
            log.info(
                "job completed",
                extra={
                    "job_id": job_id,
                    "total": job["total"],
                    "succeeded": counts.succeeded,
                    "failed": counts.failed,
                },
            )
        await self.tallies.delete_many({"job_id": job_id})
        return created

    async def repair(self, job_id: str, older_than: timedelta) -> int:
        """Tally the batches of results a crash left uncounted; returns how many it found."""
        cutoff = now() - older_than
        cursor = await self.results.aggregate(
            [
                {"$match": {"job_id": job_id, "at": {"$lt": cutoff}}},
                {"$group": {"_id": {"batch": "$batch", "outcome": "$outcome"}, "n": {"$sum": 1}}},
            ]
        )
        found: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        async for group in cursor:
            counts = found[group["_id"]["batch"]]
            counts[0 if group["_id"]["outcome"] == "succeeded" else 1] += group["n"]
        if not found:
            return 0
        tallied: set[str] = set()
        async for doc in self.tallies.find({"job_id": job_id}, {"_id": 1, "covers": 1}):
            tallied.add(doc["_id"])
            tallied.update(doc.get("covers", ()))
        missing = [
            {
                "_id": f"{job_id}:{batch}",
                "job_id": job_id,
                "succeeded": succeeded,
                "failed": failed,
                "at": cutoff,
                "repaired": True,
            }
            for batch, (succeeded, failed) in found.items()
            if f"{job_id}:{batch}" not in tallied
        ]
        if missing:
            log.warning(
                "results without a tally: counted now",
                extra={"job_id": job_id, "batches": len(missing)},
            )
            await self._write_tallies(missing)
        return len(missing)


def result_document(result: ItemResult, batch: str, at: datetime) -> dict[str, Any]:
    """The stored result of an item, written by the flush `batch`."""
    doc: dict[str, Any] = {
        "_id": result_id(result.job_id, result.index),
        "job_id": result.job_id,
        "index": result.index,
        "outcome": "succeeded" if result.succeeded else "failed",
        "batch": batch,
        "at": at,
    }
    if result.reason is not None:
        doc["reason"] = result.reason
    if result.detail:
        doc["detail"] = dict(result.detail)
    if result.event_id is not None:
        doc["event_id"] = result.event_id
    return doc
