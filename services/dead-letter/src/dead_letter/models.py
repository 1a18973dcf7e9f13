"""The REST API's shapes (and their OpenAPI examples), built from stored documents."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from dead_letter.service import BROKER, stored_event
from dead_letter.store import Document

_ID = "3f2a9c1e0b7d4e5f8a6b2c9d1e0f7a3b"
# Deeper JSON is shown as text: rendering it would recurse past Python's limit.
_MAX_DISPLAY_DEPTH = 64
_REPLAY_EXAMPLE: dict[str, Any] = {
    "at": "2025-05-24T10:15:00Z",
    "target": "http://devplane:8100/",
    "outcome": "delivered",
    "status": 202,
    "message": "HTTP 202",
}
_SUMMARY_EXAMPLE: dict[str, Any] = {
    "id": _ID,
    "type": "io.knative-playbook.item.requested.v1",
    "source": "/knative-playbook/bulk-jobs",
    "event_id": "0b7e9b0e-4a39-4a8e-9a53-6c55a0d1c2f1",
    "subject": None,
    "destination": "http://item-processor.playbook.svc.cluster.local/",
    "code": 503,
    "received_at": "2025-05-24T10:00:00Z",
    "last_received_at": "2025-05-24T10:00:00Z",
    "deliveries": 1,
    "replay_count": 1,
    "last_replay": _REPLAY_EXAMPLE,
    "fanin_state": "emitted",
}


class Replay(BaseModel):
    """One replay attempt, as recorded on the dead letter."""

    model_config = ConfigDict(json_schema_extra={"examples": [_REPLAY_EXAMPLE]})

    at: datetime
    target: str = Field(description="The URL the event was sent to.")
    outcome: str = Field(description="delivered, rejected (non-2xx answer) or unreachable.")
    status: int | None = Field(description="The target's HTTP status; null when it never answered.")
    message: str


class DeliveryError(BaseModel):
    """What Knative reported about the failed delivery (the knativeerror* extensions)."""

    destination: str | None = Field(description="knativeerrordest: the subscriber that failed.")
    code: int | None = Field(description="knativeerrorcode: its last HTTP status.")
    data_base64: str | None = Field(description="knativeerrordata as received (base64).")
    body: str | None = Field(description="The subscriber's response body, decoded for display.")
    truncated: bool = Field(description="Knative cut the body at 1024 base64 characters.")


class StoredEvent(BaseModel):
    """The original event, exactly as its producer sent it (what a replay sends)."""

    attributes: dict[str, str | int | bool]
    data: Any = Field(
        default=None, description="The data decoded for display: JSON, else UTF-8 text, else null."
    )
    data_base64: str | None = Field(description="The data's exact bytes.")


class FanIn(BaseModel):
    """For a dead-lettered item.requested: the item.failed sent so that the job finishes."""

    state: str = Field(description="pending (waiting for the broker), emitted, or unmappable.")
    event_id: str | None = None
    attempts: int = Field(default=0, description="Failed attempts so far.")
    last_error: str | None = None
    next_attempt_at: datetime | None = Field(
        default=None, description="While pending: when the sweep tries again."
    )
    emitted_at: datetime | None = None
    reason: str | None = Field(default=None, description="Why no item.failed could be built.")


class DeadLetterSummary(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_SUMMARY_EXAMPLE]})

    id: str = Field(description="Digest of the event's source and id and the failed destination.")
    type: str
    source: str
    event_id: str
    subject: str | None
    destination: str | None
    code: int | None
    received_at: datetime = Field(description="When it was first dead-lettered.")
    last_received_at: datetime = Field(description="When it last arrived (redeliveries too).")
    deliveries: int = Field(description="How many times it arrived here.")
    replay_count: int
    last_replay: Replay | None
    fanin_state: str | None


class DeadLetter(DeadLetterSummary):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_SUMMARY_EXAMPLE,
                    "event": {
                        "attributes": {
                            "specversion": "1.0",
                            "id": "0b7e9b0e-4a39-4a8e-9a53-6c55a0d1c2f1",
                            "source": "/knative-playbook/bulk-jobs",
                            "type": "io.knative-playbook.item.requested.v1",
                            "datacontenttype": "application/json",
                        },
                        "data": {"job_id": "j-42", "item_id": "sku-123"},
                        "data_base64": "eyJqb2JfaWQiOiJqLTQyIiwiaXRlbV9pZCI6InNrdS0xMjMifQ==",
                    },
                    "error": {
                        "destination": "http://item-processor.playbook.svc.cluster.local/",
                        "code": 503,
                        "data_base64": "eyJlcnJvciI6ImRvd24ifQ==",
                        "body": '{"error":"down"}',
                        "truncated": False,
                    },
                    "replays": [_REPLAY_EXAMPLE],
                    "fanin": {
                        "state": "emitted",
                        "event_id": "9c1b3c1e-5d0a-5b51-8f61-1f7a1b0c9e11",
                        "attempts": 1,
                        "last_error": None,
                        "emitted_at": "2025-05-24T10:00:00Z",
                    },
                }
            ]
        }
    )

    event: StoredEvent
    error: DeliveryError
    replays: list[Replay]
    fanin: FanIn | None


class Page(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [_SUMMARY_EXAMPLE], "next_cursor": "6650c0ffee0123456789abcd"}]
        }
    )

    items: list[DeadLetterSummary]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


class ReplayRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"target": "broker"},
                {"target": "destination"},
                {"target": "http://127.0.0.1:8108/"},
            ]
        },
    )

    target: str = Field(
        default=BROKER,
        max_length=2048,
        description="'broker' (K_SINK, the default), 'destination' (the subscriber that "
        "failed, from knativeerrordest) or an http(s) URL.",
    )


class ReplayResult(Replay):
    dead_letter_id: str


class PurgeResult(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"deleted": 12}]})

    deleted: int


def summary(document: Document) -> DeadLetterSummary:
    return DeadLetterSummary.model_validate(_summary_fields(document))


def detail(document: Document) -> DeadLetter:
    event = stored_event(document)
    return DeadLetter.model_validate(
        {
            **_summary_fields(document),
            "event": {
                "attributes": event.attributes,
                "data": _display(event.data, event.content_type),
                "data_base64": None
                if event.data is None
                else base64.b64encode(event.data).decode(),
            },
            "error": document.get("error")
            or {
                "destination": None,
                "code": None,
                "data_base64": None,
                "body": None,
                "truncated": False,
            },
            "replays": document.get("replays", []),
            "fanin": document.get("fanin"),
        }
    )


def _summary_fields(document: Document) -> dict[str, Any]:
    return {
        "id": str(document["_id"]),
        "type": document["type"],
        "source": document["source"],
        "event_id": document["event_id"],
        "subject": document.get("subject"),
        "destination": document.get("destination"),
        "code": document.get("code"),
        "received_at": document["received_at"],
        "last_received_at": document["last_received_at"],
        "deliveries": document.get("deliveries", 1),
        "replay_count": document.get("replay_count", 0),
        "last_replay": document.get("last_replay"),
        "fanin_state": (document.get("fanin") or {}).get("state"),
    }


def _depth(value: Any) -> int:
    """Nesting depth of a JSON value, without recursion (hostile data may nest 1000 deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
    return deepest


def _display(data: bytes | None, content_type: str | None) -> Any:
    if data is None:
        return None
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if not media_type or media_type.endswith(("/json", "+json")):
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
        else:
            if _depth(value) <= _MAX_DISPLAY_DEPTH:
                return value
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
