"""Routing decisions of the broker, in-process (nothing is delivered: workers never start)."""

from __future__ import annotations

from typing import Any

import pytest
from devplane.broker import Broker, QueueFull, binary_message
from devplane.config import build_config
from devplane.eventlog import EventLog
from devplane.knobs import Knobs
from fnkit.events import new_event

pytestmark = pytest.mark.unit


def broker(functions: dict[str, Any], capacity: int = 10) -> Broker:
    config = build_config({"functions": functions}, "http://{name}")
    return Broker(
        config.triggers,
        knobs=Knobs(),
        event_log=EventLog(100),
        reply_url="http://devplane",
        capacity=capacity,
        workers=1,
        default_timeout=1,
    )


def on(name: str, **attributes: str) -> dict[str, Any]:
    return {"name": name, "filter": {"attributes": attributes}}


def test_every_matching_trigger_gets_a_copy_even_two_of_one_subscriber() -> None:
    plane = broker(
        {
            "a": {"triggers": [on("by-type", type="t.v1"), on("by-bucket", bucket="up")]},
            "b": {"triggers": [on("everything")]},
            "c": {"triggers": [on("other", type="u.v1")]},
        }
    )
    record = plane.ingest(new_event("t.v1", "/s", {}, bucket="up"))
    assert sorted((d.subscriber, d.trigger) for d in record.deliveries) == [
        ("a", "by-bucket"),
        ("a", "by-type"),
        ("b", "everything"),
    ]
    assert plane.queues() == {"a": 2, "b": 1, "c": 0}


def test_a_full_queue_refuses_the_event_for_every_subscriber() -> None:
    plane = broker(
        {"a": {"triggers": [on("x", type="t.v1")]}, "b": {"triggers": [on("x", type="t.v1")]}},
        capacity=1,
    )
    plane.ingest(new_event("t.v1", "/s", {}))
    plane.lanes["b"].held = 0  # b has room again, a does not
    with pytest.raises(QueueFull, match="'a' is full"):
        plane.ingest(new_event("t.v1", "/s", {}))
    assert plane.queues() == {"a": 1, "b": 0}
    assert len(list(plane.log)) == 1  # the refused event was never accepted


def test_extension_values_of_any_type_match_their_text() -> None:
    plane = broker({"a": {"triggers": [on("x", type="t.v1", priority="5")]}})
    assert len(plane.ingest(new_event("t.v1", "/s", {}, priority=5)).deliveries) == 1
    assert len(plane.ingest(new_event("t.v1", "/s", {}, priority=6)).deliveries) == 0


def test_binary_messages_are_forwarded_as_received_and_structured_ones_are_not() -> None:
    headers = [
        (b"host", b"x"),
        (b"ce-id", b"1"),
        (b"ce-type", b"t%20v1"),
        (b"content-type", b"application/json"),
        (b"content-length", b"2"),
    ]
    assert binary_message(headers, b"{}") == (
        [(b"ce-id", b"1"), (b"ce-type", b"t%20v1"), (b"content-type", b"application/json")],
        b"{}",
    )
    structured = [(b"content-type", b"application/cloudevents+json; charset=utf-8")]
    assert binary_message(structured, b"{}") is None


def test_the_broker_keeps_its_ttl_and_stamps_its_arrival_time() -> None:
    plane = broker({"a": {"triggers": [on("x", type="t.v1")]}})
    plane.ingest(new_event("t.v1", "/s", {}, knativebrokerttl=7))
    copy = plane.lanes["a"].ready.get_nowait()
    names = [name for name, _ in copy.headers]
    assert b"ce-knativebrokerttl" not in names
    assert b"ce-knativearrivaltime" in names
    assert copy.ttl == 7
