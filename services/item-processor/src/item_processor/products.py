"""Products written by bulk imports, upserted by sku, in products-api's collection and shape.

An imported product's `_id` is derived from its sku, so that finding the product an item
describes is a read by `_id`, the cheapest lookup there is: an index lookup on MongoDB; on
FerretDB v1 (SQLite) still ~0.6 s at 100,000 products, where a read by sku or an update takes
5-6 s (a scan). New products, the common case, are written together: the items being processed
at the same moment share one `insert_many` (fnkit.batch). An insert that finds its `_id` or its
sku taken means the product exists; then, one by one, the stored product is compared with the
record: equal is `unchanged` (a redelivery, or a re-import), different is `updated` (a
version-conditional write, as products-api makes). A product whose sku is held under another id
(created through products-api, or renamed since) is found by its sku, more slowly.

Imports write products directly, without products-api's per-product events: a bulk job
announces its outcome with `item.processed` per item and `job.completed` once.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from bson import ObjectId
from fnkit import Unavailable
from fnkit.batch import Batcher
from fnkit.mongo import insert_many_once, is_duplicate_key, now
from products_api.models import ProductIn

# products-api's stored shape, reused so that both write the very same documents.
from products_api.store import to_document, writable_fields
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

_MERGE_ATTEMPTS: Final = 5


class Change(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class Upserted:
    product_id: ObjectId
    change: Change


def product_id(sku: str) -> ObjectId:
    """The `_id` of the product imported with `sku`: the same for every delivery and import."""
    return ObjectId(hashlib.blake2b(sku.encode(), digest_size=12).digest())


class ProductWriter:
    def __init__(
        self,
        collection: AsyncCollection[dict[str, Any]],
        *,
        max_batch: int,
        merge_concurrency: int,
    ) -> None:
        self.collection = collection
        self._batcher: Batcher[ProductIn, Upserted] = Batcher(
            "item-processor-products", self._write, max_items=max_batch
        )
        self._merging = asyncio.Semaphore(merge_concurrency)

    async def upsert(self, product: ProductIn) -> Upserted:
        """Create or update the product with this sku; unchanged if it is already as given."""
        return await self._batcher.submit(product)

    async def _write(self, products: Sequence[ProductIn]) -> list[Upserted | Exception]:
        at = now()
        docs = [product_document(product, product_id(product.sku), at) for product in products]
        inserted = await insert_many_once(self.collection, docs)
        outcomes: list[Upserted | Exception] = [
            Upserted(doc["_id"], Change.CREATED)
            if outcome is True
            else _unavailable(product.sku, "exists" if outcome is False else outcome)
            for product, doc, outcome in zip(products, docs, inserted, strict=True)
        ]
        existing = [i for i, outcome in enumerate(inserted) if outcome is False]
        merged = await asyncio.gather(
            *(self._merge(products[i]) for i in existing), return_exceptions=True
        )
        for i, outcome in zip(existing, merged, strict=True):
            if isinstance(outcome, Unavailable | Upserted):
                outcomes[i] = outcome
            elif isinstance(outcome, Exception):
                outcomes[i] = _unavailable(products[i].sku, outcome)
            else:
                raise outcome
        return outcomes

    async def _merge(self, product: ProductIn) -> Upserted:
        """The product exists (or did a moment ago): leave it, update it, or create it after all."""
        async with self._merging:
            fields = product.model_dump()
            for _ in range(_MERGE_ATTEMPTS):
                own_id = product_id(product.sku)
                by_id = await self.collection.find_one({"_id": own_id})
                current = by_id
                if current is None or current.get("sku") != product.sku:
                    current = await self.collection.find_one({"sku": product.sku})
                if current is None:
                    # The sku is free: its own id if that is free too, else a fresh one.
                    created = await self._insert(product, own_id if by_id is None else None)
                    if created is not None:
                        return created
                    continue
                if writable_fields(current) == fields:
                    return Upserted(current["_id"], Change.UNCHANGED)
                updated = await self.collection.update_one(
                    {"_id": current["_id"], "version": current["version"]},
                    {
                        "$set": {
                            **to_document(fields),
                            "version": current["version"] + 1,
                            "updated_at": now(),
                        }
                    },
                )
                if updated.matched_count:
                    return Upserted(current["_id"], Change.UPDATED)
            raise Unavailable(f"product {product.sku!r} keeps changing; retry")

    async def _insert(self, product: ProductIn, own_id: ObjectId | None) -> Upserted | None:
        doc = product_document(product, own_id or ObjectId(), now())
        try:
            await self.collection.insert_one(doc)
        except OperationFailure as exc:
            if is_duplicate_key(exc):
                return None  # created meanwhile by another delivery: compare with that one
            raise
        return Upserted(doc["_id"], Change.CREATED)


def product_document(product: ProductIn, id: ObjectId, at: datetime) -> dict[str, Any]:
    """A new product as products-api stores it (version 1)."""
    return {
        "_id": id,
        **to_document(product.model_dump()),
        "version": 1,
        "created_at": at,
        "updated_at": at,
    }


def _unavailable(sku: str, problem: object) -> Unavailable:
    return Unavailable(f"product {sku!r} not written ({problem}); retry")
