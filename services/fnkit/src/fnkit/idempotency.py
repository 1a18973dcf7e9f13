"""Side effects once per event, under at-least-once delivery.

A delivery claims the event's key by inserting a document whose `_id` is the key: MongoDB's
unique `_id` index settles any race, with no read-then-write. The claim is a lease:

- the claim succeeds -> run the work, then mark the key done and keep the reply, so a later
  duplicate gets the very same reply without running the work again;
- the work fails -> the claim is dropped, so the broker's retry runs it again;
- the key is done -> the stored reply is returned at once;
- another delivery holds a live lease -> 409, which Knative retries later;
- the lease ran out (its holder crashed) -> the next delivery takes the key over.

While the work runs, its holder renews the lease every third of it, so a lease only runs
out when its holder is gone. The lease can therefore be short, shorter than the broker's
retry budget: an event whose handler died with its process is taken over by one of the
broker's retries instead of running out of them and going to the dead-letter sink. A
handler longer than a third of the lease costs a write per renewal; shorter ones, none.

Records are kept per function: one event delivered to two functions (two Triggers on one
type) has its effects in each, even though every function shares the collection.

Records are not kept for ever: `prune` (run by the cleanup CronJob) drops those finished, or
abandoned, longer ago than a retention far beyond any redelivery (FerretDB has no TTL index).

"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bson import Binary
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from fnkit.errors import Conflict
from fnkit.events import CloudEvent, from_json, to_json

COLLECTION: Final = "fnkit_processed_events"
RUNNING: Final = "running"
DONE: Final = "done"

Work = Callable[[], Awaitable[CloudEvent | None]]

log = logging.getLogger("fnkit.idempotency")


def event_key(event: CloudEvent) -> str:
    """CloudEvents' own identity: `source` and `id` together are unique per event."""
    return f"{event.get_source()}\x1f{event.get_id()}"


def record_id(function: str, key: str) -> str:
    """The `_id` of `function`'s record for `key`."""
    return f"{function}\x1f{key}"


class IdempotencyGuard:
    def __init__(
        self, collection: AsyncCollection[dict[str, Any]], lease_seconds: float, function: str
    ) -> None:
        self.collection = collection
        self.lease = timedelta(seconds=lease_seconds)
        self.function = function

    async def run(self, key: str, work: Work) -> tuple[CloudEvent | None, bool]:
        """Run `work` once for `key`; returns (reply, whether this call ran the work)."""
        owner, record = uuid.uuid4().hex, record_id(self.function, key)
        stored = await self._claim(record, owner, key)
        if stored is not None:
            reply = stored.get("reply")
            return (from_json(bytes(reply)) if reply else None), False
        # Most work ends before the first renewal is due: a timer, not a task per call.
        renewing: list[asyncio.Task[None]] = []
        timer = asyncio.get_running_loop().call_later(
            self.lease.total_seconds() / 3,
            lambda: renewing.append(asyncio.create_task(self._renew(record, owner))),
        )
        try:
            reply = await work()
        except BaseException:
            await self.collection.delete_one({"_id": record, "owner": owner})
            raise
        finally:
            timer.cancel()
            for task in renewing:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.collection.update_one(
            {"_id": record, "owner": owner},
            {
                "$set": {
                    "state": DONE,
                    "done_at": datetime.now(UTC),
                    "reply": Binary(to_json(reply)) if reply is not None else None,
                }
            },
        )
        return reply, True

    async def _renew(self, record: str, owner: str) -> None:
        """Extend `owner`'s lease every third of it while its work runs."""
        interval = self.lease.total_seconds() / 3
        while True:
            try:
                await self.collection.update_one(
                    {"_id": record, "owner": owner, "state": RUNNING},
                    {"$set": {"lease_until": datetime.now(UTC) + self.lease}},
                )
            except Exception as exc:
                log.warning("could not renew the lease of %s: %s", record, exc)
            await asyncio.sleep(interval)

    async def _claim(self, record: str, owner: str, key: str) -> dict[str, Any] | None:
        """Claim `record` (returns None) or return the finished record of an earlier delivery."""
        now = datetime.now(UTC)
        try:
            await self.collection.insert_one(
                {
                    "_id": record,
                    "function": self.function,
                    "state": RUNNING,
                    "owner": owner,
                    "lease_until": now + self.lease,
                    "claimed_at": now,
                }
            )
            return None
        except DuplicateKeyError:
            pass
        existing = await self.collection.find_one({"_id": record})
        if existing is None:  # dropped by a failed delivery in between: claim afresh
            return await self._claim(record, owner, key)
        if existing["state"] == DONE:
            return existing
        lease_until = existing["lease_until"]
        if lease_until.tzinfo is None:
            lease_until = lease_until.replace(tzinfo=UTC)
        if lease_until > now:
            raise Conflict(f"event {key!r} is being processed by another delivery; retry later")
        taken = await self.collection.find_one_and_update(
            {"_id": record, "state": RUNNING, "owner": existing["owner"]},
            {"$set": {"owner": owner, "lease_until": now + self.lease, "claimed_at": now}},
        )
        if taken is None:
            raise Conflict(f"event {key!r} was just claimed by another delivery; retry later")
        return None


def stale_filters(before: datetime) -> list[dict[str, Any]]:
    """Records finished before `before`, and claims whose lease ran out before it."""
    return [
        {"state": DONE, "done_at": {"$lt": before}},
        {"state": RUNNING, "lease_until": {"$lt": before}},
    ]


async def prune(collection: AsyncCollection[dict[str, Any]], before: datetime) -> int:
    """Delete every function's stale records (see `stale_filters`); returns how many.

    A duplicate of an event whose record is gone runs again, so `before` must lie further
    back than the broker would ever redeliver it (or a dead letter be replayed).
    """
    deleted = 0
    for stale in stale_filters(before):
        deleted += (await collection.delete_many(stale)).deleted_count
    return deleted
