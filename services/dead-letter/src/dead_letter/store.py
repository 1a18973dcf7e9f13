"""Dead letters in MongoDB: one document per failed delivery, with its replays and fan-in outbox.

A dead letter is identified by the event's (`source`, `id`) and the destination that failed:
Knative may deliver a dead letter more than once, and the same event may fail at two Triggers.
Its `_id` is a digest of those three, so the unique `_id` index settles every race and a
store is one upsert by `_id` (the one lookup FerretDB serves without scanning); a redelivery
only counts itself (`deliveries`) and refreshes the error Knative reported. findAndModify gets
no projection: FerretDB does not implement one there.

The fan-in outbox (an `item.failed` waiting for the broker) is claimed by inserting into
`dead_letter_fanin`, never by a conditional update: FerretDB applies concurrent updates of one
document without isolation (twenty concurrent `$inc`s can add one; twenty conditional
findAndModify "claims" can all win), while both servers enforce a unique `_id`. Attempt `n`
of a dead letter's emission is the document `<letter>:<n>`: whoever inserts it makes that
attempt. Its outcome is another insert: `<letter>:<n>:failed` (with when to retry) or
`<letter>:emitted`. An attempt with neither outcome is in flight until FANIN_LEASE_SECONDS
have passed, after which its holder is taken for crashed and attempt `n + 1` may start. The
`fanin` fields on the dead letter are a summary for the sweep and for display. For the same
reason `deliveries` and `replays` can miss an update when two writes to one dead letter meet
on FerretDB; on MongoDB every update is atomic.

Pages are ordered by `seq` (an ObjectId set on insert, newest first) and continue after the
last `seq` seen: a keyset over an immutable unique key, so pages neither repeat nor skip a dead
letter while others are inserted or deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bson import Binary, ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, OperationFailure

from dead_letter.wire import DeliveryError, WireEvent

COLLECTION: Final = "dead_letters"
FANIN_COLLECTION: Final = "dead_letter_fanin"
PENDING: Final = "pending"
EMITTED: Final = "emitted"

Document = dict[str, Any]

SUMMARY_FIELDS: Final = (
    "seq",
    "type",
    "source",
    "event_id",
    "subject",
    "destination",
    "code",
    "received_at",
    "last_received_at",
    "deliveries",
    "replay_count",
    "last_replay",
    "fanin.state",
)


@dataclass(frozen=True, slots=True)
class Filters:
    """Exact matches on the event and the failed destination, and a range of arrival times."""

    type: str | None = None
    source: str | None = None
    destination: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def query(self) -> Document:
        query: Document = {
            name: value
            for name, value in (
                ("type", self.type),
                ("source", self.source),
                ("destination", self.destination),
            )
            if value is not None
        }
        received: Document = {}
        if self.since is not None:
            received["$gte"] = self.since
        if self.until is not None:
            received["$lt"] = self.until
        if received:
            query["received_at"] = received
        return query

    @property
    def empty(self) -> bool:
        return not self.query()


@dataclass(frozen=True, slots=True)
class FanInProgress:
    """What the outbox records say about one dead letter's item.failed."""

    emitted: bool = False
    last_attempt: int | None = None
    last_attempt_at: datetime | None = None
    retry_at: datetime | None = None  # set when the last attempt failed

    def next_attempt(self, now: datetime, lease: timedelta) -> int | None:
        """The attempt number to claim now, or None (done, in flight, or backing off)."""
        if self.emitted:
            return None
        if self.last_attempt is None:
            return 0
        if self.retry_at is not None:
            return self.last_attempt + 1 if self.retry_at <= now else None
        assert self.last_attempt_at is not None
        return self.last_attempt + 1 if self.last_attempt_at + lease <= now else None


def dead_letter_id(source: str, event_id: str, destination: str | None) -> str:
    """A dead letter's id: the same for every delivery of one event failed at one destination."""
    identity = "\x1f".join((source, event_id, destination or ""))
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Stored:
    id: str
    created: bool
    pending_fanin: bytes | None  # the item.failed event (JSON) still waiting for the broker


def _is_duplicate_key(exc: OperationFailure) -> bool:
    # FerretDB may report a unique-index race on an upsert as a generic error with code 11000.
    return isinstance(exc, DuplicateKeyError) or exc.code == 11000


