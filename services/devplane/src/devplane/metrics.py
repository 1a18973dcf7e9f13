"""Prometheus metrics of the event plane, beside fnkit's own on /metrics.

The per-delivery counts are plain integers kept by the broker and read at scrape time by a
collector: the hot path then takes no lock and looks up no labels.
"""

from __future__ import annotations

import weakref
from collections import Counter as Tally
from collections.abc import Iterator
from typing import Final, Protocol

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

REJECTED: Final = Counter(
    "devplane_ingress_rejected",
    "Events refused with 503, or replies made to wait, because a subscriber's queue was full "
    "(backpressure).",
    ["subscriber"],
)
CRON_RUNS: Final = Counter(
    "devplane_cron_runs", "CronJob runs by job and outcome (succeeded, failed).", ["job", "outcome"]
)


class LaneCounts(Protocol):
    subscriber: str
    held: int
    attempts: Tally[str]
    outcomes: Tally[str]


class Counted(Protocol):
    events: Tally[str]

    def lane_counts(self) -> Iterator[LaneCounts]: ...


_sources: weakref.WeakSet[Counted] = weakref.WeakSet()


def watch(broker: Counted) -> None:
    """Export `broker`'s counts on /metrics for as long as it lives."""
    _sources.add(broker)


class _BrokerCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "devplane_queue_depth",
            "Deliveries a subscriber's queue holds: waiting, in flight or waiting to retry.",
            labels=["subscriber"],
        )
        attempts = CounterMetricFamily(
            "devplane_delivery_attempts",
            "Delivery attempts by subscriber and result (HTTP status code, timeout or network).",
            labels=["subscriber", "result"],
        )
        deliveries = CounterMetricFamily(
            "devplane_deliveries",
            "Finished deliveries by subscriber and outcome (delivered, dead-lettered, dropped, "
            "lost).",
            labels=["subscriber", "outcome"],
        )
        events = CounterMetricFamily(
            "devplane_events",
            "Events the broker accepted, by origin (ingress, reply).",
            labels=["origin"],
        )
        for broker in list(_sources):
            for origin, count in broker.events.items():
                events.add_metric([origin], count)
            for lane in broker.lane_counts():
                depth.add_metric([lane.subscriber], lane.held)
                for result, count in lane.attempts.items():
                    attempts.add_metric([lane.subscriber, result], count)
                for outcome, count in lane.outcomes.items():
                    deliveries.add_metric([lane.subscriber, outcome], count)
        yield from (depth, attempts, deliveries, events)


REGISTRY.register(_BrokerCollector())
