"""The event log: recent events with, for each, where it went, how many attempts, the outcome.

A bounded ring, so a long `make dev` session or a 10,000-item fan-out never grows memory:
the oldest records fall off the end.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Outcome = Literal["pending", "retrying", "delivered", "dead-lettered", "dropped", "lost"]


def _stamp(seconds: float) -> str:
    """Epoch seconds as ISO-8601 UTC; done when a record is viewed, not on the hot path."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


@dataclass(slots=True)
class DeliveryRecord:
    """One Trigger's copy of an event, and what became of it."""

    trigger: str
    subscriber: str
    url: str
    duplicate: bool = False
    attempts: int = 0
    outcome: Outcome = "pending"
    status: int | None = None
    error: str | None = None
    reply_id: str | None = None
    dead_letter_url: str | None = None
    updated_at: float = field(default_factory=time.time)

    def view(self) -> dict[str, Any]:
        view = {
            "trigger": self.trigger,
            "subscriber": self.subscriber,
            "url": self.url,
            "attempts": self.attempts,
            "outcome": self.outcome,
            "status": self.status,
            "updated_at": _stamp(self.updated_at),
        }
        if self.duplicate:
            view["duplicate"] = True
        if self.error:
            view["error"] = self.error
        if self.reply_id:
            view["reply_id"] = self.reply_id
        if self.dead_letter_url:
            view["dead_letter_url"] = self.dead_letter_url
        return view


@dataclass(slots=True)
class EventRecord:
    """An event as the broker received it, and every delivery of it."""

    id: str
    type: str
    source: str
    subject: str | None
    origin: str
    trace_id: str | None = None
    received_at: float = field(default_factory=time.time)
    deliveries: list[DeliveryRecord] = field(default_factory=list)
    seq: int = 0  # set by EventLog.add: a cursor for clients that follow the log

    def view(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "subject": self.subject,
            "origin": self.origin,
            "trace_id": self.trace_id,
            "received_at": _stamp(self.received_at),
            "deliveries": [d.view() for d in self.deliveries],
        }


class EventLog:
    def __init__(self, size: int) -> None:
        self._records: deque[EventRecord] = deque(maxlen=size)
        self._seq = 0

    def add(self, record: EventRecord) -> None:
        self._seq += 1
        record.seq = self._seq
        self._records.append(record)

    def __iter__(self) -> Iterator[EventRecord]:
        return iter(self._records)

    def query(
        self,
        *,
        type: str | None = None,
        source: str | None = None,
        id: str | None = None,
        after: int = 0,
        limit: int = 50,
    ) -> list[EventRecord]:
        """Newest first, filtered by exact type, source and id, and added after `after`."""
        found: list[EventRecord] = []
        for record in reversed(self._records):
            if record.seq <= after:
                break
            if (
                (type is None or record.type == type)
                and (source is None or record.source == source)
                and (id is None or record.id == id)
            ):
                found.append(record)
                if len(found) >= limit:
                    break
        return found


def touch(delivery: DeliveryRecord) -> None:
    delivery.updated_at = time.time()
