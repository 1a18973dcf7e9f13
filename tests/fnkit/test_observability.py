"""Metrics on /metrics and one JSON log line per invocation, in-process."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fnkit import CloudEvent, Context, Function

from tests.fnkit.helpers import metric, serve, unique_name
from tests.fnkit.sample_functions import (
    CRASHED,
    NOTED,
    PINGED,
    REFUSED,
    VALIDATED,
    SampleSettings,
)

pytestmark = pytest.mark.unit

TRACE_ID = "5c4d3b2a19081726354453627180a9b8"


async def test_invocation_metrics_move_by_type_and_outcome(
    plain_app: Function[SampleSettings],
) -> None:
    name = plain_app.name
    async with serve(plain_app) as served:
        before = await served.metrics()
        await served.binary(PINGED, {})
        await served.structured(PINGED, {})
        await served.binary(NOTED, {})
        await served.binary(REFUSED, {})
        await served.binary(CRASHED, {})
        await served.binary("io.example.unknown.v1", {})
        await served.send({"content-type": "text/plain"}, b"not an event")
        after = await served.metrics()

    def invocations(samples: dict[Any, float], event_type: str, outcome: str) -> float | None:
        return metric(
            samples, "fnkit_invocations_total", function=name, type=event_type, outcome=outcome
        )

    assert invocations(before, PINGED, "ok") is None
    assert invocations(after, PINGED, "ok") == 2
    assert invocations(after, NOTED, "ok") == 1
    assert invocations(after, REFUSED, "rejected") == 1
    assert invocations(after, CRASHED, "failed") == 1
    # Unknown types share one label, so a sender cannot blow up the series count.
    assert invocations(after, "unhandled", "rejected") == 1
    assert invocations(after, "invalid", "rejected") == 1
    duration_count = metric(
        after, "fnkit_invocation_duration_seconds_count", function=name, type=PINGED
    )
    duration_sum = metric(
        after, "fnkit_invocation_duration_seconds_sum", function=name, type=PINGED
    )
    assert duration_count == 2
    assert duration_sum is not None and duration_sum > 0
    assert (
        metric(
            after, "fnkit_invocation_duration_seconds_bucket", function=name, type=PINGED, le="+Inf"
        )
        == 2
    )


async def test_cold_start_counter_goes_to_one_and_stays(
    plain_app: Function[SampleSettings],
) -> None:
    name = plain_app.name
    async with serve(plain_app) as served:
        before = await served.metrics()
        await served.binary(PINGED, {})
        once = await served.metrics()
        await served.binary(PINGED, {})
        await served.binary(NOTED, {})
        later = await served.metrics()
        lines = served.logs.named("invocation")

    assert metric(before, "fnkit_cold_starts_total", function=name) == 0
    assert metric(once, "fnkit_cold_starts_total", function=name) == 1
    assert metric(later, "fnkit_cold_starts_total", function=name) == 1
    assert [line.get("cold_start", False) for line in lines] == [True, False, False]


async def test_startup_rss_and_in_flight_are_exported() -> None:
    fn: Function[SampleSettings] = Function(
        unique_name(), settings_class=SampleSettings, settings=SampleSettings(environment="dev")
    )
    held = "io.knative-playbook.test.held.v1"
    entered, gate = asyncio.Event(), asyncio.Event()

    @fn.on(held)
    async def hold(event: CloudEvent, ctx: Context[SampleSettings]) -> None:
        entered.set()
        await gate.wait()

    async with serve(fn) as served:
        idle = await served.metrics()
        task = asyncio.create_task(served.binary(held, {}))
        await entered.wait()
        busy = await served.metrics()
        gate.set()
        await task
        done = await served.metrics()

    startup = metric(idle, "fnkit_startup_seconds", function=fn.name)
    assert startup is not None and startup > 0
    rss = metric(idle, "process_resident_memory_bytes")
    assert rss is not None and rss > 1_000_000
    assert metric(idle, "fnkit_in_flight", function=fn.name) == 0
    assert metric(busy, "fnkit_in_flight", function=fn.name) == 1
    assert metric(done, "fnkit_in_flight", function=fn.name) == 0


async def test_metrics_endpoint_speaks_prometheus_text(plain_app: Function[SampleSettings]) -> None:
    async with serve(plain_app) as served:
        response = await served.client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert "# TYPE fnkit_invocations_total counter" in response.text


async def test_one_json_line_per_invocation(plain_app: Function[SampleSettings]) -> None:
    async with serve(plain_app) as served:
        await served.binary(
            PINGED,
            {},
            id="evt-log",
            source="/log/test",
            ce_traceparent=f"00-{TRACE_ID}-1111111111111111-01",
        )
        await served.binary(REFUSED, {}, id="evt-refused")
        await served.binary(CRASHED, {}, id="evt-crashed")
        await served.binary(VALIDATED, {"sku": "A"}, id="evt-invalid")
        lines = served.logs.named("invocation")
        crash_lines = served.logs.named("handler crashed")

    assert [line["event_id"] for line in lines] == [
        "evt-log",
        "evt-refused",
        "evt-crashed",
        "evt-invalid",
    ]
    ok, refused, crashed, invalid = lines
    assert ok["type"] == PINGED
    assert ok["source"] == "/log/test"
    assert ok["outcome"] == "ok"
    assert ok["status"] == 200
    assert ok["trace_id"] == TRACE_ID
    assert isinstance(ok["duration_ms"], float) and ok["duration_ms"] > 0
    assert ok["function"] == plain_app.name
    assert ok["level"] == "info"
    assert "error" not in ok
    assert (refused["outcome"], refused["status"], refused["level"]) == ("rejected", 422, "info")
    assert refused["error"] == "this event can never be accepted"
    assert (crashed["outcome"], crashed["status"], crashed["level"]) == ("failed", 500, "warning")
    assert len(refused["trace_id"]) == 32 and refused["trace_id"] != TRACE_ID
    assert (invalid["outcome"], invalid["status"]) == ("rejected", 422)
    (crash,) = crash_lines
    assert crash["level"] == "error"
    assert "RuntimeError: the handler has a bug" in crash["exception"]


async def test_handler_errors_map_to_the_contract(plain_app: Function[SampleSettings]) -> None:
    async with serve(plain_app) as served:
        refused = await served.binary(REFUSED, {}, id="evt-r")
        crashed = await served.binary(CRASHED, {})
        invalid = await served.binary(VALIDATED, {"sku": "A", "quantity": "lots"})

    assert refused.status_code == 422
    assert refused.json()["error"] == {
        "code": "rejected",
        "message": "this event can never be accepted",
        "details": {"id": "evt-r"},
    }
    assert crashed.status_code == 500
    assert crashed.json()["error"] == {
        "code": "internal_error",
        "message": "internal error; see the function's log",
    }
    assert invalid.status_code == 422
    error = invalid.json()["error"]
    assert (error["code"], error["message"]) == ("invalid_data", "event data failed validation")
    assert error["details"] == [
        {
            "loc": ["quantity"],
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "type": "int_parsing",
        }
    ]