class DeadLetterStore:
    def __init__(
        self, collection: AsyncCollection[Document], fanin: AsyncCollection[Document]
    ) -> None:
        self.collection = collection
        self.fanin = fanin

    async def create_indexes(self) -> None:
        await self.collection.create_index([("seq", DESCENDING)], unique=True)
        await self.collection.create_index([("type", ASCENDING), ("seq", DESCENDING)])
        await self.collection.create_index([("source", ASCENDING), ("seq", DESCENDING)])
        await self.collection.create_index([("destination", ASCENDING), ("seq", DESCENDING)])
        await self.collection.create_index([("received_at", ASCENDING)])
        await self.collection.create_index(
            [("fanin.state", ASCENDING), ("fanin.next_attempt_at", ASCENDING)]
        )
        await self.fanin.create_index([("letter", ASCENDING)])

    async def store(
        self,
        key: str,
        event: WireEvent,
        error: DeliveryError,
        fanin: Document | None,
        now: datetime,
    ) -> Stored:
        """Insert the dead letter as `key` (see dead_letter_id), or count a redelivery of it."""
        seq = ObjectId()
        on_insert: Document = {
            "seq": seq,
            "source": event.source,
            "event_id": event.id,
            "destination": error.destination,
            "type": event.type,
            "subject": event.subject,
            "event": {
                "attributes": event.attributes,
                "data": None if event.data is None else Binary(event.data),
            },
            "received_at": now,
            "replay_count": 0,
            "replays": [],
        }
        if fanin is not None:
            on_insert["fanin"] = {**fanin, "next_attempt_at": now}
        update = {
            "$setOnInsert": on_insert,
            "$set": {
                "last_received_at": now,
                "code": error.code,
                "error": {
                    "destination": error.destination,
                    "code": error.code,
                    "data_base64": error.data_base64,
                    "body": error.body(),
                    "truncated": error.truncated,
                },
            },
            "$inc": {"deliveries": 1},
        }
        for attempt in range(3):
            try:
                stored = await self.collection.find_one_and_update(
                    {"_id": key},
                    update,
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
                break
            except OperationFailure as exc:
                # Two deliveries raced to insert: the loser's retry finds the winner's document.
                if not _is_duplicate_key(exc) or attempt == 2:
                    raise
        assert stored is not None
        fanin = stored.get("fanin") or {}
        pending = bytes(fanin["event"]) if fanin.get("state") == PENDING else None
        return Stored(key, stored["seq"] == seq, pending)

    async def get(self, letter_id: str) -> Document | None:
        return await self.collection.find_one({"_id": letter_id}, projection={"fanin.event": 0})

    async def page(self, filters: Filters, limit: int, after: ObjectId | None) -> list[Document]:
        """Up to `limit` + 1 summaries, newest first, after `after`: the extra one means more."""
        query = filters.query()
        if after is not None:
            query["seq"] = {"$lt": after}
        cursor = self.collection.find(query, projection=dict.fromkeys(SUMMARY_FIELDS, 1))
        return await cursor.sort("seq", DESCENDING).limit(limit + 1).to_list()

    async def delete(self, letter_id: str) -> bool:
        result = await self.collection.delete_one({"_id": letter_id})
        await self.fanin.delete_many({"letter": letter_id})
        return result.deleted_count == 1

    async def purge(self, filters: Filters, batch: int = 1000) -> int:
        """Delete every match, a batch of ids at a time, with their fan-in records."""
        deleted = 0
        while True:
            cursor = self.collection.find(filters.query(), projection={"_id": 1}).limit(batch)
            ids = [document["_id"] for document in await cursor.to_list()]
            if not ids:
                return deleted
            result = await self.collection.delete_many({"_id": {"$in": ids}})
            await self.fanin.delete_many({"letter": {"$in": ids}})
            deleted += result.deleted_count

    async def count(self) -> int:
        return await self.collection.count_documents({})

    async def record_replay(self, letter_id: str, replay: Mapping[str, Any]) -> bool:
        result = await self.collection.update_one(
            {"_id": letter_id},
            {
                "$push": {"replays": replay},
                "$inc": {"replay_count": 1},
                "$set": {"last_replay": replay},
            },
        )
        return result.matched_count == 1

    # -- fan-in outbox: the item.failed event waits on the document until the broker has it ----

    async def fanin_progress(self, letter_id: str) -> FanInProgress:
        records = await self.fanin.find({"letter": letter_id}).to_list()
        if any(r["kind"] == "emitted" for r in records):
            return FanInProgress(emitted=True)
        attempts = [r for r in records if r["kind"] == "attempt"]
        if not attempts:
            return FanInProgress()
        last = max(attempts, key=lambda r: int(r["n"]))
        failed = next((r for r in records if r["kind"] == "failed" and r["n"] == last["n"]), None)
        return FanInProgress(
            last_attempt=int(last["n"]),
            last_attempt_at=_aware(last["at"]),
            retry_at=None if failed is None else _aware(failed["retry_at"]),
        )

    async def claim_fanin(self, letter_id: str, attempt: int, now: datetime) -> bool:
        """Start attempt `attempt`; False when another delivery, sweep or replica has it."""
        try:
            await self.fanin.insert_one(
                {
                    "_id": f"{letter_id}:{attempt}",
                    "letter": letter_id,
                    "kind": "attempt",
                    "n": attempt,
                    "at": now,
                }
            )
        except DuplicateKeyError:
            return False
        return True

    async def fanin_emitted(self, letter_id: str, now: datetime) -> None:
        with contextlib.suppress(DuplicateKeyError):
            await self.fanin.insert_one(
                {"_id": f"{letter_id}:emitted", "letter": letter_id, "kind": "emitted", "at": now}
            )
        await self.collection.update_one(
            {"_id": letter_id},
            {"$set": {"fanin.state": EMITTED, "fanin.emitted_at": now, "fanin.last_error": None}},
        )

    async def fanin_failed(
        self, letter_id: str, attempt: int, error: str, retry_at: datetime
    ) -> None:
        with contextlib.suppress(DuplicateKeyError):
            await self.fanin.insert_one(
                {
                    "_id": f"{letter_id}:{attempt}:failed",
                    "letter": letter_id,
                    "kind": "failed",
                    "n": attempt,
                    "retry_at": retry_at,
                    "error": error,
                }
            )
        await self.collection.update_one(
            {"_id": letter_id},
            {
                "$set": {
                    "fanin.last_error": error,
                    "fanin.attempts": attempt + 1,
                    "fanin.next_attempt_at": retry_at,
                }
            },
        )

    async def due_fanin(self, now: datetime) -> AsyncIterator[tuple[str, bytes]]:
        """Every pending emission whose summary says it is due (the records decide)."""
        cursor = self.collection.find(
            {"fanin.state": PENDING, "fanin.next_attempt_at": {"$lte": now}},
            projection={"fanin.event": 1},
        )
        async for document in cursor:
            yield document["_id"], bytes(document["fanin"]["event"])


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
