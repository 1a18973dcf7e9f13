"""Fan-in support: a dead-lettered `item.requested` still counts, as a failed item.

Without this, a bulk job whose item could not be processed after every retry would wait for
that item forever. The dead-letter sink answers for the lost item with the same
`item.failed` event a processor sends for an invalid record, so the job aggregator counts it
and the job finishes.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

ITEM_REQUESTED: Final = "io.knative-playbook.item.requested.v1"
ITEM_FAILED: Final = "io.knative-playbook.item.failed.v1"

_ITEM_KEYS: Final = ("item_id", "index")


class Unmappable(ValueError):
    """The dead-lettered event's data does not name a job and an item."""


def item_failed_data(requested: Any, code: int | None, dead_letter_id: str) -> dict[str, Any]:
    """The `item.failed` data answering for a dead-lettered `item.requested`.

    The one place that knows `item.requested`'s data shape, assumed to be
    `{"job_id": str, "item_id": str, ...}` or `{"job_id": str, "index": int, ...}`: `job_id`
    and whichever of `item_id`/`index` are present are passed on, with the reason and the
    dead letter's id. Raises Unmappable when the data names no job or no item.
    """
    if not isinstance(requested, dict):
        raise Unmappable("item.requested data is not a JSON object")
    job_id = requested.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        raise Unmappable("item.requested data has no string job_id")
    item = {
        key: requested[key]
        for key in _ITEM_KEYS
        if isinstance(requested.get(key), str | int) and not isinstance(requested[key], bool)
    }
    if not item:
        raise Unmappable("item.requested data has neither item_id nor index")
    reason = f"dead-lettered after retries: {code if code is not None else 'no response'}"
    return {"job_id": job_id, **item, "reason": reason, "dead_letter_id": dead_letter_id}


def item_failed_id(source: str, event_id: str) -> str:
    """One id per dead-lettered event, so every emission of its item.failed is the same event."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"dead-letter:{source}\x1f{event_id}"))
