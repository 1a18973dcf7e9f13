"""The broker: routes each event to every matching Trigger, with Knative's delivery semantics.

- Each matching Trigger gets its own copy. A subscriber's copies wait in that subscriber's
  bounded queue and are sent by a fixed set of workers (the only tasks; retries wait on
  timers, not on tasks), so memory and concurrency stay bounded whatever the load.
- Ingress is all or nothing: when any matching queue is full, the event is refused with 503
  and nothing is queued, so the sender's retry cannot create duplicates.
- A reply that finds a matching queue full waits for room there (first come, first served),
  still holding its own copy's place, so a full queue pushes back on ingress upstream instead
  of making the subscriber redo finished work until its retries run out and a done event is
  dead-lettered. After the Trigger's timeout the reply is routed over capacity, so queues
  that wait on each other cannot deadlock.
- An attempt fails on a network error, a timeout or a non-2xx status. Network errors,
  timeouts, 5xx, 404, 408, 409 and 429 are retried `retry` times with the Trigger's backoff;
  any other 4xx is final at once, as in Knative. A final failure goes to the dead-letter sink
  with `knativeerrordest`, `knativeerrorcode` and `knativeerrordata` (the response body's
  first 1024 bytes, base64, cut to 1024 characters), or is dropped when there is none.
- A 2xx response that carries a CloudEvent (binary or structured) is a reply: it re-enters
  the broker. `knativebrokerttl` (255 hops, kept by the broker, not sent to subscribers) stops
  reply loops, as Knative's broker does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from fnkit.errors import FunctionError, Unavailable
from fnkit.events import CloudEvent, EncodedEvent, encode_binary, parse_event
from fnkit.httpclient import HttpClient, HttpError, Response, header_lines

from devplane import metrics
from devplane.config import Trigger
from devplane.eventlog import DeliveryRecord, EventLog, EventRecord, Outcome, touch
from devplane.knobs import Knobs

log = logging.getLogger("devplane.broker")

RETRYABLE_STATUS: Final = frozenset({404, 408, 409, 429})
ERROR_DATA_MAX: Final = 1024  # Knative's KnativeErrorDataExtensionMaxLength
DEFAULT_TTL: Final = 255
_TTL: Final = "knativebrokerttl"
_ERROR_HEADERS: Final = (b"ce-knativeerrordest", b"ce-knativeerrorcode", b"ce-knativeerrordata")
_ARRIVAL: Final = b"ce-knativearrivaltime"
_BROKER_HEADERS: Final = frozenset({_ARRIVAL, b"ce-" + _TTL.encode()})

Headers = list[tuple[bytes, bytes]]


class QueueFull(Unavailable):
    """A matching subscriber's queue is full: the sender should retry later (503)."""

    code = "queue_full"

    def __init__(self, message: str, subscriber: str) -> None:
        super().__init__(message)
        self.subscriber = subscriber


@dataclass(slots=True)
class _Failure:
    dest: str
    code: int
    data: bytes


@dataclass(slots=True)
class _Reply:
    """A subscriber's reply event, routed as soon as every queue it matches has room."""

    event: CloudEvent
    binary: EncodedEvent | None


@dataclass(slots=True)
class _Copy:
    """One Trigger's copy of an event on its way to the subscriber (then maybe the sink)."""

    trigger: Trigger
    headers: Headers
    head: bytes
    body: bytes
    event: EventRecord
    ttl: int
    record: DeliveryRecord
    failure: _Failure | None = None
    sink_attempts: int = 0
    reply: _Reply | None = None
    overdue: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class _Lane:
    """A subscriber's queue and workers; `held` counts copies queued, in flight or backing off."""

    subscriber: str
    capacity: int
    ready: asyncio.Queue[_Copy] = field(default_factory=asyncio.Queue)
    held: int = 0
    workers: list[asyncio.Task[None]] = field(default_factory=list)
    # Copies of other lanes whose reply waits for room here, with their own lane.
    waiting: deque[tuple[_Lane, _Copy]] = field(default_factory=deque)
    attempts: Tally[str] = field(default_factory=Tally)
    outcomes: Tally[str] = field(default_factory=Tally)


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value if isinstance(value, str) else str(value)


