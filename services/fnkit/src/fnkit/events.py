"""CloudEvents at the HTTP boundary: parse requests, build and encode events.

Parsing is done by the `cloudevents` SDK; this module only decides which of its parsers
applies and turns every way a request can fail to be a CloudEvent into a precise 400 or 415,
checking first what the SDK would otherwise fill in silently (it invents an `id` when one is
missing).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final, NamedTuple
from urllib.parse import quote, unquote

import orjson
from cloudevents.core.bindings.http import HTTPMessage, from_structured
from cloudevents.core.exceptions import BaseCloudEventException, CloudEventValidationError
from cloudevents.core.formats import json as _sdk_json
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from dateutil.parser import isoparse

from fnkit.errors import BadEvent, UnsupportedMediaType

__all__ = [
    "CloudEvent",
    "EncodedEvent",
    "ReceivedMessage",
    "encode_binary",
    "event_data",
    "from_json",
    "new_event",
    "parse_event",
    "received_message",
    "to_json",
]

REQUIRED: Final = ("id", "source", "type", "specversion")
SUPPORTED_SPECVERSIONS: Final = ("1.0",)
STRUCTURED: Final = "application/cloudevents+json"
BATCH: Final = "application/cloudevents-batch+json"
JSON: Final = "application/json"

EncodedEvent = tuple[list[tuple[bytes, bytes]], bytes]


@lru_cache(maxsize=256)  # content types repeat from event to event
def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == JSON or (
        media_type.startswith(("application/", "text/")) and media_type.endswith(("+json", "/json"))
    )


@lru_cache(maxsize=256)  # every event asks it, of the handful of content types senders use
def _is_json_type(content_type: str) -> bool:
    return _is_json(_media_type(content_type))


class _JSONFormat(JSONFormat):
    """The SDK's JSON format with event data read and written by orjson, several times faster.

    Reading also refuses data that claims to be JSON and is not, instead of silently keeping
    it as a string as the SDK would.
    """

    def read_data(self, body: bytes, datacontenttype: str | None) -> Any:
        if body and _is_json_type(datacontenttype or JSON):
            try:
                return orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise BadEvent(f"event data is not valid JSON: {exc}") from None
        return super().read_data(body, datacontenttype)

    def write_data(self, data: Any, datacontenttype: str | None) -> bytes:
        if isinstance(data, bytearray):
            data = bytes(data)
        if data is None or isinstance(data, bytes):
            return super().write_data(data, datacontenttype)
        if isinstance(data, str) and not _is_json_type(datacontenttype or JSON):
            return data.encode()
        # Lists, numbers and strings too: the SDK would write their Python repr, or a string
        # bare, so that JSON data "123" would come back as the number 123 (bytes stay raw).
        return orjson.dumps(data, option=orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS)


_FORMAT: Final = _JSONFormat()


def _parse_time(value: str) -> datetime:
    """RFC 3339 through the stdlib's C parser; whatever it refuses through dateutil."""
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        parsed: datetime = isoparse(value)
        return parsed


# The SDK's JSON format reads `time` with dateutil's pure-Python isoparse, the largest single
# cost of parsing an event. CloudEvents timestamps are RFC 3339, for which
# datetime.fromisoformat returns the same datetime some 50 times faster; anything it refuses
# still goes to dateutil. (Binary mode is read by _from_binary, with the same function.)
_sdk_json.isoparse = _parse_time  # type: ignore[attr-defined]


def _check_attributes(present: Mapping[str, Any], mode: str) -> None:
    missing = [name for name in REQUIRED if not present.get(name)]
    if missing:
        where = "ce-" + ", ce-".join(missing) if mode == "binary" else ", ".join(missing)
        raise BadEvent(
            f"{mode} CloudEvent is missing required attribute(s): {where}",
            details={"missing": missing},
        )
    specversion = present["specversion"]
    if specversion not in SUPPORTED_SPECVERSIONS:
        supported = ", ".join(SUPPORTED_SPECVERSIONS)
        raise BadEvent(f"unsupported specversion {specversion!r}; supported: {supported}")


# Attribute names whose every combination the SDK has accepted with plain values (see _plain).
_VALID_SHAPES: set[tuple[str, ...]] = set()
_MAX_SHAPES: Final = 512  # a sender inventing extension names must not grow this without end


def _plain(attributes: Mapping[str, Any]) -> bool:
    """Whether the SDK's verdict on these attributes can depend on their names alone.

    The SDK checks that id, source, type, subject, datacontenttype and dataschema are
    non-empty strings, specversion is "1.0", time an aware datetime, and that extension names
    are lowercase alphanumerics other than "data"; it does not look at extension values. With
    every checked value of the accepted kind, only the names are left to decide.
    """
    if attributes.get("specversion") != "1.0":
        return False
    for name in ("id", "source", "type"):
        value = attributes.get(name)
        if type(value) is not str or not value:
            return False
    for name in ("subject", "datacontenttype", "dataschema"):
        if name in attributes:
            value = attributes[name]
            if type(value) is not str or not value:
                return False
    if "time" in attributes:
        time = attributes["time"]
        if not isinstance(time, datetime) or not time.tzinfo:
            return False
    return True


