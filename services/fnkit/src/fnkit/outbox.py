"""The transactional outbox, kept inside the document whose change an event announces.

MongoDB-protocol servers without transactions (FerretDB) still write one document atomically,
so a change and the event that announces it are stored together, in the document's `outbox`
array, in that same write: both or neither. After the write the event is posted to the broker
and then popped from the array. When the broker is down the event simply stays; a sweep, at
start-up and then periodically, sends what is still pending. Delivery is therefore at least
once: a crash between the post and the pop, or a sweep racing a request, sends an event twice,
with the same id (and the very same stored bytes), which is how consumers recognise it.

A document's events leave in the order they were written, and the pop is conditional on the
event being at the head of the array, so two senders racing each other pop it only once.

A change that inserts a new document can instead stage its event (a relay made with
`staging=True`): `stage()` inserts it into
a small companion collection (`<collection>_outbox`, keyed by the event id) before the
document is inserted (the events of concurrent inserts in one command), and a sent event is
deleted from there, many at once, in the background. An insert and its event then cost
writes of new documents only, never a write to an existing one, which on FerretDB reads the
whole collection. The document's insert is the commit point: a staged event whose document
exists is sent; one whose document is still missing after the grace period is dropped once
the sweep has fenced that `_id` off (inserted `fence(doc_id)` there, so that a late insert
fails and was never acknowledged). A staged event leaves before its document's array.

Use: append `entry(event, at)` to the document's `outbox` in the write that makes the change,
then `relay.send_soon(doc_id, doc["outbox"])`; or `staged = await relay.stage(doc_id, event,
at)`, insert the document, then `relay.send_soon(doc_id, [staged])` (`unstage(staged)` if the
insert was refused). `start()` the sweep at start-up and `close()` it on shutdown. A subclass
adds what its documents need after a pop or a sweep (products-api removes a deleted product's
tombstone once its last event is out) and the shape of a fence.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bson import Binary
from prometheus_client import Counter, Gauge
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure, PyMongoError

from fnkit.batch import Batcher
from fnkit.errors import EmitError
from fnkit.events import CloudEvent, from_json, to_json
from fnkit.locks import KeyedLock
from fnkit.mongo import insert_many_once, is_duplicate_key

__all__ = ["FIELD", "STAGED_SUFFIX", "OutboxRelay", "entry"]

log = logging.getLogger("fnkit.outbox")

FIELD: Final = "outbox"
STAGED_SUFFIX: Final = "_outbox"
# Failed deletes of sent staged events: the pause between attempts, and how many in a row
# before the next send or the sweep takes over (a database that is down must not hold a
# shutdown).
_UNSTAGE_RETRY_SECONDS: Final = 0.5
_UNSTAGE_ATTEMPTS: Final = 3
_UNSTAGE_PAUSE_SECONDS: Final = 0.1

SWEEPS: Final = Counter(
    "fnkit_outbox_sweeps",
    "Completed passes of an outbox sweep, by collection and outcome.",
    ["collection", "outcome"],
)
PENDING: Final = Gauge(
    "fnkit_outbox_pending_documents",
    "Documents with events the broker has not taken yet, as counted by the last sweep.",
    ["collection"],
)

Emit = Callable[[CloudEvent], Awaitable[None]]
Entry = Mapping[str, Any]


def entry(event: CloudEvent, at: datetime) -> dict[str, Any]:
    """The outbox entry that stores `event`, to be appended in the same write as its change."""
    return {
        "id": event.get_id(),
        "type": event.get_type(),
        "at": at,
        "event": Binary(to_json(event)),
    }


class OutboxRelay:
    """Sends the events a collection's documents carry, in order, popping each once sent."""

    def __init__(
        self,
        collection: AsyncCollection[dict[str, Any]],
        emit: Emit,
        *,
        grace_seconds: float,
        interval_seconds: float,
        batch: int = 100,
        locks: KeyedLock | None = None,
        staging: bool = False,
    ) -> None:
        self.collection = collection
        self.locks = locks or KeyedLock()
        self._emit = emit
        self.grace = timedelta(seconds=grace_seconds)
        self.interval = interval_seconds
        self.batch = batch
        # Documents this process is sending right now, and those written to meanwhile: a
        # document has one sender per process, which then picks up what was appended behind it.
        self._sending: set[Any] = set()
        self._written_again: set[Any] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        # Whether inserts stage their events (see above): only then is there more to look up.
        self.staging = staging
        self.staged = collection.database[collection.name + STAGED_SUFFIX]
        # Concurrent creates stage their events in one insert (group commit, fnkit.batch).
        self._stager: Batcher[dict[str, Any], bool | OperationFailure] = Batcher(
            self.staged.name, self._insert_staged
        )
        # Staged events to delete (sent, or their insert refused), which the deleter takes
        # in batches.
        self._unstaging: set[str] = set()
        self._unstager: asyncio.Task[None] | None = None

    async def create_indexes(self) -> None:
        """The indexes the sweep's queries and the staged events' lookup use."""
        await self.collection.create_index(f"{FIELD}.at", name="outbox_at")
        if self.staging:
            await self.staged.create_index("doc", name="doc")
            await self.staged.create_index("at", name="at")

    async def stage(self, doc_id: Any, event: CloudEvent, at: datetime) -> dict[str, Any]:
        """Store `event` for the document an insert is about to create; insert it next."""
        if not self.staging:
            raise RuntimeError("this outbox relay was made without staging=True")
        staged = {"_id": event.get_id(), "doc": doc_id, **entry(event, at)}
        # Already there (False) is the same event: its id names the change it announces.
        outcome = await self._stager.submit(staged)
        if isinstance(outcome, OperationFailure):
            raise outcome
        return staged

    async def _insert_staged(
        self, items: Sequence[dict[str, Any]]
    ) -> list[bool | OperationFailure]:
        return await insert_many_once(self.staged, list(items))

    def unstage(self, staged: Entry) -> None:
        """Drop the event of an insert the database refused (if this fails, the sweep will)."""
        self._unstage_soon(staged["_id"])

    def fence(self, doc_id: Any, at: datetime) -> dict[str, Any]:
        """The document the sweep inserts in place of a staged event's missing one."""
        return {"_id": doc_id}

    def send_soon(self, doc_id: Any, pending: Sequence[Entry]) -> None:
        """Send a document's pending events in the background, right after the write."""
        if doc_id in self._sending:
            self._written_again.add(doc_id)
            return
        task = asyncio.create_task(self._send_in_background(doc_id, pending))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_in_background(self, doc_id: Any, pending: Sequence[Entry]) -> None:
        try:
            await self.send(doc_id, pending)
        except Exception as exc:
            # The events stay pending, and the sweep tries again.
            log.warning(
                "outbox send failed; the sweep will retry",
                extra={"doc_id": str(doc_id), "error": f"{type(exc).__name__}: {exc}"},
            )

    async def send(self, doc_id: Any, pending: Sequence[Entry]) -> bool:
        """Send `pending` (the document's outbox, oldest first); False if the broker refused."""
        if doc_id in self._sending:
            self._written_again.add(doc_id)
            return True
        self._sending.add(doc_id)
        try:
            if self.staging and any("_id" not in item for item in pending):
                # The document's array follows its insert's staged event, if still there.
                pending = [*await self._staged_of(doc_id), *pending]
            while True:
                for item in pending:
                    try:
                        await self._emit(from_json(bytes(item["event"])))
                    except EmitError as exc:
                        log.warning(
                            "broker unavailable; event left pending",
                            extra={
                                "event_id": item["id"],
                                "event_type": item["type"],
                                "error": str(exc),
                            },
                        )
                        return False
                    if "_id" in item:
                        self._unstage_soon(item["_id"])
                    else:
                        await self._pop(doc_id, item)
                if doc_id not in self._written_again:
                    return True
                self._written_again.discard(doc_id)
                doc = await self.collection.find_one({"_id": doc_id}, {FIELD: 1})
                pending = [*await self._staged_of(doc_id), *(doc.get(FIELD, []) if doc else [])]
        finally:
            self._sending.discard(doc_id)
            self._written_again.discard(doc_id)

    async def _staged_of(self, doc_id: Any) -> list[dict[str, Any]]:
        if not self.staging:
            return []
        found = await self.staged.find({"doc": doc_id}).sort("at", 1).to_list()
        return [item for item in found if item["_id"] not in self._unstaging]

    def _unstage_soon(self, event_id: str) -> None:
        self._unstaging.add(event_id)
        if self._unstager is None or self._unstager.done():
            self._unstager = asyncio.create_task(self._unstage(), name="outbox-unstage")

    async def _unstage(self) -> None:
        # One delete for every event sent since the last one, after a pause in which more
        # arrive under load: a sent event need not go at once, and every write command costs
        # the database (on FerretDB, a turn at SQLite's one writer) more than its size does.
        failures = 0
        while self._unstaging and failures < _UNSTAGE_ATTEMPTS:
            await asyncio.sleep(_UNSTAGE_PAUSE_SECONDS)
            batch = list(self._unstaging)
            try:
                await self.staged.delete_many({"_id": {"$in": batch}})
            except PyMongoError as exc:
                failures += 1
                log.warning(
                    "could not delete sent staged events; retrying",
                    extra={"events": len(batch), "error": f"{type(exc).__name__}: {exc}"},
                )
                await asyncio.sleep(_UNSTAGE_RETRY_SECONDS)
                continue
            failures = 0
            self._unstaging.difference_update(batch)

    async def _pop(self, doc_id: Any, item: Entry) -> None:
        # Conditional on the event being at the head, so a racing sender cannot pop a newer one.
        async with self.locks(doc_id):
            await self.collection.update_one(
                {"_id": doc_id, f"{FIELD}.0.id": item["id"]}, {"$pop": {FIELD: -1}}
            )
            await self.popped(doc_id, item)

    async def popped(self, doc_id: Any, item: Entry) -> None:
        """Called under the document's lock once `item` is sent and popped; for subclasses."""

    async def swept(self, cutoff: datetime) -> None:
        """Called after a sweep that sent everything older than `cutoff`; for subclasses."""

    def observe_sweep(self, outcome: str, pending: int | None) -> None:
        """Record a sweep's outcome (complete, broker_unavailable, failed) and what is left."""
        name = self.collection.name
        SWEEPS.labels(name, outcome).inc()
        if pending is not None:
            PENDING.labels(name).set(pending)

    async def sweep(self) -> bool:
        """Send every event older than the grace period; False if the broker refused one."""
        cutoff = datetime.now(UTC) - self.grace
        if self.staging and not await self._sweep_staged(cutoff):
            return False
        query: dict[str, Any] = {f"{FIELD}.at": {"$lte": cutoff}}
        while True:
            docs = (
                await self.collection.find(query, {FIELD: 1})
                .sort("_id", 1)
                .limit(self.batch)
                .to_list()
            )
            for doc in docs:
                if doc["_id"] not in self._sending and not await self.send(doc["_id"], doc[FIELD]):
                    return False
            if len(docs) < self.batch:
                break
            query["_id"] = {"$gt": docs[-1]["_id"]}
        await self.swept(cutoff)
        return True

    async def _sweep_staged(self, cutoff: datetime) -> bool:
        query: dict[str, Any] = {"at": {"$lte": cutoff}}
        while True:
            found = await self.staged.find(query).sort("_id", 1).limit(self.batch).to_list()
            # Deleted before the sweep goes on, so that what it leaves is what is pending.
            done: list[str] = []
            for staged in found:
                event_id, doc_id = staged["_id"], staged["doc"]
                if event_id in self._unstaging:  # sent, its delete not yet done
                    done.append(event_id)
                    continue
                if doc_id in self._sending:
                    continue
                if await self._inserted(doc_id) and not await self.send(doc_id, [staged]):
                    await self._delete_staged(done)
                    return False
                done.append(event_id)
            await self._delete_staged(done)
            if len(found) < self.batch:
                return True
            query["_id"] = {"$gt": found[-1]["_id"]}

    async def _delete_staged(self, event_ids: list[str]) -> None:
        if event_ids:
            await self.staged.delete_many({"_id": {"$in": event_ids}})
            self._unstaging.difference_update(event_ids)

    async def _inserted(self, doc_id: Any) -> bool:
        """Whether the document exists; if not, a fence makes sure it never will."""
        if await self.collection.find_one({"_id": doc_id}, {"_id": 1}) is not None:
            return True
        try:
            await self.collection.insert_one(self.fence(doc_id, datetime.now(UTC)))
        except PyMongoError as exc:
            if isinstance(exc, OperationFailure) and is_duplicate_key(exc):
                return True  # inserted just now, after all
            raise
        log.info(
            "staged event of an insert that never happened dropped", extra={"doc_id": str(doc_id)}
        )
        return False

    async def _sweep_forever(self) -> None:
        while True:
            pending: int | None = None
            try:
                outcome = "complete" if await self.sweep() else "broker_unavailable"
                pending = await self.collection.count_documents({f"{FIELD}.0": {"$exists": True}})
                if self.staging:
                    pending += await self.staged.count_documents({})
            except Exception as exc:
                outcome = "failed"
                log.warning("outbox sweep failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            self.observe_sweep(outcome, pending)
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        """Start sweeping: once now (events a previous process left behind), then periodically."""
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="outbox-sweep")

    async def flush(self) -> None:
        """Wait for the sends started after writes, and the deletes of sent staged events."""
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._unstager is not None:
            await asyncio.gather(self._unstager, return_exceptions=True)

    async def close(self) -> None:
        """Stop sweeping and let the sends already under way finish."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        await self.flush()
