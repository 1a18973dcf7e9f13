"""Reading dead letters off the wire and writing them back; the item.failed mapping."""

from __future__ import annotations

import base64

import orjson
import pytest
from dead_letter.fanin import Unmappable, item_failed_data, item_failed_id
from dead_letter.wire import DeliveryError, WireEvent, read_message
from fnkit import BadEvent

pytestmark = pytest.mark.unit

BASE = {"ce-specversion": "1.0", "ce-id": "e-1", "ce-source": "/s", "ce-type": "t.v1"}


def test_binary_attributes_are_percent_decoded_and_error_extensions_split_off() -> None:
    headers = {
        **BASE,
        "ce-note": "50%25%20off%20%22today%22",
        "content-type": "text/plain",
        "ce-knativeerrordest": "http://sub/",
        "ce-knativeerrorcode": "404",
        "ce-knativeerrordata": base64.b64encode(b"no route").decode(),
    }

    event, error = read_message(headers, b"hello")

    assert event.attributes == {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/s",
        "type": "t.v1",
        "note": '50% off "today"',
        "datacontenttype": "text/plain",
    }
    assert event.data == b"hello"
    assert (error.destination, error.code, error.body()) == ("http://sub/", 404, "no route")


@pytest.mark.parametrize(
    "value", ['50% off "today"', "café ☕", "tab\there", "plain", "%41 stays %41"]
)
def test_binary_round_trip_keeps_every_attribute_value(value: str) -> None:
    event = WireEvent(
        {
            "specversion": "1.0",
            "id": "e",
            "source": "/s",
            "type": "t",
            "note": value,
            "count": 3,
            "flag": True,
            "datacontenttype": "application/json",
        },
        b'{"a":  1}',
    )

    headers, body = event.to_binary()
    again, _ = read_message(headers, body)

    assert all(32 < ord(c) < 127 for c in headers["ce-note"])  # header-safe on the wire
    assert headers["ce-count"] == "3" and headers["ce-flag"] == "true"
    assert again.attributes == {**event.attributes, "count": "3", "flag": "true"}
    assert again.data == event.data


def test_structured_data_forms() -> None:
    def read(**members: object) -> WireEvent:
        envelope = {"specversion": "1.0", "id": "e", "source": "/s", "type": "t", **members}
        headers = {"content-type": "application/cloudevents+json; charset=utf-8"}
        return read_message(headers, orjson.dumps(envelope))[0]

    assert read(data={"a": [1, 2]}).data == b'{"a":[1,2]}'
    assert read(datacontenttype="text/plain", data="héllo").data == "héllo".encode()
    assert read(datacontenttype="application/json", data="s").data == b'"s"'
    assert read(data_base64=base64.b64encode(b"\x00\xff").decode()).data == b"\x00\xff"
    assert read().data is None
    assert read(data=None).data is None


@pytest.mark.parametrize(
    ("code", "expected"),
    [("503", 503), (500, 500), ("abc", None), ("0", None), (True, None), ("99999", None)],
)
def test_error_code_as_header_string_or_json_number(code: object, expected: int | None) -> None:
    envelope = {
        "specversion": "1.0",
        "id": "e",
        "source": "/s",
        "type": "t",
        "knativeerrorcode": code,
    }
    _, error = read_message(
        {"content-type": "application/cloudevents+json"}, orjson.dumps(envelope)
    )

    assert error.code == expected


def test_error_body_decoding() -> None:
    encoded = base64.b64encode("é".encode() * 600).decode()[:1024]

    cut = DeliveryError("http://d/", 500, encoded)
    legacy = DeliveryError("http://d/", 500, "<h1>502 Bad Gateway</h1>")
    empty = DeliveryError("http://d/", 500, None)

    assert cut.truncated and cut.body() == "é" * 384
    assert not legacy.truncated and legacy.body() == "<h1>502 Bad Gateway</h1>"
    assert empty.body() is None and not empty.truncated


def test_not_a_dead_letter() -> None:
    with pytest.raises(BadEvent):
        read_message({"content-type": "application/json"}, b"{}")
    with pytest.raises(BadEvent):
        read_message({"ce-id": "1", "ce-source": "/s", "ce-type": "t"}, b"")


def test_item_failed_data_carries_job_item_and_reason() -> None:
    assert item_failed_data({"job_id": "j", "item_id": "i", "record": {}}, 503, "d1") == {
        "job_id": "j",
        "item_id": "i",
        "reason": "dead-lettered after retries: 503",
        "dead_letter_id": "d1",
    }
    assert item_failed_data({"job_id": "j", "index": 0}, None, "d2") == {
        "job_id": "j",
        "index": 0,
        "reason": "dead-lettered after retries: no response",
        "dead_letter_id": "d2",
    }
    both = item_failed_data({"job_id": "j", "item_id": "i", "index": 4}, 500, "d3")
    assert (both["item_id"], both["index"]) == ("i", 4)


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        "j",
        {"item_id": "i"},
        {"job_id": "", "item_id": "i"},
        {"job_id": "j"},
        {"job_id": "j", "index": True},
        {"job_id": 7, "index": 1},
    ],
)
def test_item_failed_data_refuses_data_naming_no_job_item(data: object) -> None:
    with pytest.raises(Unmappable):
        item_failed_data(data, 500, "d")


def test_item_failed_id_is_stable_per_event() -> None:
    assert item_failed_id("/s", "1") == item_failed_id("/s", "1")
    assert item_failed_id("/s", "1") != item_failed_id("/s", "2")


def test_structured_content_type_decides_the_mode_despite_stray_ce_headers() -> None:
    envelope = {"specversion": "1.0", "id": "e", "source": "/s", "type": "t", "data": [1]}
    headers = {"content-type": "application/cloudevents+json", "ce-id": "stray"}

    event, _ = read_message(headers, orjson.dumps(envelope))

    assert (event.id, event.data) == ("e", b"[1]")
