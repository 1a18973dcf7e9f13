"""What the dead-letter sink does: store, replay, purge, and answer for lost bulk-job items.

Fan-in emission uses an outbox on the dead letter's own document rather than failing the
delivery with a 503. The `item.failed` event is written with the dead letter in one upsert
(one document, so no transaction is needed), then emitted at once; if the broker does not
take it, the dead letter is still acknowledged and the sweep (at start-up and every
SWEEP_INTERVAL_SECONDS) tries again, backing off from FANIN_RETRY_SECONDS, until the broker
has it. A 503 would tie the sink's answer to the health of the very broker delivering to it,
and a broker that gives up on its dead-letter sink drops the event; the outbox loses nothing
either way, and a redelivered dead letter never emits a second item.failed."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import orjson
from bson import Binary, ObjectId
from fnkit import Context, EmitError, FunctionError, NotFound, Rejected, Unavailable
from fnkit.events import from_json, new_event, to_json
from fnkit.tracing import outgoing_traceparent

from dead_letter.config import Settings
from dead_letter.fanin import ITEM_FAILED, ITEM_REQUESTED, Unmappable, item_failed_data
from dead_letter.fanin import item_failed_id as fanin_event_id
from dead_letter.metrics import CURRENT, REDELIVERED, REPLAYS, STORED, TypeLabels
from dead_letter.store import (
    COLLECTION,
    FANIN_COLLECTION,
    PENDING,
    DeadLetterStore,
    Document,
    Filters,
    dead_letter_id,
)

if TYPE_CHECKING:
    import httpx
from dead_letter.wire import DeliveryError, WireEvent

log = logging.getLogger("dead_letter")

BROKER: Final = "broker"
DESTINATION: Final = "destination"
_MAX_FANIN_DELAY: Final = 300.0
_ID: Final = re.compile(r"[0-9a-f]{32}")


class ReplayRejected(FunctionError):
    """The replay target answered, but not with a 2xx."""

    status = 502
    code = "replay_rejected"


class ReplayUnavailable(Unavailable):
    """The replay target could not be reached or did not answer in time."""

    code = "replay_target_unavailable"


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_id(letter_id: str) -> str:
    """A dead letter's id from a URL; one that cannot exist is simply not found."""
    if not _ID.fullmatch(letter_id):
        raise NotFound(f"no dead letter with id {letter_id!r}")
    return letter_id


def stored_event(document: Document) -> WireEvent:
    event = document["event"]
    data = event.get("data")
    return WireEvent(dict(event["attributes"]), None if data is None else bytes(data))


