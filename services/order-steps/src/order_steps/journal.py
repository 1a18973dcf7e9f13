"""The step journal: what makes each step idempotent per (order, step), and the order's history.

A step runs under a lock named after (order, step) (fnkit.locks.LeaseLock, a unique insert,
so it holds across replicas and on FerretDB). Under it, the journal is read: a step that has a
result answers with that result again, without running; otherwise the step runs and its
result is recorded as the document `<order>/<step>`, a unique `_id`, so a result is recorded
once whatever happens. A business rejection is a result too (422 now and on every retry); a
transient failure (503) is recorded as an attempt of its own, so the history shows each retry
and when it happened, and the workflow's retry runs the step again.

The work itself is idempotent as well (unique keys for charges, invoices, stock movements), so
that a holder that dies after the work and before the record, whose lease then runs out,
leaves nothing done twice when the step runs again.

Documents (orders-api reads them to show an order): `{_id, order_id, step, outcome:
succeeded | rejected | failed, status?, detail?, code?, result?, at}`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from fnkit import Rejected
from fnkit.errors import error_response
from fnkit.locks import LeaseLock
from fnkit.mongo import insert_once
from fnkit.mongo import now as _now
from pymongo.asynchronous.collection import AsyncCollection

log = logging.getLogger("order_steps.journal")

COLLECTION: Final = "order_journal"
SUCCEEDED: Final = "succeeded"
REJECTED: Final = "rejected"
FAILED: Final = "failed"

Work = Callable[[], Awaitable[dict[str, Any]]]


class StepRejected(Rejected):
    """A step's business rejection, as recorded: the same 422 on every call."""


@dataclass(frozen=True, slots=True)
class Record:
    """A step's recorded result."""

    step: str
    outcome: str
    result: dict[str, Any]
    detail: str | None
    code: str | None

    def answer(self) -> dict[str, Any]:
        """The step's response body; StepRejected (422) if it was rejected."""
        if self.outcome == REJECTED:
            rejected = StepRejected(self.detail or f"{self.step} was rejected", details=self.result)
            rejected.code = self.code or rejected.code
            raise rejected
        return self.result


class Journal:
    def __init__(self, collection: AsyncCollection[dict[str, Any]], locks: LeaseLock) -> None:
        self.collection = collection
        self.locks = locks

    async def create_indexes(self) -> None:
        await self.collection.create_index([("order_id", 1), ("at", 1)], name="order_at")

    async def run(self, order_id: str, step: str, status: str, work: Work) -> Record:
        """Run `work` as `step` of the order once; `status` is the order's state after it."""
        key = f"{order_id}/{step}"
        async with self.locks.hold(f"order-steps/{key}"):
            done = await self.collection.find_one({"_id": key})
            if done is not None:
                return _record(done)
            try:
                result = await work()
            except Rejected as exc:
                doc = self._doc(key, order_id, step, REJECTED, detail=exc.message)
                doc["code"] = exc.code
                doc["result"] = exc.details if isinstance(exc.details, dict) else {}
            except Exception as exc:
                if error_response(exc).status >= 500:
                    await self._failed_attempt(order_id, step, exc)
                raise
            else:
                doc = self._doc(key, order_id, step, SUCCEEDED, status=status, result=result)
            # A holder whose lease ran out may have recorded it meanwhile: its record stands.
            stored, _ = await insert_once(self.collection, doc)
            return _record(stored)

    async def entries(self, order_id: str) -> list[dict[str, Any]]:
        """The order's journal, oldest first."""
        return await self.collection.find({"order_id": order_id}).sort("at", 1).to_list()

    async def _failed_attempt(self, order_id: str, step: str, exc: Exception) -> None:
        problem = error_response(exc)
        doc = self._doc(
            f"{order_id}/{step}/failed/{uuid.uuid4().hex}",
            order_id,
            step,
            FAILED,
            detail=f"{problem.message} ({problem.status})",
        )
        try:
            await self.collection.insert_one(doc)
        except Exception as record_exc:
            # History is for people; the step's own answer (a 503) must not change because of it.
            log.warning(
                "could not record a failed attempt",
                extra={"order_id": order_id, "step": step, "error": str(record_exc)},
            )

    @staticmethod
    def _doc(
        key: str,
        order_id: str,
        step: str,
        outcome: str,
        *,
        status: str | None = None,
        detail: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "_id": key,
            "order_id": order_id,
            "step": step,
            "outcome": outcome,
            "at": _now(),
        }
        if status is not None:
            doc["status"] = status
        if detail is not None:
            doc["detail"] = detail
        if result is not None:
            doc["result"] = result
        return doc


def _record(doc: dict[str, Any]) -> Record:
    return Record(
        doc["step"], doc["outcome"], doc.get("result") or {}, doc.get("detail"), doc.get("code")
    )
