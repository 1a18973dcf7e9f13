"""The event log's cursor: each event numbered once, `after` returns only what came later."""

from __future__ import annotations

import pytest
from devplane.eventlog import EventLog, EventRecord

pytestmark = pytest.mark.unit


def record(n: int, type: str = "t.v1") -> EventRecord:
    return EventRecord(f"id-{n}", type, "/src", None, "ingress")


def test_events_are_numbered_in_arrival_order_and_follow_a_cursor() -> None:
    log = EventLog(size=100)
    for n in range(5):
        log.add(record(n, "a.v1" if n % 2 else "b.v1"))

    assert [r.seq for r in log.query(limit=10)] == [5, 4, 3, 2, 1]
    assert [r.id for r in log.query(after=3)] == ["id-4", "id-3"]
    assert [r.id for r in log.query(type="a.v1", after=1)] == ["id-3", "id-1"]
    assert log.query(after=5) == []


def test_the_cursor_keeps_counting_when_old_events_fall_off() -> None:
    log = EventLog(size=2)
    for n in range(4):
        log.add(record(n))

    assert [(r.seq, r.id) for r in log.query()] == [(4, "id-3"), (3, "id-2")]
    assert [r.view()["seq"] for r in log.query(after=3)] == [4]