def _event(attributes: dict[str, Any], data: Any) -> CloudEvent:
    """`CloudEvent(attributes, data)`, validated by the SDK once per shape of attributes.

    The SDK's validation (several dicts, a regular expression per extension) costs more than
    the rest of reading an event. Its verdict on attributes with plain values (see `_plain`)
    depends on their names alone, so a set of names it has accepted once is not sent to it
    again; anything else is, every time. An event-factory for the SDK's bindings and formats.
    """
    names, plain = tuple(attributes), _plain(attributes)
    if not plain or names not in _VALID_SHAPES:
        event = CloudEvent(attributes, data)  # validates, and fills in a missing id or time
        if plain and len(_VALID_SHAPES) < _MAX_SHAPES:
            _VALID_SHAPES.add(names)
        return event
    if "time" not in attributes:  # as CloudEvent.__init__ does
        attributes["time"] = datetime.now(UTC)
    event = CloudEvent.__new__(CloudEvent)
    event._attributes = attributes
    event._data = data
    return event


def _sdk_error(exc: Exception) -> BadEvent:
    if isinstance(exc, CloudEventValidationError):
        problems = {name: [str(e) for e in errors] for name, errors in exc.errors.items()}
        first = next(iter(problems.values()))[0]
        return BadEvent(f"invalid CloudEvent attribute: {first}", details=problems)
    return BadEvent(f"invalid CloudEvent: {exc}")


def parse_event(
    headers: Mapping[str, str], body: bytes, *, raw_header_bytes: bool = False
) -> CloudEvent:
    """Parse an HTTP request (lower-cased header names) into a CloudEvent, or raise why not.

    `raw_header_bytes=True` accepts ce- header values holding raw non-ASCII bytes (they are
    left as the ASGI server decoded them, latin-1); only a sink that must keep whatever it is
    sent, such as the dead-letter sink, wants that.
    """
    content_type = headers.get("content-type", "")
    media_type = _media_type(content_type)
    if media_type == BATCH:
        raise UnsupportedMediaType(
            "batch mode (application/cloudevents-batch+json) is not supported; "
            "send one event per request"
        )
    # The content type decides the mode (CloudEvents HTTP binding): a structured request that
    # also carries ce- headers is still structured.
    if media_type == STRUCTURED:
        return _parse_structured(headers, body)
    attributes = {name[3:]: value for name, value in headers.items() if name.startswith("ce-")}
    if not attributes:
        raise UnsupportedMediaType(
            "not a CloudEvent: send binary mode (ce-id, ce-source, ce-type, ce-specversion "
            f"headers) or structured mode ({STRUCTURED}); got content-type {content_type!r}"
        )
    _check_attributes(attributes, "binary")
    # The binding percent-encodes anything outside printable ASCII; raw bytes (read here as
    # latin-1) would otherwise become attribute values no sender meant.
    if not raw_header_bytes and not all(map(str.isascii, attributes.values())):
        raw = [f"ce-{name}" for name, value in attributes.items() if not value.isascii()]
        raise BadEvent(
            f"header(s) {', '.join(raw)} hold raw non-ASCII bytes; CloudEvents attributes in "
            "headers must be percent-encoded UTF-8"
        )
    try:
        return _from_binary(attributes, content_type, body)
    except (BaseCloudEventException, ValueError, TypeError) as exc:
        raise _sdk_error(exc) from None


def _from_binary(attributes: dict[str, Any], content_type: str, body: bytes) -> CloudEvent:
    """What the SDK's `from_binary` makes of these ce- headers (prefix cut) and content type.

    The same decoding, without building the message it would walk: header values
    percent-decoded, `time` parsed, the content type as `datacontenttype`, data read by the
    format; tests/fnkit/test_fast_paths.py holds the two side by side.
    """
    for name, value in attributes.items():
        if "%" in value:
            attributes[name] = unquote(value)
    if "time" in attributes:
        attributes["time"] = _parse_time(attributes["time"])
    if content_type:
        attributes["datacontenttype"] = content_type
    return _event(attributes, _FORMAT.read_data(body, attributes.get("datacontenttype")))


def _parse_structured(headers: Mapping[str, str], body: bytes) -> CloudEvent:
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadEvent(f"structured CloudEvent body is not valid JSON: {exc}") from None
    if not isinstance(envelope, dict):
        raise BadEvent("structured CloudEvent body must be a JSON object")
    _check_attributes(envelope, "structured")
    try:
        event = from_structured(HTTPMessage(headers=dict(headers), body=body), _FORMAT, _event)
    except (BaseCloudEventException, ValueError, TypeError) as exc:
        raise _sdk_error(exc) from None
    return event  # type: ignore[return-value]


