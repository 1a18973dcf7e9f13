"""Prometheus metrics of the dead-letter service (beside fnkit's own)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge

STORED: Final = Counter(
    "dead_letter_stored",
    "Dead letters stored, by event type (redeliveries of a stored one are not counted).",
    ["type"],
)
REDELIVERED: Final = Counter(
    "dead_letter_redelivered", "Dead letters that arrived again and were already stored."
)
REPLAYS: Final = Counter(
    "dead_letter_replays",
    "Replays by outcome: delivered, rejected (the target answered non-2xx), unreachable.",
    ["outcome"],
)
CURRENT: Final = Gauge(
    "dead_letters_current", "Dead letters stored right now (refreshed at every sweep)."
)

OTHER_TYPE: Final = "other"


class TypeLabels:
    """Event types as metric labels, bounded: invented types must not flood /metrics."""

    def __init__(self, limit: int = 200) -> None:
        self.limit = limit
        self._seen: set[str] = set()

    def __call__(self, event_type: str) -> str:
        if event_type in self._seen:
            return event_type
        if len(self._seen) >= self.limit or len(event_type) > 200:
            return OTHER_TYPE
        self._seen.add(event_type)
        return event_type