class DeadLetters:
    """The service's operations, shared by the event handler and the REST routes."""

    def __init__(self, ctx: Context[Settings]) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self._http: httpx.AsyncClient | None = None
        self.store = self.store_of(ctx)
        self.type_labels = TypeLabels()

    @property
    def http(self) -> httpx.AsyncClient:
        """The replays' client, made by the first replay: httpx is not needed before one."""
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient()
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    @staticmethod
    def store_of(ctx: Context[Settings]) -> DeadLetterStore:
        return DeadLetterStore(ctx.db[COLLECTION], ctx.db[FANIN_COLLECTION])

    # -- the sink ---------------------------------------------------------------------------

    async def receive(self, event: WireEvent, error: DeliveryError) -> str:
        """Store a dead letter once; for a lost bulk-job item, see that item.failed goes out."""
        key = dead_letter_id(event.source, event.id, error.destination)
        fanin = self._fanin(key, event, error)
        stored = await self.store.store(key, event, error, fanin, utcnow())
        if stored.created:
            STORED.labels(self.type_labels(event.type)).inc()
            log.info(
                "dead letter stored",
                extra={
                    "dead_letter_id": stored.id,
                    "event_id": event.id,
                    "type": event.type,
                    "destination": error.destination,
                    "code": error.code,
                },
            )
        else:
            REDELIVERED.inc()
        if stored.pending_fanin is not None:
            await self.emit_fanin(stored.id, stored.pending_fanin)
        return stored.id

    def _fanin(self, key: str, event: WireEvent, error: DeliveryError) -> Document | None:
        if event.type != ITEM_REQUESTED:
            return None
        try:
            data = item_failed_data(_json_data(event), error.code, key)
        except Unmappable as exc:
            log.warning(
                "dead-lettered item.requested names no job item; no item.failed sent",
                extra={"event_id": event.id, "error": str(exc)},
            )
            return {"state": "unmappable", "reason": str(exc)}
        failed = new_event(
            ITEM_FAILED,
            self.ctx.source,
            data,
            subject=event.subject,
            id=fanin_event_id(event.source, event.id),
            traceparent=outgoing_traceparent(),
        )
        return {
            "state": PENDING,
            "event": Binary(to_json(failed)),
            "event_id": failed.get_id(),
            "attempts": 0,
        }

    async def emit_fanin(self, letter_id: str, event_json: bytes) -> bool:
        """Make the next attempt at a pending item.failed, unless it is not due or is taken."""
        now = utcnow()
        lease = timedelta(seconds=self.settings.fanin_lease_seconds)
        progress = await self.store.fanin_progress(letter_id)
        if progress.emitted:
            await self.store.fanin_emitted(letter_id, now)  # the summary may lag the record
            return False
        attempt = progress.next_attempt(now, lease)
        if attempt is None or not await self.store.claim_fanin(letter_id, attempt, now):
            return False
        try:
            await self.ctx.emit(from_json(event_json))
        except EmitError as exc:
            delay = min(self.settings.fanin_retry_seconds * 2**attempt, _MAX_FANIN_DELAY)
            retry_at = utcnow() + timedelta(seconds=delay)
            await self.store.fanin_failed(letter_id, attempt, exc.message, retry_at)
            log.warning(
                "item.failed not emitted; will retry",
                extra={"dead_letter_id": letter_id, "error": exc.message, "retry_in_s": delay},
            )
            return False
        await self.store.fanin_emitted(letter_id, utcnow())
        return True

    async def sweep(self) -> int:
        """Retry every pending item.failed emission and refresh the stored-count gauge."""
        emitted = 0
        async for letter_id, event_json in self.store.due_fanin(utcnow()):
            emitted += await self.emit_fanin(letter_id, event_json)
        CURRENT.set(await self.store.count())
        return emitted

    async def sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the sweep must outlive a database outage
                error = f"{type(exc).__name__}: {exc}"
                log.warning("sweep failed; retrying", extra={"error": error})
            await asyncio.sleep(self.settings.sweep_interval_seconds)

    # -- the API ----------------------------------------------------------------------------

    async def get(self, letter_id: str) -> Document:
        document = await self.store.get(parse_id(letter_id))
        if document is None:
            raise NotFound(f"no dead letter with id {letter_id!r}")
        return document

    async def page(
        self, filters: Filters, limit: int, cursor: str | None
    ) -> tuple[list[Document], str | None]:
        if limit > self.settings.max_page_size:
            raise Rejected(f"limit must be at most {self.settings.max_page_size}")
        after = None
        if cursor is not None:
            if not ObjectId.is_valid(cursor):
                raise Rejected("cursor is not one this service returned")
            after = ObjectId(cursor)
        documents = await self.store.page(filters, limit, after)
        more = len(documents) > limit
        documents = documents[:limit]
        return documents, str(documents[-1]["seq"]) if more else None

    async def delete(self, letter_id: str) -> None:
        if _ID.fullmatch(letter_id):
            await self.store.delete(letter_id)

    async def purge(self, filters: Filters) -> int:
        if filters.empty:
            raise Rejected("purge needs at least one filter (type, source, destination, before)")
        deleted = await self.store.purge(filters)
        log.info("dead letters purged", extra={"deleted": deleted, "filters": filters.query()})
        return deleted

    async def replay(self, letter_id: str, target: str = BROKER) -> dict[str, Any]:
        """Send the original event to `target`, record the attempt, and report it.

        `target` is `broker` (K_SINK), `destination` (the subscriber that failed) or a URL.
        Raises ReplayRejected (502) or ReplayUnavailable (503) after recording a failed attempt.
        """
        document = await self.get(letter_id)
        url = self._target_url(target, document)
        headers, body = stored_event(document).to_binary()
        at = utcnow()
        status: int | None = None
        import httpx

        try:
            response = await self.http.post(
                url, headers=headers, content=body, timeout=self.settings.replay_timeout_seconds
            )
        except httpx.HTTPError as exc:
            outcome, message = "unreachable", f"{type(exc).__name__}: {exc}".rstrip(": ")
        else:
            status = response.status_code
            if response.is_success:
                outcome, message = "delivered", f"HTTP {status}"
            else:
                outcome, message = "rejected", f"HTTP {status}: {response.text[:300]}"
        replay = {"at": at, "target": url, "outcome": outcome, "status": status, "message": message}
        REPLAYS.labels(outcome).inc()
        await self.store.record_replay(document["_id"], replay)
        log.info(
            "replay",
            extra={
                "dead_letter_id": letter_id,
                "target": url,
                "outcome": outcome,
                "status": status,
                "detail": message,
            },
        )
        details = {**replay, "at": at.isoformat(), "dead_letter_id": letter_id}
        if outcome == "unreachable":
            raise ReplayUnavailable(
                f"replay to {url} failed, the dead letter is kept: {message}", details=details
            )
        if outcome == "rejected":
            raise ReplayRejected(
                f"replay target {url} refused the event, the dead letter is kept: {message}",
                details=details,
            )
        return replay

    def _target_url(self, target: str, document: Document) -> str:
        if target == BROKER:
            if not self.settings.k_sink:
                raise Unavailable("cannot replay to the broker: K_SINK is not set")
            return self.settings.k_sink
        if target == DESTINATION:
            destination = document.get("destination")
            if not destination:
                raise Rejected("this dead letter has no recorded destination (knativeerrordest)")
            return str(destination)
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Rejected("target must be 'broker', 'destination' or an http(s) URL")
        return target


def _json_data(event: WireEvent) -> Any:
    if event.data is None:
        return None
    try:
        return orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return None