class ReceivedMessage(NamedTuple):
    """The HTTP request an event arrived in: lower-cased header names and the raw body.

    A named tuple: every invocation makes one, and a frozen dataclass costs several times more.
    """

    headers: Mapping[str, str]
    body: bytes


current_message: ContextVar[ReceivedMessage | None] = ContextVar(
    "fnkit_current_message", default=None
)


def received_message() -> ReceivedMessage:
    """The request of the event being handled, exactly as it arrived.

    For handlers that must keep an event's wire form (a dead-letter store, an audit log): the
    SDK's CloudEvent is a normalised reading of it (JSON data re-serialised, `time` cut to
    microseconds, and a `time` filled in when the event had none).
    """
    message = current_message.get()
    if message is None:
        raise RuntimeError("received_message() is only available while handling an event")
    return message


def new_event(
    type: str,
    source: str,
    data: Any = None,
    *,
    subject: str | None = None,
    id: str | None = None,
    **extensions: Any,
) -> CloudEvent:
    """A CloudEvent with JSON data, a fresh id and the current time."""
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": id or _uuid4(),
        "source": source,
        "type": type,
        "time": datetime.now(UTC),
        "datacontenttype": JSON,
    }
    if subject is not None:
        attributes["subject"] = subject
    for name, value in extensions.items():
        if value is not None:
            attributes[name] = value
    return _event(attributes, data)


def _uuid4() -> str:
    """A random (version 4) UUID string, without building a uuid.UUID on the hot path."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def event_data(event: CloudEvent) -> Any:
    """The event's data; JSON bytes decoded (a str is JSON's string value, kept as it is)."""
    data = event.get_data()
    if isinstance(data, bytes) and _is_json_type(event.get_datacontenttype() or ""):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            return data
    return data


# What the CloudEvents HTTP binding percent-encodes in a header value (the SDK's rule).
_CE_SAFE: Final = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in ' "%')
_NEEDS_QUOTING: Final = re.compile(r'[^\x21-\x7e]|["%]')


def _header_value(value: Any) -> str:
    if isinstance(value, datetime):  # digits, "-:.T+Z": nothing to quote
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    text = value if isinstance(value, str) else str(value)
    return quote(text, safe=_CE_SAFE) if _NEEDS_QUOTING.search(text) else text


_HEADER_NAMES: dict[str, bytes] = {}  # attribute name -> header name; a few dozen at most
# Attributes that keep their values from event to event (a function emits a handful of types
# from one source): their header pairs are encoded once.
_STABLE: Final = frozenset({"specversion", "type", "source", "datacontenttype", "dataschema"})
_STABLE_PAIRS: dict[tuple[str, str], tuple[bytes, bytes]] = {}
_MAX_CACHED: Final = 1024


def _header(name: str, value: Any) -> tuple[bytes, bytes]:
    if name == "datacontenttype":
        return b"content-type", str(value).encode()
    header = _HEADER_NAMES.get(name)
    if header is None:
        header = b"ce-" + name.encode()
        if len(_HEADER_NAMES) < _MAX_CACHED:
            _HEADER_NAMES[name] = header
    return header, _header_value(value).encode()


def encode_binary(event: CloudEvent) -> EncodedEvent:
    """The event in binary mode, as ASGI-ready header pairs and a body.

    The same headers and body as the SDK's `to_binary`, which quotes every value in Python
    even when, as almost always, there is nothing to quote.
    """
    attributes = event.get_attributes()
    headers = []
    for name, value in attributes.items():
        if type(value) is str:
            if name in _STABLE:
                pair = _STABLE_PAIRS.get((name, value))
                if pair is None:
                    pair = _header(name, value)
                    if len(_STABLE_PAIRS) < _MAX_CACHED:
                        _STABLE_PAIRS[name, value] = pair
            else:  # _header, inlined: this is most attributes of most events
                header = _HEADER_NAMES.get(name) or _header(name, value)[0]
                if _NEEDS_QUOTING.search(value):
                    value = quote(value, safe=_CE_SAFE)
                pair = header, value.encode()
            headers.append(pair)
        elif value is not None:
            headers.append(_header(name, value))
    body = _FORMAT.write_data(event.get_data(), attributes.get("datacontenttype"))
    return headers, body


def to_json(event: CloudEvent) -> bytes:
    """The event in structured JSON form, for storing it."""
    return _FORMAT.write(event)


def from_json(document: bytes) -> CloudEvent:
    """An event stored with `to_json`."""
    return _FORMAT.read(_event, document)  # type: ignore[return-value]
