"""emit(): events posted to K_SINK (a real local HTTP server here), retried, failing clearly."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from devplane.servers import free_port
from fnkit import EmitError, FunctionSettings
from fnkit.emit import Emitter
from fnkit.events import new_event

from tests.fnkit.helpers import Sink, metric, serve, trace_parts, unique_name
from tests.fnkit.sample_functions import FORWARDED, RELAYED, SampleSettings, create_app

pytestmark = pytest.mark.unit

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


def forwarding_settings(sink: str | None, **overrides: Any) -> SampleSettings:
    values: dict[str, Any] = {
        "environment": "dev",
        "k_sink": sink,
        "emit_attempts": 3,
        "emit_backoff_seconds": 0.01,
        "emit_timeout_seconds": 5,
    }
    return SampleSettings(**{**values, **overrides})


async def forward_once(settings: SampleSettings, data: Any = None) -> tuple[Any, Any, Any]:
    """Deliver one FORWARDED event; returns (response, metrics, the function's log lines)."""
    fn = create_app(unique_name(), settings)
    async with serve(fn) as served:
        response = await served.binary(
            FORWARDED, data or {"n": 1}, id="evt-fwd", ce_traceparent=TRACEPARENT
        )
        return response, await served.metrics(), served.logs


async def test_emitted_event_reaches_the_sink_in_binary_mode(sink: Sink) -> None:
    response, _, _ = await forward_once(forwarding_settings(sink.url), {"n": 7})

    assert response.status_code == 204
    (request,) = sink.requests
    assert request.headers["ce-type"] == RELAYED
    assert request.headers["ce-subject"] == "evt-fwd"
    assert request.headers["ce-specversion"] == "1.0"
    assert request.headers["content-type"] == "application/json"
    assert orjson.loads(request.body) == {"n": 7}


async def test_emitted_event_continues_the_trace_with_a_new_span(sink: Sink) -> None:
    await forward_once(forwarding_settings(sink.url))

    trace_id, span_id = trace_parts(sink.requests[0].headers["ce-traceparent"])
    assert trace_id == TRACE_ID
    assert span_id != TRACEPARENT.split("-")[2]


@pytest.mark.parametrize("failure", [503, 500, 429, "drop"])
async def test_emit_retries_transient_failures_then_succeeds(
    sink: Sink, failure: int | str
) -> None:
    sink.script = [failure, failure]

    response, _, _ = await forward_once(forwarding_settings(sink.url))

    assert response.status_code == 204
    assert len(sink.requests) == 3
    assert len({r.headers["ce-id"] for r in sink.requests}) == 1  # the same event each time


async def test_emit_gives_up_after_its_attempts_with_a_503(sink: Sink) -> None:
    sink.script = [503, 503, 503, 503]

    response, samples, logs = await forward_once(forwarding_settings(sink.url))

    assert len(sink.requests) == 3
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "emit_failed"
    assert error["message"].startswith(f"broker did not accept {RELAYED} (id ")
    assert error["message"].endswith('after 3 attempt(s): HTTP 503: {"sink": "answer"}')
    (line,) = logs.named("invocation")
    assert (line["outcome"], line["status"]) == ("failed", 503)
    assert [r["attempt"] for r in logs.named("emit attempt failed; retrying")] == [1, 2]
    fn_name = line["function"]
    assert (
        metric(
            samples, "fnkit_emitted_events_total", function=fn_name, type=RELAYED, outcome="failed"
        )
        == 1
    )


async def test_emit_gives_up_on_connection_errors() -> None:
    nobody = f"http://127.0.0.1:{free_port()}/"

    response, _, logs = await forward_once(forwarding_settings(nobody))

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "emit_failed"
    assert "after 3 attempt(s): ConnectError" in error["message"]
    assert len(logs.named("emit attempt failed; retrying")) == 2


@pytest.mark.parametrize("status", [400, 403, 422])
async def test_emit_does_not_retry_a_refusal(sink: Sink, status: int) -> None:
    sink.script = [status]

    response, _, _ = await forward_once(forwarding_settings(sink.url))

    assert len(sink.requests) == 1
    assert response.status_code == 503
    assert f"after 1 attempt(s): HTTP {status}" in response.json()["error"]["message"]


async def test_emit_without_k_sink_fails_clearly() -> None:
    response, _, _ = await forward_once(forwarding_settings(None))

    assert response.status_code == 503
    assert response.json()["error"] == {
        "code": "emit_failed",
        "message": f"cannot emit {RELAYED}: K_SINK is not set",
    }


async def test_emit_counts_successes(sink: Sink) -> None:
    _, samples, logs = await forward_once(forwarding_settings(sink.url))

    fn_name = logs.named("invocation")[0]["function"]
    assert (
        metric(samples, "fnkit_emitted_events_total", function=fn_name, type=RELAYED, outcome="ok")
        == 1
    )


async def test_emitter_adds_a_traceparent_outside_an_invocation(sink: Sink) -> None:
    emitter = Emitter(sink.url, function=unique_name(), timeout=5, attempts=1, backoff=0)
    event = new_event("io.knative-playbook.test.cron.v1", "/tests", {"k": 1})
    try:
        await emitter.emit(event)
    finally:
        await emitter.aclose()

    trace_parts(sink.requests[0].headers["ce-traceparent"])


async def test_emitter_raises_emit_error_directly(sink: Sink) -> None:
    sink.script = [502, 502]
    emitter = Emitter(sink.url, function=unique_name(), timeout=5, attempts=2, backoff=0)
    try:
        with pytest.raises(EmitError, match=r"after 2 attempt\(s\): HTTP 502"):
            await emitter.emit(new_event("io.knative-playbook.test.cron.v1", "/tests"))
    finally:
        await emitter.aclose()
    assert len(sink.requests) == 2


def test_emit_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K_SINK", "http://broker.example/")
    monkeypatch.setenv("EMIT_ATTEMPTS", "7")

    settings = FunctionSettings()

    assert (settings.k_sink, settings.emit_attempts) == ("http://broker.example/", 7)
