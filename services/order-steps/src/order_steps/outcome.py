"""The order's outcome, recorded once by the workflow's exit handler, and its event.

The journal decides, not the workflow's status: the order is COMPLETED once commit-inventory
succeeded (the sale stands even if the confirmation e-mail later failed; the history shows
that), FAILED otherwise, with the first rejection as the reason (or the step that kept failing
transiently until the workflow gave up) and the compensations that gave something back.

The outcome is one insert, `order_outcomes/<order>`, carrying its event in its outbox
(fnkit.outbox): `io.knative-playbook.order.completed.v1` or `...order.failed.v1`, with an id
derived from the order. The unique `_id` makes the first exit handler's decision the only one;
a repeated call answers with it and emits nothing new.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

from fnkit import CloudEvent
from fnkit.mongo import insert_once
from fnkit.mongo import now as _now
from fnkit.outbox import FIELD, OutboxRelay, entry
from pymongo.asynchronous.collection import AsyncCollection

from order_steps.journal import FAILED, REJECTED, SUCCEEDED, Journal
from order_steps.models import OutcomeIn

COLLECTION: Final = "order_outcomes"
ORDER_COMPLETED: Final = "io.knative-playbook.order.completed.v1"
ORDER_FAILED: Final = "io.knative-playbook.order.failed.v1"
COMPLETED: Final = "COMPLETED"
FAILED_STATUS: Final = "FAILED"
# Compensations in the order the saga runs them (the reverse of the steps they undo).
COMPENSATIONS: Final = ("refund-payment", "release-inventory")


class EventFactory(Protocol):
    def __call__(
        self, type: str, data: Any = None, *, subject: str | None = None, **extensions: Any
    ) -> CloudEvent: ...


def decide(entries: Sequence[Mapping[str, Any]], workflow_status: str) -> dict[str, Any]:
    """The outcome the journal (oldest first) shows: status, reason, failed step, compensations."""
    results = {e["step"]: e for e in entries if e["outcome"] in (SUCCEEDED, REJECTED)}
    commit = results.get("commit-inventory")
    if commit is not None and commit["outcome"] == SUCCEEDED:
        return {"status": COMPLETED, "reason": None, "failed_step": None, "compensations": []}
    compensations = [step for step in COMPENSATIONS if _gave_back(results.get(step))]
    rejected = [e for e in entries if e["outcome"] == REJECTED]
    if rejected:
        failed_step, reason = rejected[0]["step"], rejected[0].get("detail")
    else:
        unfinished = [e for e in entries if e["outcome"] == FAILED and e["step"] not in results]
        if unfinished:
            failed_step = unfinished[-1]["step"]
            reason = f"{failed_step} kept failing until the workflow gave up: " + str(
                unfinished[-1].get("detail")
            )
        else:
            failed_step = None
            reason = f"the workflow ended ({workflow_status}) before the order was committed"
    return {
        "status": FAILED_STATUS,
        "reason": reason,
        "failed_step": failed_step,
        "compensations": compensations,
    }


def _gave_back(record: Mapping[str, Any] | None) -> bool:
    if record is None or record["outcome"] != SUCCEEDED:
        return False
    result = record.get("result") or {}
    return bool(result.get("released") or result.get("refunded"))


class Outcomes:
    def __init__(
        self,
        collection: AsyncCollection[dict[str, Any]],
        journal: Journal,
        relay: OutboxRelay,
        new_event: EventFactory,
    ) -> None:
        self.collection = collection
        self.journal = journal
        self.relay = relay
        self._new_event = new_event

    async def record(self, outcome: OutcomeIn) -> dict[str, Any]:
        """Decide and record the order's outcome once; later calls get the same answer."""
        existing = await self.collection.find_one({"_id": outcome.order_id}, {FIELD: 0})
        if existing is not None:
            return _view(existing)
        entries = await self.journal.entries(outcome.order_id)
        decided = decide(entries, outcome.workflow_status)
        at = _now()
        event = self._event(outcome.order_id, decided, entries, at.isoformat())
        doc = {
            "_id": outcome.order_id,
            **decided,
            "workflow": outcome.workflow,
            "workflow_status": outcome.workflow_status,
            "at": at,
            FIELD: [entry(event, at)],
        }
        stored, inserted = await insert_once(self.collection, doc)
        if inserted:
            self.relay.send_soon(outcome.order_id, stored[FIELD])
        return _view(stored)

    def _event(
        self,
        order_id: str,
        decided: Mapping[str, Any],
        entries: Sequence[Mapping[str, Any]],
        at: str,
    ) -> CloudEvent:
        results = {e["step"]: e.get("result") or {} for e in entries if e["outcome"] == SUCCEEDED}
        finished_at = at.replace("+00:00", "Z")
        if decided["status"] == COMPLETED:
            priced = results.get("validate", {})
            data: dict[str, Any] = {
                "order_id": order_id,
                "status": COMPLETED,
                "total_minor": priced.get("total_minor"),
                "currency": priced.get("currency"),
                "invoice_id": results.get("create-invoice", {}).get("invoice_id"),
                "finished_at": finished_at,
            }
            event_type = ORDER_COMPLETED
        else:
            data = {"order_id": order_id, **decided, "finished_at": finished_at}
            event_type = ORDER_FAILED
        # The id is derived from the order: a re-send is a recognisable duplicate.
        return self._new_event(event_type, data, subject=order_id, id=f"{order_id}-outcome")


def _view(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "order_id": doc["_id"],
        "status": doc["status"],
        "reason": doc.get("reason"),
        "failed_step": doc.get("failed_step"),
        "compensations": doc.get("compensations", []),
        "at": doc["at"].isoformat().replace("+00:00", "Z"),
    }
