"""A reply that finds its subscriber's queue full waits for room; the work is never redone.

The broker runs in-process and delivers over HTTP to two tiny subscribers on free ports:
`worker` answers every event with a reply event, `sink` (the reply's subscriber and the
dead-letter sink) stalls while told to, so its queue stays full. Before, a refused reply
counted as a failed delivery: the worker was sent the same event again and again, and once
its retries were used up the event was dead-lettered although the worker had done its work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from devplane.broker import Broker
from devplane.config import build_config
from devplane.eventlog import EventLog, EventRecord
from devplane.knobs import Knobs
from devplane.servers import free_port
from fnkit.events import new_event

from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

WORK = "io.knative-playbook.test.work.v1"
DONE = "io.knative-playbook.test.done.v1"


@dataclass
class Subscriber:
    """An HTTP server that records the `ce-id` and `ce-type` of each request it answers."""

    reply: bool
    seen: list[tuple[str, str]] = field(default_factory=list)
    open: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = field(default_factory=free_port)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return  # the broker closed the connection
            headers = dict(
                line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line
            )
            lowered = {k.lower(): v for k, v in headers.items()}
            await reader.readexactly(int(lowered.get(b"content-length", b"0")))
            await self.open.wait()
            self.seen.append((lowered[b"ce-id"].decode(), lowered[b"ce-type"].decode()))
            if self.reply:
                body = b"{}"
                writer.write(
                    b"HTTP/1.1 200 OK\r\nce-specversion: 1.0\r\nce-id: "
                    + lowered[b"ce-id"]
                    + b":done\r\nce-type: "
                    + DONE.encode()
                    + b"\r\nce-source: /worker\r\ncontent-type: application/json\r\n"
                    + b"content-length: 2\r\n\r\n"
                    + body
                )
            else:
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()


@pytest.fixture
async def plane(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[Broker, Subscriber, Subscriber]]:
    """The broker; `request.param`, if given, is the worker Trigger's timeout."""
    worker, sink = Subscriber(reply=True), Subscriber(reply=False)
    worker.open.set()
    servers = [await asyncio.start_server(s.handle, "127.0.0.1", s.port) for s in (worker, sink)]
    config = build_config(
        {
            "eventing": {
                "delivery": {
                    "retry": 2,
                    "backoffDelay": "PT0.05S",
                    "timeout": "PT10S",
                    "deadLetterSink": "sink",
                }
            },
            "functions": {
                "worker": {
                    "url": f"http://127.0.0.1:{worker.port}",
                    "triggers": [_on(WORK, timeout=getattr(request, "param", None))],
                },
                "sink": {"url": f"http://127.0.0.1:{sink.port}", "triggers": [_on(DONE)]},
            },
        },
        "http://{name}",
    )
    broker = Broker(
        config.triggers,
        knobs=Knobs(),
        event_log=EventLog(100),
        reply_url="http://devplane",
        capacity=3,
        workers=2,
        default_timeout=10,
    )
    await broker.start()
    try:
        yield broker, worker, sink
    finally:
        sink.open.set()
        await broker.stop(5)
        for server in servers:
            server.close()


def _on(event_type: str, *, timeout: str | None = None) -> dict[str, Any]:
    trigger: dict[str, Any] = {
        "name": event_type.split(".")[-2],
        "filter": {"attributes": {"type": event_type}},
    }
    if timeout is not None:
        trigger["delivery"] = {"timeout": timeout}
    return trigger


def _probe(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return condition()

    return probe


async def _fill_then_overflow(broker: Broker) -> list[EventRecord]:
    """Six work events: the first three replies fill the stalled sink's queue (capacity 3),
    so the last three replies find it full."""
    records = [broker.ingest(new_event(WORK, "/test", {}, id=f"w{n}")) for n in range(3)]
    await wait_for(_probe(lambda: broker.queues() == {"worker": 0, "sink": 3}), "sink full")
    return records + [broker.ingest(new_event(WORK, "/test", {}, id=f"w{n}")) for n in range(3, 6)]


async def _every_event_done_once(
    broker: Broker, worker: Subscriber, sink: Subscriber, records: list[EventRecord]
) -> None:
    await wait_for(_probe(lambda: broker.held() == 0), "every delivery finished", within=10)
    assert sorted(worker.seen) == [(f"w{n}", WORK) for n in range(6)]  # each done once
    assert sorted(sink.seen) == [(f"w{n}:done", DONE) for n in range(6)]  # no dead letter
    for record in records:
        (delivery,) = record.deliveries
        assert (delivery.outcome, delivery.attempts, delivery.reply_id) == (
            "delivered",
            1,
            f"{record.id}:done",
        )


async def test_a_reply_waits_for_a_full_queue_instead_of_redoing_the_work(
    plane: tuple[Broker, Subscriber, Subscriber],
) -> None:
    broker, worker, sink = plane
    # The last three replies are refused for far longer than the worker's retry budget
    # (0.05 + 0.1 s): before, the worker redid each until it was dead-lettered.
    records = await _fill_then_overflow(broker)
    await asyncio.sleep(1.0)
    sink.open.set()
    await _every_event_done_once(broker, worker, sink, records)


@pytest.mark.parametrize("plane", ["PT0.5S"], indirect=True)
async def test_a_reply_waiting_past_its_triggers_timeout_is_routed_over_capacity(
    plane: tuple[Broker, Subscriber, Subscriber],
) -> None:
    broker, worker, sink = plane
    # Queues that wait on each other must not deadlock: once the worker's Trigger timeout
    # (0.5 s) has passed, a reply still waiting for the stalled sink's full queue is let in
    # over its capacity, and the worker's delivery ends delivered, done once.
    records = await _fill_then_overflow(broker)
    await wait_for(
        _probe(lambda: broker.queues() == {"worker": 0, "sink": 6}),
        "the waiting replies let in over capacity while the sink still stalls",
        within=10,
    )
    assert not sink.open.is_set()
    sink.open.set()
    await _every_event_done_once(broker, worker, sink, records)
