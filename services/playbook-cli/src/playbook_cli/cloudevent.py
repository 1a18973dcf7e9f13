"""CloudEvents over HTTP (binary and structured mode), as a client writes and reads them.

The CLI is a light client, so it encodes the HTTP binding itself rather than depending on the
function runtime: `ce-*` headers (values percent-encoded where the binding asks) and the data
as the body, or one `application/cloudevents+json` document.
"""

from __future__ import annotations

import base64
import json
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import unquote

STRUCTURED: Final = "application/cloudevents+json"
JSON: Final = "application/json"
_CONTEXT: Final = ("specversion", "id", "source", "type", "time", "subject", "datacontenttype")
_NAME: Final = re.compile(r"^[a-z0-9]{1,20}$")
# The binding's header values: printable ASCII except space, '"' and '%' go as they are.
_SAFE: Final = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "%"}


class EventError(ValueError):
    """The event cannot be built as asked (bad extension name, data that is not JSON)."""


@dataclass(frozen=True)
class Event:
    type: str
    source: str
    data: bytes | None = None
    content_type: str | None = JSON
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    subject: str | None = None
    time: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    )
    extensions: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.extensions:
            if not _NAME.match(name) or name in _CONTEXT or name == "data":
                raise EventError(
                    f"extension name {name!r}: lower-case letters and digits, at most 20, "
                    "and not a context attribute"
                )
        if self.data is not None and _is_json(self.content_type):
            try:
                json.loads(self.data)
            except ValueError as exc:
                raise EventError(
                    f"data is not JSON ({exc}); give --content-type for other data"
                ) from None

    def attributes(self) -> dict[str, str]:
        attributes = {"specversion": "1.0", "id": self.id, "source": self.source}
        attributes |= {"type": self.type, "time": self.time}
        if self.subject is not None:
            attributes["subject"] = self.subject
        if self.data is not None and self.content_type:
            attributes["datacontenttype"] = self.content_type
        return {**attributes, **self.extensions}

    def binary(self) -> tuple[dict[str, str], bytes]:
        """Headers and body of the binary mode."""
        headers = {
            f"ce-{name}": _header_value(value)
            for name, value in self.attributes().items()
            if name != "datacontenttype"
        }
        if self.data is not None and self.content_type:
            headers["content-type"] = self.content_type
        return headers, self.data or b""

    def structured(self) -> tuple[dict[str, str], bytes]:
        """Headers and body of the structured mode (one JSON document)."""
        document: dict[str, Any] = dict(self.attributes())
        if self.data is not None:
            if _is_json(self.content_type):
                document["data"] = json.loads(self.data)
            else:
                document["data_base64"] = base64.b64encode(self.data).decode()
        return {"content-type": STRUCTURED}, json.dumps(document).encode()


def new_traceparent() -> str:
    """A W3C traceparent starting a new, sampled trace."""
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def trace_id(traceparent: str | None) -> str | None:
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


@dataclass(frozen=True)
class Received:
    """An event read from an HTTP response: its attributes and decoded data."""

    attributes: dict[str, Any]
    data: Any

    def view(self) -> dict[str, Any]:
        return {**self.attributes, "data": self.data}


def read_event(headers: Mapping[str, str], body: bytes) -> Received | None:
    """The CloudEvent in a response (a reply), or None when it carries none."""
    lowered = {k.lower(): v for k, v in headers.items()}
    content_type = lowered.get("content-type", "")
    if content_type.split(";")[0].strip().lower() == STRUCTURED:
        document = json.loads(body)
        data = document.pop("data", None)
        if "data_base64" in document:
            data = base64.b64decode(document.pop("data_base64"))
            data = _decoded(data, document.get("datacontenttype"))
        return Received(document, data)
    if "ce-type" not in lowered:
        return None
    attributes: dict[str, Any] = {
        name[3:]: unquote(value) for name, value in lowered.items() if name.startswith("ce-")
    }
    if content_type:
        attributes["datacontenttype"] = content_type
    return Received(attributes, _decoded(body, content_type) if body else None)


def _decoded(data: bytes, content_type: str | None) -> Any:
    """JSON data as a value, text as a string, anything else as base64 text."""
    if _is_json(content_type):
        try:
            return json.loads(data)
        except ValueError:
            pass
    try:
        return data.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode()}


def _is_json(content_type: str | None) -> bool:
    media = (content_type or JSON).split(";")[0].strip().lower()
    return media == JSON or media.endswith("+json") or media == "text/json"


def _header_value(value: str) -> str:
    return "".join(c if c in _SAFE else _percent(c) for c in value)


def _percent(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode())
