"""Prometheus metrics every function exposes on /metrics.

`process_resident_memory_bytes` and the other process metrics come from prometheus_client's
process collector; the `fnkit_` ones are the function contract's.

The two that move on every invocation (invocations, duration) are counted in plain Python and
read by a collector when /metrics is scraped: prometheus_client's Counter and Histogram take
a lock per update and walk the buckets in Python, several times the cost of counting.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate
from typing import Final

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

# Seconds: from sub-millisecond echo-like work to the 30 s delivery timeout.
# fmt: off
BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30
)
# fmt: on
_LE: Final = tuple(repr(float(bound)) for bound in BUCKETS)  # as prometheus_client writes them

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


class _Durations:
    """One event type's duration histogram: a count per bucket (the last is +Inf), their sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0


class InvocationMetrics:
    """One function's invocation metrics; `observe` is all an invocation pays."""

    def __init__(self, function: str) -> None:
        self.function = function
        self.invocations: dict[tuple[str, str], int] = {}
        self.durations: dict[str, _Durations] = {}
        _COLLECTED.append(self)
        # A plain count, read when /metrics is scraped: no gauge lock twice per invocation.
        self.in_flight = 0
        IN_FLIGHT.labels(function).set_function(lambda: self.in_flight)
        self._cold_starts = COLD_STARTS.labels(function)  # exported as 0 until the first one
        self._first = True

    def first_invocation(self) -> bool:
        if self._first:
            self._first = False
            self._cold_starts.inc()
            return True
        return False

    def observe(self, event_type: str, outcome: str, seconds: float) -> None:
        key = (event_type, outcome)
        self.invocations[key] = self.invocations.get(key, 0) + 1
        durations = self.durations.get(event_type)
        if durations is None:
            durations = self.durations[event_type] = _Durations()
        durations.counts[bisect_left(BUCKETS, seconds)] += 1  # "le": a bound is inclusive
        durations.total += seconds

    def ready(self) -> float:
        age = process_age_seconds()
        STARTUP_SECONDS.labels(self.function).set(age)
        return age


_COLLECTED: list[InvocationMetrics] = []


class _InvocationCollector(Collector):
    """Exports every InvocationMetrics as `fnkit_invocations` and its duration histogram."""

    def collect(self) -> Iterator[Metric]:
        invocations = CounterMetricFamily(
            "fnkit_invocations",
            "CloudEvent invocations by event type and outcome (ok, duplicate, rejected, failed).",
            labels=["function", "type", "outcome"],
        )
        durations = HistogramMetricFamily(
            "fnkit_invocation_duration_seconds",
            "Time from request to response for CloudEvent invocations.",
            labels=["function", "type"],
        )
        # Summed by label set: two apps of the same name in one process (tests) share series.
        counts: dict[tuple[str, str, str], int] = {}
        histograms: dict[tuple[str, str], tuple[list[int], float]] = {}
        for metrics in list(_COLLECTED):
            for (event_type, outcome), count in list(metrics.invocations.items()):
                key = (metrics.function, event_type, outcome)
                counts[key] = counts.get(key, 0) + count
            for event_type, observed in list(metrics.durations.items()):
                buckets, total = histograms.get(
                    (metrics.function, event_type), ([0] * (len(BUCKETS) + 1), 0.0)
                )
                merged = [a + b for a, b in zip(buckets, observed.counts, strict=True)]
                histograms[(metrics.function, event_type)] = (merged, total + observed.total)
        for labels, count in counts.items():
            invocations.add_metric(list(labels), count)
        for series, (buckets, total) in histograms.items():
            cumulative = list(accumulate(buckets))
            pairs = list(zip(_LE, cumulative, strict=False))
            durations.add_metric(list(series), [*pairs, ("+Inf", cumulative[-1])], total)
        yield invocations
        yield durations


REGISTRY.register(_InvocationCollector())
