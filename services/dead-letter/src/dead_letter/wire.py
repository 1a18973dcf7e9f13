"""A dead letter's exact wire form: read from the request it arrived in, written back on replay.

The cloudevents SDK's reading of an event is not what the producer sent (JSON data is
re-serialised, `time` is cut to microseconds, a missing `time` is filled in), and a replay must
send the original. So the stored event is read here from the raw HTTP request:

- binary mode: every `ce-` header is an attribute (percent-decoded, as the HTTP binding says),
  `content-type` is `datacontenttype`, and the body is the data, byte for byte;
- structured mode: every member of the JSON envelope but `data`/`data_base64` is an attribute;
  `data_base64` is decoded to its exact bytes, JSON `data` is kept as the same JSON value.

Knative's three error extensions are split off: they describe the failed delivery, not the
event, and the event a replay sends is the one the producer sent.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote_from_bytes, unquote_to_bytes

import orjson
from fnkit import BadEvent

# Knative's error extensions, as its dispatcher sets them on a dead-lettered event.
ERROR_DESTINATION: Final = "knativeerrordest"  # URL of the subscriber that failed
ERROR_CODE: Final = "knativeerrorcode"  # its last HTTP status (absent when it never answered)
ERROR_DATA: Final = "knativeerrordata"  # base64 of its response body, cut to 1024 characters
ERROR_ATTRIBUTES: Final = frozenset({ERROR_DESTINATION, ERROR_CODE, ERROR_DATA})
ERROR_DATA_MAX: Final = 1024

STRUCTURED: Final = "application/cloudevents+json"
_DATA_MEMBERS: Final = frozenset({"data", "data_base64"})
# The HTTP binding percent-encodes space, '"', '%' and everything outside printable ASCII.
_HEADER_SAFE: Final = bytes(c for c in range(0x21, 0x7F) if c not in b'"%')

AttributeValue = str | int | bool


@dataclass(frozen=True, slots=True)
class WireEvent:
    """An event as its producer sent it: attributes (extensions included) and data bytes."""

    attributes: dict[str, AttributeValue]
    data: bytes | None

    @property
    def id(self) -> str:
        return str(self.attributes["id"])

    @property
    def source(self) -> str:
        return str(self.attributes["source"])

    @property
    def type(self) -> str:
        return str(self.attributes["type"])

    @property
    def subject(self) -> str | None:
        subject = self.attributes.get("subject")
        return None if subject is None else str(subject)

    @property
    def content_type(self) -> str | None:
        content_type = self.attributes.get("datacontenttype")
        return None if content_type is None else str(content_type)

    def to_binary(self) -> tuple[dict[str, str], bytes]:
        """Headers and body of this event in binary mode, the form a replay sends."""
        headers = {
            f"ce-{name}": _encode_header(_attribute_text(value))
            for name, value in self.attributes.items()
            if name != "datacontenttype"
        }
        if self.content_type is not None:
            headers["content-type"] = self.content_type
        return headers, self.data or b""


@dataclass(frozen=True, slots=True)
class DeliveryError:
    """What Knative recorded about the delivery that failed."""

    destination: str | None
    code: int | None
    data_base64: str | None

    @property
    def truncated(self) -> bool:
        """Knative cuts the encoded body at 1024 characters: a full-length one was likely cut."""
        return self.data_base64 is not None and len(self.data_base64) >= ERROR_DATA_MAX

    def body(self) -> str | None:
        """The failed subscriber's response body, decoded for display."""
        if not self.data_base64:
            return None
        try:
            raw = base64.b64decode(self.data_base64, validate=True)
        except (binascii.Error, ValueError):
            # Knative before 1.8 sent the body itself (sanitised) instead of base64.
            return self.data_base64
        return raw.decode("utf-8", errors="replace")


def read_message(headers: Mapping[str, str], body: bytes) -> tuple[WireEvent, DeliveryError]:
    """The original event and Knative's error record from a dead-letter request.

    `headers` are lower-cased names with values as the ASGI server decoded them (latin-1).
    """
    # The content type decides the mode, as in the HTTP binding (and fnkit's parser).
    if _media_type(headers.get("content-type", "")) == STRUCTURED:
        attributes, data = _structured(body)
    elif any(name.startswith("ce-") for name in headers):
        attributes, data = _binary_attributes(headers), body or None
    else:
        raise BadEvent(f"a dead letter must be a binary or {STRUCTURED} CloudEvent")
    for required in ("id", "source", "type", "specversion"):
        if not isinstance(attributes.get(required), str) or not attributes[required]:
            raise BadEvent(f"dead letter is missing the required attribute {required!r}")
    error = DeliveryError(
        destination=_optional_text(attributes.pop(ERROR_DESTINATION, None)),
        code=_status_code(attributes.pop(ERROR_CODE, None)),
        data_base64=_optional_text(attributes.pop(ERROR_DATA, None)),
    )
    return WireEvent(attributes, data), error


def _binary_attributes(headers: Mapping[str, str]) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        name[3:]: _decode_header(value) for name, value in headers.items() if name.startswith("ce-")
    }
    attributes.pop("datacontenttype", None)  # only the content-type header carries it
    if "content-type" in headers:
        attributes["datacontenttype"] = headers["content-type"]
    return attributes


def _structured(body: bytes) -> tuple[dict[str, AttributeValue], bytes | None]:
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadEvent(f"structured CloudEvent body is not valid JSON: {exc}") from None
    if not isinstance(envelope, dict):
        raise BadEvent("structured CloudEvent body must be a JSON object")
    attributes = {
        name: _attribute_value(value)
        for name, value in envelope.items()
        if name not in _DATA_MEMBERS and value is not None
    }
    if envelope.get("data_base64") is not None:
        try:
            return attributes, base64.b64decode(envelope["data_base64"], validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise BadEvent("data_base64 is not valid base64") from None
    if "data" not in envelope or envelope["data"] is None:
        return attributes, None
    data = envelope["data"]
    content_type = str(attributes.get("datacontenttype", "application/json"))
    if isinstance(data, str) and not _is_json(content_type):
        return attributes, data.encode()
    return attributes, orjson.dumps(data)


def _attribute_value(value: Any) -> AttributeValue:
    """Attributes are strings, integers or booleans; anything else is kept as its JSON text."""
    if isinstance(value, bool | int | str):
        return value
    return orjson.dumps(value).decode()


def _attribute_text(value: AttributeValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _decode_header(value: str) -> str:
    return unquote_to_bytes(value.encode("latin-1")).decode("utf-8", errors="replace")


def _encode_header(value: str) -> str:
    return quote_from_bytes(value.encode(), safe=_HEADER_SAFE)


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(content_type: str) -> bool:
    return _media_type(content_type).endswith(("/json", "+json"))


def _optional_text(value: AttributeValue | None) -> str | None:
    return None if value is None or value == "" else _attribute_text(value)


def _status_code(value: AttributeValue | None) -> int | None:
    """Knative sends the status as an integer extension: a header string, or a JSON number."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        code = int(value)
    except ValueError:
        return None
    return code if 0 < code < 1000 else None
