"""Prometheus metrics every function exposes on /metrics.

`process_resident_memory_bytes` and the other process metrics come from prometheus_client's
process collector; the `fnkit_` ones are the function contract's.
"""

from __future__ import annotations

import os
from typing import Final

from prometheus_client import Counter, Gauge, Histogram

INVOCATIONS: Final = Counter(
    "fnkit_invocations",
    "CloudEvent invocations by event type and outcome (ok, duplicate, rejected, failed).",
    ["function", "type", "outcome"],
)
DURATION: Final = Histogram(
    "fnkit_invocation_duration_seconds",
    "Time from request to response for CloudEvent invocations.",
    ["function", "type"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
IN_FLIGHT: Final = Gauge(
    "fnkit_in_flight", "CloudEvent invocations being handled right now.", ["function"]
)
STARTUP_SECONDS: Final = Gauge(
    "fnkit_startup_seconds",
    "Time from process start to ready (imports, clients and start-up hooks): the cold start.",
    ["function"],
)
COLD_STARTS: Final = Counter(
    "fnkit_cold_starts",
    "Invocations that were the first of their process (0 or 1 per process).",
    ["function"],
)
EMITTED: Final = Counter(
    "fnkit_emitted_events",
    "Events posted to K_SINK, by type and outcome (ok, failed).",
    ["function", "type", "outcome"],
)


def process_age_seconds() -> float:
    """Seconds since this process was spawned (exec), read from /proc to 10 ms.

    Measured from the kernel's start time rather than from the first import, so that
    interpreter start-up and imports count as part of the cold start.
    """
    try:
        with open("/proc/self/stat", "rb") as stat:
            start_ticks = int(stat.read().rsplit(b")", 1)[1].split()[19])
        with open("/proc/uptime", "rb") as uptime:
            uptime_seconds = float(uptime.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, uptime_seconds - start_ticks / os.sysconf("SC_CLK_TCK"))


class InvocationMetrics:
    """Label children resolved once per event type, so the hot path does no label lookups."""

    def __init__(self, function: str) -> None:
        self.function = function
        # A plain count, read when /metrics is scraped: no gauge lock twice per invocation.
        self.in_flight = 0
        IN_FLIGHT.labels(function).set_function(lambda: self.in_flight)
        self._cold_starts = COLD_STARTS.labels(function)  # exported as 0 until the first one
        self._counters: dict[tuple[str, str], Counter] = {}
        self._histograms: dict[str, Histogram] = {}
        self._first = True

    def first_invocation(self) -> bool:
        if self._first:
            self._first = False
            self._cold_starts.inc()
            return True
        return False

    def observe(self, event_type: str, outcome: str, seconds: float) -> None:
        counter = self._counters.get((event_type, outcome))
        if counter is None:
            counter = self._counters[(event_type, outcome)] = INVOCATIONS.labels(
                self.function, event_type, outcome
            )
        counter.inc()
        histogram = self._histograms.get(event_type)
        if histogram is None:
            histogram = self._histograms[event_type] = DURATION.labels(self.function, event_type)
        histogram.observe(seconds)

    def ready(self) -> float:
        age = process_age_seconds()
        STARTUP_SECONDS.labels(self.function).set(age)
        return age
