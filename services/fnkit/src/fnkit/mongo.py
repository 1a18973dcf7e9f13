"""Small MongoDB helpers every service that writes concurrently needs, on MongoDB and FerretDB."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

__all__ = ["insert_many_once", "insert_once", "is_duplicate_key", "now"]


def is_duplicate_key(exc: OperationFailure) -> bool:
    """Whether a write failed on a unique index (its `_id` or another unique key).

    MongoDB says E11000 (DuplicateKeyError); FerretDB's SQLite backend may report a duplicate
    on an update as a generic error naming the UNIQUE constraint.
    """
    return (
        isinstance(exc, DuplicateKeyError)
        or exc.code == 11000
        or "UNIQUE constraint failed" in str(exc)
    )


def _duplicate_write_error(error: dict[str, Any]) -> bool:
    return error.get("code") == 11000 or "UNIQUE constraint failed" in str(error.get("errmsg"))


def now() -> datetime:
    """The current UTC time cut to milliseconds, as BSON stores it: what a write returns
    then equals what a later read gives back."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


async def insert_once(
    collection: AsyncCollection[dict[str, Any]], doc: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    """Insert `doc`, unless a document with its `_id` exists: (the stored document, whether
    this call inserted it). The unique `_id` decides, so concurrent callers agree on one."""
    try:
        await collection.insert_one(doc)
    except OperationFailure as exc:
        if not is_duplicate_key(exc):
            raise
        earlier = await collection.find_one({"_id": doc["_id"]})
        if earlier is None:  # deleted in between: there is room again
            return await insert_once(collection, doc)
        return earlier, False
    return doc, True


async def insert_many_once(
    collection: AsyncCollection[dict[str, Any]], docs: list[dict[str, Any]]
) -> list[bool | OperationFailure]:
    """Insert `docs` in one command, each unless its `_id` (or another unique key) is taken.

    One outcome per document, in order: True where this call inserted it, False where it
    existed, or the error of a document that failed otherwise (its neighbours are still
    inserted: the command is unordered). An error of the whole command raises.
    """
    if not docs:
        return []
    try:
        await collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        outcomes: list[bool | OperationFailure] = [True] * len(docs)
        for error in exc.details.get("writeErrors", []):
            index = error["index"]
            if _duplicate_write_error(error):
                outcomes[index] = False
            else:
                outcomes[index] = OperationFailure(
                    error.get("errmsg", "write failed"), error.get("code"), error
                )
        return outcomes
    return [True] * len(docs)
