"""Small MongoDB helpers every service that writes concurrently needs, on MongoDB and FerretDB."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, OperationFailure

__all__ = ["insert_once", "is_duplicate_key", "now"]


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
