"""The image records cleanup reads and deletes (image-processor writes them), and its own state.

A record is one document per (bucket, key, etag): the upload `bucket/key` with that ETag, and
`renditions`, a list of `{bucket, key, ...}`; it is expired once `expires_at` has passed.
Every query here is written for both MongoDB and FerretDB: no transactions, and nothing that
relies on an update being atomic. A record is deleted by `_id` with the expiry condition in
the same filter, so a record that stopped being expired is never deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from fnkit.mongo import is_duplicate_key
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

Document = dict[str, Any]
ObjectRef = tuple[str, str]  # (bucket, key)

# Index creation answers these when an index on the same key exists under another name or
# with other options: the index is there, which is all cleanup needs.
_INDEX_EXISTS: Final = frozenset({85, 86})


@dataclass(frozen=True, slots=True)
class Image:
    """The fields of a record that say which objects it owns."""

    id: Any
    bucket: str
    key: str
    etag: str
    renditions: tuple[ObjectRef, ...]

    @classmethod
    def parse(cls, document: Mapping[str, Any]) -> Image:
        """ValueError for a document without the fields image-processor writes."""
        bucket, key, etag = document.get("bucket"), document.get("key"), document.get("etag")
        if not (isinstance(bucket, str) and isinstance(key, str) and isinstance(etag, str)):
            raise ValueError("no bucket, key and etag")
        renditions = []
        for rendition in document.get("renditions") or []:
            r_bucket = rendition.get("bucket") if isinstance(rendition, Mapping) else None
            r_key = rendition.get("key") if isinstance(rendition, Mapping) else None
            if not (isinstance(r_bucket, str) and isinstance(r_key, str)):
                raise ValueError("a rendition without bucket and key")
            renditions.append((r_bucket, r_key))
        return cls(document["_id"], bucket, key, etag, tuple(renditions))


def expired_filter(bucket: str, now: datetime, max_age_cutoff: datetime | None) -> Document:
    """Records of `bucket` whose expires_at has passed (or, with a max age, that are too old)."""
    expired: Document = {"expires_at": {"$lte": now}}
    if max_age_cutoff is not None:
        expired = {"$or": [expired, {"processed_at": {"$lte": max_age_cutoff}}]}
    return {"bucket": bucket, **expired}


async def create_indexes(images: AsyncCollection[Document]) -> None:
    """The index that makes "does any record refer to this rendition?" a lookup on MongoDB."""
    try:
        await images.create_index([("renditions.key", ASCENDING)], name="renditions_key")
    except OperationFailure as exc:
        if exc.code not in _INDEX_EXISTS:
            raise


async def expired_page(
    images: AsyncCollection[Document], expired: Document, after: Any, limit: int
) -> list[Document]:
    """The next `limit` expired records in `_id` order, after `after` (None: from the start).

    Keyset pagination: records deleted meanwhile cannot shift a page, and records kept (their
    objects could not be deleted) are behind the cursor, so each run reads each record once.
    """
    query = expired if after is None else {"$and": [expired, {"_id": {"$gt": after}}]}
    projection = {"bucket": 1, "key": 1, "etag": 1, "renditions": 1}
    return await images.find(query, projection).sort("_id", ASCENDING).limit(limit).to_list()


async def referenced(
    images: AsyncCollection[Document], objects: Iterable[ObjectRef], excluding: Sequence[Any] = ()
) -> set[ObjectRef]:
    """Which of `objects` a record (other than those `excluding` ids) lists as a rendition."""
    wanted = set(objects)
    if not wanted:
        return set()
    # The excluded records are dropped here rather than by `$nin`: MongoDB reads them from the
    # index all the same, and FerretDB would compare every document with every excluded id.
    skip = set(excluding)
    query = {"renditions.key": {"$in": sorted({key for _, key in wanted})}}
    found: set[ObjectRef] = set()
    async for document in images.find(query, {"renditions": 1}):
        if document["_id"] in skip:
            continue
        for rendition in document.get("renditions") or []:
            if not isinstance(rendition, Mapping):
                continue
            bucket, key = rendition.get("bucket"), rendition.get("key")
            if isinstance(bucket, str) and isinstance(key, str) and (bucket, key) in wanted:
                found.add((bucket, key))
    return found


async def delete_expired(
    images: AsyncCollection[Document], ids: Sequence[Any], expired: Document
) -> int:
    """Delete those of `ids` that are still expired; returns how many this call deleted."""
    if not ids:
        return 0
    result = await images.delete_many({"$and": [expired, {"_id": {"$in": list(ids)}}]})
    return result.deleted_count


async def sweep_position(state: AsyncCollection[Document], sweep: str) -> str:
    """The key the orphan sweep `sweep` stopped after ("" to start from the beginning)."""
    document = await state.find_one({"_id": sweep})
    position = document.get("after") if document else None
    return position if isinstance(position, str) else ""


async def save_sweep_position(
    state: AsyncCollection[Document], sweep: str, after: str, now: datetime
) -> None:
    # Two runs at once may both write: the later one wins, and at worst the next run looks
    # at some renditions again, which is harmless. Two first upserts at once race to insert
    # the document; the loser's write becomes a plain update of the winner's.
    change = {"$set": {"after": after, "updated_at": now}}
    try:
        await state.update_one({"_id": sweep}, change, upsert=True)
    except OperationFailure as exc:
        if not is_duplicate_key(exc):
            raise
        await state.update_one({"_id": sweep}, change)