def _trace_id(traceparent: Any) -> str | None:
    """The trace id of a W3C traceparent, for the event log (None when absent or malformed)."""
    parts = traceparent.split("-") if isinstance(traceparent, str) else ()
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def error_data(body: bytes) -> str:
    """`knativeerrordata` as Knative writes it: base64 of the body's start, at most 1024 chars."""
    return base64.b64encode(body[:ERROR_DATA_MAX]).decode()[:ERROR_DATA_MAX]


class Broker:
    """Knative Broker + Triggers, in one process."""

    def __init__(
        self,
        triggers: tuple[Trigger, ...],
        *,
        knobs: Knobs,
        event_log: EventLog,
        reply_url: str,
        capacity: int,
        workers: int,
        default_timeout: float,
    ) -> None:
        self.triggers = triggers
        self.knobs = knobs
        self.log = event_log
        self.reply_url = reply_url
        self.workers = workers
        self.default_timeout = default_timeout
        self.lanes: dict[str, _Lane] = {}
        for trigger in triggers:
            if trigger.subscriber not in self.lanes:
                self.lanes[trigger.subscriber] = _Lane(trigger.subscriber, capacity)
        # Most Triggers filter on `type`: index them by it, so an event is only compared with
        # the Triggers that could match.
        self._by_type: dict[str, list[Trigger]] = {}
        self._any_type: list[Trigger] = []
        for trigger in triggers:
            if "type" in trigger.filter:
                self._by_type.setdefault(trigger.filter["type"], []).append(trigger)
            else:
                self._any_type.append(trigger)
        self._filtered = frozenset(name for t in triggers for name in t.filter)
        self._client: HttpClient | None = None
        self._held = 0
        self._arrival = (0.0, b"")
        self._idle = asyncio.Event()
        self._idle.set()
        self.events: Tally[str] = Tally()
        metrics.watch(self)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._client = HttpClient()
        for lane in self.lanes.values():
            lane.workers = [
                asyncio.create_task(self._work(lane), name=f"deliver-{lane.subscriber}-{i}")
                for i in range(self.workers)
            ]

    async def stop(self, drain_seconds: float) -> None:
        """Give queued deliveries `drain_seconds` to finish, then stop the workers."""
        if not self.knobs.paused:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_seconds):
                    await self._idle.wait()
        if self.held():
            log.warning("stopping with deliveries still queued", extra={"held": self.held()})
        for lane in self.lanes.values():
            for worker in lane.workers:
                worker.cancel()
            await asyncio.gather(*lane.workers, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def held(self) -> int:
        return self._held

    def lane_counts(self) -> Iterator[_Lane]:
        return iter(self.lanes.values())

    def _arrival_time(self) -> bytes:
        """`knativearrivaltime`, formatted at most once a millisecond (it is per event)."""
        now = time.time()
        if now - self._arrival[0] >= 0.001:
            self._arrival = (now, _text(datetime.fromtimestamp(now, UTC)).encode())
        return self._arrival[1]

    # -- ingress --------------------------------------------------------------------------

    def ingest(
        self,
        event: CloudEvent,
        origin: str = "ingress",
        ttl: int | None = None,
        binary: EncodedEvent | None = None,
        *,
        over_capacity: bool = False,
    ) -> EventRecord:
        """Queue a copy for every matching Trigger; raise QueueFull (queuing nothing) if any
        matching queue is full, unless `over_capacity`. `binary` is the event as it arrived in
        binary mode, forwarded as it is rather than encoded again."""
        attributes = event.get_attributes()
        event_type = attributes["type"]
        candidates = self._by_type.get(event_type, ())
        if self._any_type:
            candidates = [*candidates, *self._any_type]
        matched: list[Trigger] = []
        if candidates:
            values = {
                name: _text(attributes[name])
                for name in self._filtered
                if attributes.get(name) is not None
            }
            matched = [t for t in candidates if t.matches(values)]
        wanted: dict[str, int] = {}
        for trigger in matched:
            wanted[trigger.subscriber] = wanted.get(trigger.subscriber, 0) + 1
        for subscriber, count in wanted.items():
            lane = self.lanes[subscriber]
            if lane.held + count > lane.capacity and not over_capacity:
                metrics.REJECTED.labels(subscriber).inc()
                raise QueueFull(
                    f"the queue of subscriber {subscriber!r} is full ({lane.capacity} "
                    "deliveries); retry later",
                    subscriber,
                )
        if ttl is None:
            ttl = _ttl(attributes.get(_TTL))
        record = EventRecord(
            attributes["id"],
            event_type,
            attributes["source"],
            attributes.get("subject"),
            origin,
            _trace_id(attributes.get("traceparent")),
        )
        self.log.add(record)
        self.events["reply" if origin.startswith("reply") else "ingress"] += 1
        if not matched:
            return record
        headers, body = binary or encode_binary(event)
        # The TTL stays inside the broker; the arrival time is this broker's, as in Knative.
        headers = [h for h in headers if h[0] not in _BROKER_HEADERS]
        headers.append((_ARRIVAL, self._arrival_time()))
        head = header_lines(headers)
        for trigger in matched:
            self._queue(trigger, headers, head, body, record, ttl)
        return record

    def _queue(
        self,
        trigger: Trigger,
        headers: Headers,
        head: bytes,
        body: bytes,
        event: EventRecord,
        ttl: int,
        *,
        duplicate: bool = False,
    ) -> None:
        record = DeliveryRecord(trigger.name, trigger.subscriber, trigger.url, duplicate)
        event.deliveries.append(record)
        lane = self.lanes[trigger.subscriber]
        lane.held += 1
        self._held += 1
        self._idle.clear()
        lane.ready.put_nowait(_Copy(trigger, headers, head, body, event, ttl, record))

    # -- delivery -------------------------------------------------------------------------

    async def _work(self, lane: _Lane) -> None:
        while True:
            copy = await lane.ready.get()
            if self.knobs.paused:
                await self.knobs.wait_running()
            try:
                if copy.failure is None:
                    await self._deliver(lane, copy)
                else:
                    await self._dead_letter(lane, copy)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery crashed", extra={"event_id": copy.event.id})
                self._finish(lane, copy, "lost")

    async def _post(
        self, lane: _Lane, url: str, head: bytes, body: bytes, seconds: float
    ) -> tuple[Response | None, str | None]:
        assert self._client is not None
        try:
            async with asyncio.timeout(seconds):
                response = await self._client.post(url, head, body)
        except TimeoutError:
            lane.attempts["timeout"] += 1
            return None, f"timed out after {seconds:g}s"
        except (HttpError, OSError) as exc:
            lane.attempts["network"] += 1
            return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        lane.attempts[str(response.status)] += 1
        return response, None

    async def _deliver(self, lane: _Lane, copy: _Copy) -> None:
        if self.knobs.delay_seconds:
            await asyncio.sleep(self.knobs.delay_seconds)
        trigger, record = copy.trigger, copy.record
        record.attempts += 1
        timeout = trigger.delivery.timeout or self.default_timeout
        response, problem = await self._post(lane, trigger.url, copy.head, copy.body, timeout)
        if response is None:
            record.status, record.error = None, problem
            # Knative reports a failed dispatch as a 500 with the error as the body.
            dispatch_error = f"dispatch error: {problem}".encode()
            self._failed(lane, copy, _Failure(trigger.url, 500, dispatch_error), retryable=True)
            return
        status = record.status = response.status
        if not 200 <= status < 300:
            record.error = f"HTTP {status}"
            self._failed(
                lane,
                copy,
                _Failure(trigger.url, status, response.body),
                retryable=status >= 500 or status in RETRYABLE_STATUS,
            )
            return
        copy.reply = self._reply(copy, response)
        if copy.reply is not None:
            full = self._route_reply(copy)
            if full is not None:
                self._wait_for_room(lane, copy, full)
                return
        self._finish(lane, copy, "delivered")
        if (
            self.knobs.duplicate_ratio
            and not record.duplicate
            and random.random() < self.knobs.duplicate_ratio  # noqa: S311 - fault injection
            and lane.held < lane.capacity
        ):
            self._queue(
                trigger, copy.headers, copy.head, copy.body, copy.event, copy.ttl, duplicate=True
            )

    def _reply(self, copy: _Copy, response: Response) -> _Reply | None:
        """The reply event the response carries, if any and if it may be routed."""
        content_type = response.header(b"content-type") or b""
        if not (
            content_type.startswith(b"application/cloudevents+json")
            or any(name.startswith(b"ce-") for name, _ in response.headers)
        ):
            return None
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in response.headers
        }
        try:
            reply = parse_event(headers, response.body)
        except FunctionError as exc:
            copy.record.error = f"reply ignored, not a valid CloudEvent: {exc}"
            return None
        if copy.ttl <= 1:
            copy.record.error = f"reply {reply.get_id()} dropped: {_TTL} exhausted (a reply loop?)"
            log.warning("reply dropped: TTL exhausted", extra={"event_id": copy.event.id})
            return None
        return _Reply(reply, binary_message(response.headers, response.body))

    def _route_reply(self, copy: _Copy, *, over_capacity: bool = False) -> QueueFull | None:
        """Route the copy's reply; the refusal if a queue it matches is full."""
        reply = copy.reply
        assert reply is not None
        try:
            routed = self.ingest(
                reply.event,
                f"reply from {copy.trigger.subscriber}",
                copy.ttl - 1,
                reply.binary,
                over_capacity=over_capacity,
            )
        except QueueFull as full:
            return full
        copy.reply = None
        copy.record.reply_id = routed.id
        return None

    def _wait_for_room(self, lane: _Lane, copy: _Copy, full: QueueFull) -> None:
        """Queue the copy's reply behind the full queue's other waiting replies."""
        copy.record.outcome = "pending"
        copy.record.error = f"reply waiting: {full.message}"
        touch(copy.record)
        self.lanes[full.subscriber].waiting.append((lane, copy))
        if copy.overdue is None:
            timeout = copy.trigger.delivery.timeout or self.default_timeout
            copy.overdue = asyncio.get_running_loop().call_later(
                timeout, self._reply_overdue, lane, copy
            )

    def _reply_overdue(self, lane: _Lane, copy: _Copy) -> None:
        if copy.reply is None:
            return
        log.warning(
            "reply routed over capacity: its queue stayed full",
            extra={"event_id": copy.event.id, "trigger": copy.trigger.name},
        )
        self._route_reply(copy, over_capacity=True)
        self._replied(lane, copy)

    def _admit_waiting(self, target: _Lane) -> None:
        """Route the replies waiting for `target`, oldest first, while it has room."""
        while target.waiting and target.held < target.capacity:
            lane, copy = target.waiting.popleft()
            if copy.reply is None:
                continue  # routed over capacity meanwhile
            full = self._route_reply(copy)
            if full is None:
                self._replied(lane, copy)
            else:
                self._wait_for_room(lane, copy, full)
                if full.subscriber == target.subscriber:
                    return  # it needs more room here than there is

    def _replied(self, lane: _Lane, copy: _Copy) -> None:
        if copy.overdue is not None:
            copy.overdue.cancel()
        copy.record.error = None
        self._finish(lane, copy, "delivered")

    def _failed(self, lane: _Lane, copy: _Copy, failure: _Failure, *, retryable: bool) -> None:
        delivery, record = copy.trigger.delivery, copy.record
        if retryable and record.attempts <= delivery.retry:
            record.outcome = "retrying"
            touch(record)
            asyncio.get_running_loop().call_later(
                delivery.backoff(record.attempts), lane.ready.put_nowait, copy
            )
            return
        if copy.trigger.dead_letter_url is None:
            log.warning(
                "delivery failed; no dead-letter sink, event dropped",
                extra={
                    "event_id": copy.event.id,
                    "trigger": copy.trigger.name,
                    "status": failure.code,
                    "attempts": record.attempts,
                },
            )
            self._finish(lane, copy, "dropped")
            return
        copy.failure = failure
        lane.ready.put_nowait(copy)

    async def _dead_letter(self, lane: _Lane, copy: _Copy) -> None:
        failure, trigger = copy.failure, copy.trigger
        assert failure is not None and trigger.dead_letter_url is not None
        headers = [h for h in copy.headers if h[0] not in _ERROR_HEADERS]
        headers += [
            (_ERROR_HEADERS[0], failure.dest.encode()),
            (_ERROR_HEADERS[1], str(failure.code).encode()),
            (_ERROR_HEADERS[2], error_data(failure.data).encode()),
        ]
        copy.sink_attempts += 1
        timeout = trigger.delivery.timeout or self.default_timeout
        response, problem = await self._post(
            lane, trigger.dead_letter_url, header_lines(headers), copy.body, timeout
        )
        if response is not None and 200 <= response.status < 300:
            copy.record.dead_letter_url = trigger.dead_letter_url
            self._finish(lane, copy, "dead-lettered")
            return
        why = problem or f"HTTP {response.status if response else '?'}"
        if copy.sink_attempts <= trigger.delivery.retry:
            asyncio.get_running_loop().call_later(
                trigger.delivery.backoff(copy.sink_attempts), lane.ready.put_nowait, copy
            )
            return
        copy.record.error = f"{copy.record.error}; dead-letter sink failed: {why}"
        log.error(
            "event lost: the dead-letter sink refused it",
            extra={
                "event_id": copy.event.id,
                "trigger": trigger.name,
                "sink": trigger.dead_letter_url,
                "error": why,
            },
        )
        self._finish(lane, copy, "lost")

    def _finish(self, lane: _Lane, copy: _Copy, outcome: Outcome) -> None:
        copy.record.outcome = outcome
        touch(copy.record)
        lane.held -= 1
        self._held -= 1
        if not self._held:
            self._idle.set()
        lane.outcomes[outcome] += 1
        if lane.waiting:
            # Not at once: routing a waiting reply finishes a copy of another lane, and so on.
            asyncio.get_running_loop().call_soon(self._admit_waiting, lane)

    # -- views ----------------------------------------------------------------------------

    def routes(self) -> list[dict[str, Any]]:
        return [
            {
                "trigger": t.name,
                "subscriber": t.subscriber,
                "url": t.url,
                "filter": dict(t.filter),
                "dead_letter_url": t.dead_letter_url,
                "delivery": {
                    "retry": t.delivery.retry,
                    "backoffPolicy": t.delivery.backoff_policy,
                    "backoffDelaySeconds": t.delivery.backoff_delay,
                    "timeoutSeconds": t.delivery.timeout or self.default_timeout,
                },
            }
            for t in self.triggers
        ]

    def queues(self) -> Mapping[str, int]:
        return {name: lane.held for name, lane in self.lanes.items()}


def binary_message(headers: Iterable[tuple[bytes, bytes]], body: bytes) -> EncodedEvent | None:
    """A binary-mode message's CloudEvent headers and body, as received; None if structured.

    Call it only for a message that parsed as a CloudEvent; names must be lower-case.
    """
    kept = [
        (name, value)
        for name, value in headers
        if name.startswith(b"ce-") or name == b"content-type"
    ]
    for name, value in kept:
        if name == b"content-type" and value.lower().startswith(b"application/cloudevents+json"):
            return None
    return kept, body


def _ttl(value: Any) -> int:
    try:
        return max(1, min(DEFAULT_TTL, int(value))) if value is not None else DEFAULT_TTL
    except (TypeError, ValueError):
        return DEFAULT_TTL
