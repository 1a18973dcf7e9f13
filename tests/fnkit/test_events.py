"""CloudEvents over HTTP: both modes in, every malformed request refused precisely, replies out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from fnkit import CloudEvent, Context, Function
from fnkit.errors import FunctionError
from fnkit.events import event_data, from_json, parse_event, to_json

from tests.fnkit.helpers import (
    Served,
    binary_event,
    serve,
    structured_event,
    trace_parts,
    unique_name,
)
from tests.fnkit.sample_functions import (
    MIRRORED,
    NOTED,
    PINGED,
    PONGED,
    SampleSettings,
    create_app,
)

pytestmark = pytest.mark.unit

MODES = ["binary", "structured"]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN}-01"


@pytest.fixture
async def served(plain_app: Function[SampleSettings]) -> AsyncIterator[Served]:
    async with serve(plain_app) as served:
        yield served


async def send(served: Served, mode: str, event_type: str, data: Any = None, **kw: Any) -> Any:
    if mode == "binary":
        return await served.binary(event_type, data, **kw)
    return await served.structured(event_type, data, **kw)


def problem(response: Any) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


# -- both modes, and the reply ------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_reply_carries_the_handlers_event_back(served: Served, mode: str) -> None:
    response = await send(served, mode, PINGED, {"n": 1, "text": "héllo"}, id="evt-1")

    assert response.status_code == 200
    assert response.headers["ce-type"] == PONGED
    assert response.headers["ce-specversion"] == "1.0"
    assert response.headers["ce-source"] == f"/knative-playbook/{served.fn.name}"
    assert response.headers["ce-subject"] == "evt-1"
    assert response.headers["ce-id"] not in ("", "evt-1")
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"echo": {"n": 1, "text": "héllo"}, "greeting": "hello"}


@pytest.mark.parametrize("mode", MODES)
async def test_reply_parses_back_as_a_cloudevent(served: Served, mode: str) -> None:
    response = await send(served, mode, PINGED, [1, 2, 3])

    reply = parse_event({k.lower(): v for k, v in response.headers.items()}, response.content)
    assert reply.get_type() == PONGED
    assert event_data(reply) == {"echo": [1, 2, 3], "greeting": "hello"}
    assert reply.get_time() is not None


@pytest.mark.parametrize("mode", MODES)
async def test_handler_without_reply_answers_204(served: Served, mode: str) -> None:
    response = await send(served, mode, NOTED, {"x": 1})

    assert response.status_code == 204
    assert response.content == b""


async def test_binary_text_data_reaches_the_handler_as_text(served: Served) -> None:
    response = await served.binary(PINGED, b"plain words", content_type="text/plain")

    assert response.status_code == 200
    assert response.json()["echo"] == "plain words"


async def test_binary_event_without_data(served: Served) -> None:
    response = await served.binary(PINGED)

    assert response.status_code == 200
    assert response.json()["echo"] is None


async def test_structured_content_type_wins_over_stray_ce_headers(served: Served) -> None:
    headers, body = structured_event(PINGED, {"n": 2}, headers={"ce-custom": "x"})

    response = await served.send(headers, body)

    assert response.status_code == 200
    assert response.json()["echo"] == {"n": 2}


async def test_handler_sees_the_request_as_it_arrived(served: Served) -> None:
    body = b'{"b": 1,   "a": 2}'

    content_type = "application/json; charset=utf-8"

    response = await served.binary(MIRRORED, body, content_type=content_type)

    assert response.json() == {"body": body.decode(), "content_type": content_type}


# -- trace context ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "carrier",
    ["binary-extension", "structured-extension", "http-header-binary", "http-header-structured"],
)
async def test_reply_continues_the_incoming_trace_with_a_new_span(
    served: Served, carrier: str
) -> None:
    if carrier == "binary-extension":
        response = await served.binary(PINGED, {}, ce_traceparent=TRACEPARENT)
    elif carrier == "structured-extension":
        response = await served.structured(PINGED, {}, traceparent=TRACEPARENT)
    elif carrier == "http-header-binary":
        response = await served.binary(PINGED, {}, traceparent=TRACEPARENT)
    else:
        response = await served.structured(PINGED, {}, headers={"traceparent": TRACEPARENT})

    trace_id, span_id = trace_parts(response.headers["ce-traceparent"])
    assert trace_id == TRACE_ID
    assert span_id != PARENT_SPAN


@pytest.mark.parametrize("traceparent", [None, "garbage", f"00-{'0' * 32}-{PARENT_SPAN}-01"])
async def test_reply_starts_a_new_trace_without_a_valid_incoming_one(
    served: Served, traceparent: str | None
) -> None:
    extra = {"ce_traceparent": traceparent} if traceparent else {}

    first = await served.binary(PINGED, {}, **extra)
    second = await served.binary(PINGED, {}, **extra)

    first_trace, _ = trace_parts(first.headers["ce-traceparent"])
    second_trace, _ = trace_parts(second.headers["ce-traceparent"])
    assert first_trace != second_trace
    assert "0" * 32 not in (first_trace, second_trace)


# -- malformed requests -------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["id", "source", "type", "specversion"])
async def test_binary_missing_required_attribute(served: Served, missing: str) -> None:
    headers, body = binary_event(PINGED, {"x": 1})
    del headers[f"ce-{missing}"]

    response = await served.send(headers, body)

    assert response.status_code == 400
    assert problem(response) == {
        "code": "bad_event",
        "message": f"binary CloudEvent is missing required attribute(s): ce-{missing}",
        "details": {"missing": [missing]},
    }


@pytest.mark.parametrize("missing", ["id", "source", "type", "specversion"])
async def test_structured_missing_required_attribute(served: Served, missing: str) -> None:
    headers, body = structured_event(PINGED, {"x": 1})
    envelope = orjson.loads(body)
    del envelope[missing]

    response = await served.send(headers, orjson.dumps(envelope))

    assert response.status_code == 400
    assert problem(response) == {
        "code": "bad_event",
        "message": f"structured CloudEvent is missing required attribute(s): {missing}",
        "details": {"missing": [missing]},
    }


async def test_binary_missing_several_attributes_names_them_all(served: Served) -> None:
    response = await served.send({"ce-type": PINGED, "content-type": "application/json"}, b"{}")

    assert response.status_code == 400
    assert problem(response)["details"] == {"missing": ["id", "source", "specversion"]}


@pytest.mark.parametrize("mode", MODES)
async def test_empty_required_attribute_counts_as_missing(served: Served, mode: str) -> None:
    response = await send(served, mode, PINGED, {}, source="")

    assert response.status_code == 400
    assert problem(response)["details"] == {"missing": ["source"]}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("version", ["0.3", "2.0"])
async def test_unsupported_specversion(served: Served, mode: str, version: str) -> None:
    if mode == "binary":
        headers, body = binary_event(PINGED, {})
        headers["ce-specversion"] = version
    else:
        headers, body = structured_event(PINGED, {}, specversion=version)

    response = await served.send(headers, body)

    assert response.status_code == 400
    assert problem(response) == {
        "code": "bad_event",
        "message": f"unsupported specversion {version!r}; supported: 1.0",
    }


async def test_structured_body_not_json(served: Served) -> None:
    response = await served.send(
        {"content-type": "application/cloudevents+json"}, b'{"specversion": "1.0", '
    )

    assert response.status_code == 400
    assert problem(response)["code"] == "bad_event"
    assert problem(response)["message"].startswith("structured CloudEvent body is not valid JSON")


async def test_structured_body_not_an_object(served: Served) -> None:
    response = await served.send({"content-type": "application/cloudevents+json"}, b"[1, 2]")

    assert response.status_code == 400
    assert problem(response)["message"] == "structured CloudEvent body must be a JSON object"


@pytest.mark.parametrize("content_type", ["application/json", "application/vnd.x+json"])
async def test_binary_json_data_not_json(served: Served, content_type: str) -> None:
    response = await served.binary(PINGED, b'{"unterminated": ', content_type=content_type)

    assert response.status_code == 400
    assert problem(response)["code"] == "bad_event"
    assert problem(response)["message"].startswith("event data is not valid JSON")


async def test_invalid_attribute_value_is_named(served: Served) -> None:
    response = await served.structured(PINGED, {}, source=17)

    assert response.status_code == 400
    assert problem(response)["code"] == "bad_event"
    assert problem(response)["message"].startswith("invalid CloudEvent attribute:")
    assert "source" in problem(response)["details"]


async def test_binary_time_not_a_timestamp(served: Served) -> None:
    response = await served.binary(PINGED, {}, ce_time="yesterday-ish")

    assert response.status_code == 400
    assert problem(response)["message"].startswith("invalid CloudEvent")


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/json", "application/xml"]
)
async def test_not_a_cloudevent_is_415(served: Served, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}

    response = await served.send(headers, b'{"hello": "world"}')

    assert response.status_code == 415
    assert problem(response)["code"] == "unsupported_media_type"
    assert problem(response)["message"].startswith("not a CloudEvent: send binary mode")
    assert repr(content_type or "") in problem(response)["message"]


async def test_batch_mode_is_415(served: Served) -> None:
    _, one = structured_event(PINGED, {})
    body = b"[" + one + b"]"

    response = await served.send({"content-type": "application/cloudevents-batch+json"}, body)

    assert response.status_code == 415
    assert problem(response) == {
        "code": "unsupported_media_type",
        "message": "batch mode (application/cloudevents-batch+json) is not supported; "
        "send one event per request",
    }


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("declared", [True, False])
async def test_body_over_the_limit_is_413(mode: str, declared: bool) -> None:
    fn = create_app(unique_name(), SampleSettings(environment="dev", max_event_bytes=1000))
    if mode == "binary":
        headers, body = binary_event(PINGED, {"blob": "x" * 2000})
    else:
        headers, body = structured_event(PINGED, {"blob": "x" * 2000})

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 300):
            yield body[start : start + 300]

    async with serve(fn) as served:
        if declared:
            response = await served.client.post("/", headers=headers, content=body)
        else:  # chunked transfer: no content-length to check up front
            response = await served.client.post("/", headers=headers, content=chunks())
        within = await served.binary(PINGED, {"blob": "x" * 100})

    assert response.status_code == 413
    assert problem(response)["code"] == "payload_too_large"
    assert "exceeds the limit of 1000" in problem(response)["message"]
    assert within.status_code == 200


@pytest.mark.parametrize("mode", MODES)
async def test_unknown_type_without_fallback_is_400_naming_the_handled_types(
    served: Served, mode: str
) -> None:
    response = await send(served, mode, "io.example.unknown.v1", {})

    assert response.status_code == 400
    message = problem(response)["message"]
    unknown = "no handler for event type 'io.example.unknown.v1'"
    assert message.startswith(f"{unknown}; {served.fn.name} handles: ")
    assert PINGED in message


async def test_unknown_type_goes_to_the_fallback() -> None:
    fn = create_app(unique_name(), SampleSettings(environment="dev"), fallback=True)

    async with serve(fn) as served:
        unknown = await served.binary("io.example.unknown.v1", {"k": "v"})
        exact = await served.binary(NOTED, {})

    assert unknown.status_code == 200
    assert unknown.json()["echo"] == {"k": "v"}
    assert exact.status_code == 204


async def test_event_source_setting_names_emitted_events() -> None:
    fn = create_app(unique_name(), SampleSettings(environment="dev", event_source="/my/source"))

    async with serve(fn) as served:
        response = await served.binary(PINGED, {})

    assert response.headers["ce-source"] == "/my/source"


async def test_malformed_event_is_logged_as_rejected(served: Served) -> None:
    await served.send({"content-type": "text/plain"}, b"hi")

    (line,) = served.logs.named("invalid event")
    assert line["level"] == "warning"
    assert line["outcome"] == "rejected"
    assert line["status"] == 415


@pytest.mark.parametrize("text", ["plain words", "123", '{"looks": "like json"}', ""])
async def test_string_data_of_a_json_event_survives_the_wire(text: str) -> None:
    fn = create_app(unique_name(), SampleSettings(environment="dev"))
    said = "io.knative-playbook.test.said.v1"

    @fn.on(said)
    async def say(event: CloudEvent, ctx: Context[SampleSettings]) -> CloudEvent:
        return ctx.event(PONGED, event_data(event)["text"])

    async with serve(fn) as served:
        response = await served.binary(said, {"text": text})

    assert response.headers["content-type"] == "application/json"
    assert orjson.loads(response.content) == text
    reply = parse_event({k.lower(): v for k, v in response.headers.items()}, response.content)
    assert event_data(reply) == text
    assert event_data(from_json(to_json(reply))) == text


def test_a_busy_database_is_a_retryable_503() -> None:
    """FerretDB's SQLITE_BUSY is transient: the broker must retry it, not drop the event."""
    from fnkit.errors import error_response
    from pymongo.errors import OperationFailure

    busy = OperationFailure("database is locked (5) (SQLITE_BUSY)", code=1)
    assert error_response(busy).status == 503
    assert error_response(busy).retryable
    assert error_response(OperationFailure("unknown operator: $foo", code=2)).status == 500


RAW_BYTES_HEADERS = {
    "ce-specversion": "1.0",
    "ce-id": "raw-1",
    "ce-source": "/tests",
    "ce-type": "io.example.raw.v1",
    # As an ASGI server hands over a header holding the UTF-8 bytes of "é" unencoded.
    "ce-note": b"caf\xc3\xa9".decode("latin-1"),
}


def test_raw_non_ascii_header_bytes_are_refused_by_default() -> None:
    with pytest.raises(FunctionError, match="ce-note hold raw non-ASCII bytes") as caught:
        parse_event(RAW_BYTES_HEADERS, b"")

    assert caught.value.status == 400


def test_a_sink_may_accept_raw_non_ascii_header_bytes() -> None:
    event = parse_event(RAW_BYTES_HEADERS, b"", raw_header_bytes=True)

    assert (event.get_id(), event.get_extension("note").encode("latin-1")) == (
        "raw-1",
        b"caf\xc3\xa9",
    )
