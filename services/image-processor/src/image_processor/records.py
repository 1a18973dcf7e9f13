"""The `images` collection: one document per (bucket, key, ETag), processed or rejected.

The cleanup job reads it: documents whose `expires_at` has passed are deleted together with
the objects listed in `renditions`. A document with `superseded_by` set describes an older
version of the key whose renditions were overwritten by a newer upload: delete the document
only, not the objects (they belong to the newer version now).
"""

from __future__ import annotations

from typing import Any, Final

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

PROCESSED: Final = "processed"
REJECTED: Final = "rejected"

Document = dict[str, Any]


async def create_indexes(images: AsyncCollection[Document]) -> None:
    await images.create_index(
        [("bucket", ASCENDING), ("key", ASCENDING), ("etag", ASCENDING)],
        unique=True,
        name="bucket_key_etag",
    )
    await images.create_index([("expires_at", ASCENDING)], name="expires_at")
    await images.create_index(
        [("bucket", ASCENDING), ("key", ASCENDING), ("processed_at", DESCENDING)],
        name="bucket_key_latest",
    )


async def save(images: AsyncCollection[Document], document: Document) -> None:
    """Upsert by (bucket, key, etag), so a retried delivery rewrites rather than duplicates."""
    identity = {k: document[k] for k in ("bucket", "key", "etag")}
    await images.update_one(identity, {"$set": document}, upsert=True)
    if document["status"] == PROCESSED:
        await images.update_many(
            {
                "bucket": document["bucket"],
                "key": document["key"],
                "etag": {"$ne": document["etag"]},
                "superseded_by": None,
                "processed_at": {"$lt": document["processed_at"]},
            },
            {"$set": {"superseded_by": document["etag"]}},
        )


async def exists(images: AsyncCollection[Document], bucket: str, key: str, etag: str) -> bool:
    found = await images.find_one({"bucket": bucket, "key": key, "etag": etag}, {"_id": True})
    return found is not None


async def latest(images: AsyncCollection[Document], bucket: str, key: str) -> Document | None:
    """The most recent document of an upload, without Mongo's `_id`."""
    return await images.find_one(
        {"bucket": bucket, "key": key}, {"_id": False}, sort=[("processed_at", DESCENDING)]
    )
