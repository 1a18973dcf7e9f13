"""Prometheus metrics of the event plane, beside fnkit's own on /metrics."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge

QUEUE_DEPTH: Final = Gauge(
    "devplane_queue_depth",
    "Deliveries a subscriber's queue holds: waiting, in flight or waiting to retry.",
    ["subscriber"],
)
EVENTS: Final = Counter(
    "devplane_events", "Events the broker accepted, by origin (ingress, reply).", ["origin"]
)
REJECTED: Final = Counter(
    "devplane_ingress_rejected",
    "Events refused with 503 because a subscriber's queue was full (backpressure).",
    ["subscriber"],
)
ATTEMPTS: Final = Counter(
    "devplane_delivery_attempts",
    "Delivery attempts by subscriber and result (HTTP status code, timeout or network).",
    ["subscriber", "result"],
)
DELIVERIES: Final = Counter(
    "devplane_deliveries",
    "Finished deliveries by subscriber and outcome (delivered, dead-lettered, dropped, lost).",
    ["subscriber", "outcome"],
)
CRON_RUNS: Final = Counter(
    "devplane_cron_runs", "CronJob runs by job and outcome (succeeded, failed).", ["job", "outcome"]
)
