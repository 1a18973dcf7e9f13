"""Products in MongoDB: the business logic behind the REST routes, free of HTTP.

A document holds the product's fields (the price in integer minor units, which every
MongoDB-protocol server stores, compares and sorts exactly; FerretDB has no Decimal128), a
`version` that every change increments (the ETag), and the `outbox` of events not yet sent
(see outbox.py). Creating is two inserts (its event, staged, then the product), each shared
with the creates under way (group commit), and reading is one find; a change reads the current
document, then writes on the condition that its version is still the one read, which is how
concurrent writers are told apart without transactions (on MongoDB; FerretDB needs the
per-product lock, fnkit.locks.KeyedLock, as well).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Protocol

from bson import ObjectId
from fnkit import CloudEvent, Conflict, NotFound, PreconditionFailed, Rejected, Unavailable
from fnkit.batch import Batcher
from fnkit.mongo import insert_many_once, is_duplicate_key
from fnkit.mongo import now as _now
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

from products_api import outbox
from products_api.models import (
    PRICE_PLACES,
    Product,
    ProductIn,
    ProductPatch,
    check_price_scale,
)
from products_api.outbox import ProductOutbox

COLLECTION: Final = "products"
CREATED: Final = "io.knative-playbook.product.created.v1"
UPDATED: Final = "io.knative-playbook.product.updated.v1"
DELETED: Final = outbox.DELETED_TYPE

_MINOR: Final = 10**PRICE_PLACES
_CURSOR_PREFIX: Final = b"p1"
CURSOR_PATTERN: Final = r"^[A-Za-z0-9_-]{19}$"  # base64url of the prefix and a 12-byte ObjectId
# Stored fields that make up a product (the price under its stored name).
_STORED_FIELDS: Final = ("sku", "name", "description", "price_minor", "currency", "stock", "tags")
_DELETE_RETRIES: Final = 5


class EventFactory(Protocol):
    def __call__(
        self, type: str, data: Any = None, *, subject: str | None = None, **extensions: Any
    ) -> CloudEvent: ...


class InvalidProduct(Rejected):
    """The product a change would produce is invalid (a price too fine for a new currency)."""

    code = "invalid_request"


@dataclass(frozen=True, slots=True)
class Precondition:
    """An If-Match, read: any current version (`*`) or one of `versions`."""

    versions: frozenset[int] | None = None

    def allows(self, version: int) -> bool:
        return self.versions is None or version in self.versions


@dataclass(frozen=True, slots=True)
class ProductFilter:
    tag: str | None = None
    currency: str | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    name: str | None = None


def to_minor(price: Decimal) -> int:
    """19.99 -> 1999: exact, since prices have at most PRICE_PLACES decimal places."""
    return int(price.scaleb(PRICE_PLACES))


def from_minor(minor: int) -> Decimal:
    return Decimal(minor).scaleb(-PRICE_PLACES)


def encode_cursor(last_id: ObjectId) -> str:
    return base64.urlsafe_b64encode(_CURSOR_PREFIX + last_id.binary).decode().rstrip("=")


def decode_cursor(cursor: str) -> ObjectId:
    """The position a cursor stands for; ValueError if it is not one this API issued."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not a cursor issued by this API") from None
    if len(raw) != len(_CURSOR_PREFIX) + 12 or not raw.startswith(_CURSOR_PREFIX):
        raise ValueError("not a cursor issued by this API")
    return ObjectId(raw[len(_CURSOR_PREFIX) :])


def to_document(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A product's writable fields (as a client sends them) as they are stored."""
    return {
        "sku": fields["sku"],
        "name": fields["name"],
        "description": fields["description"],
        "price_minor": to_minor(fields["price"]),
        "currency": fields["currency"],
        "stock": fields["stock"],
        "tags": fields["tags"],
    }


def _product(doc: Mapping[str, Any]) -> Product:
    return Product(
        id=str(doc["_id"]),
        sku=doc["sku"],
        name=doc["name"],
        description=doc["description"],
        price=from_minor(doc["price_minor"]),
        currency=doc["currency"],
        stock=doc["stock"],
        tags=doc["tags"],
        version=doc["version"],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
    )


def writable_fields(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A stored product's writable fields, as a client would send them."""
    return {
        "sku": doc["sku"],
        "name": doc["name"],
        "description": doc["description"],
        "price": from_minor(doc["price_minor"]),
        "currency": doc["currency"],
        "stock": doc["stock"],
        "tags": doc["tags"],
    }


def _live(doc: Mapping[str, Any] | None) -> bool:
    return doc is not None and "deleted_at" not in doc


class ProductStore:
    """Create, read, list, change and delete products; every change carries its event."""

    def __init__(
        self,
        collection: AsyncCollection[dict[str, Any]],
        relay: ProductOutbox,
        new_event: EventFactory,
    ) -> None:
        self.collection = collection
        self.relay = relay
        self._new_event = new_event
        # Concurrent creates insert their products in one command (group commit, fnkit.batch):
        # FerretDB charges per command, not per document.
        self._inserter: Batcher[dict[str, Any], bool | OperationFailure] = Batcher(
            collection.name, self._insert
        )

    async def create_indexes(self) -> None:
        # Sparse, so that tombstones (which drop their sku) free it at once.
        await self.collection.create_index("sku", unique=True, sparse=True, name="sku_unique")
        await self.collection.create_index("tags", name="tags")
        await self.collection.create_index("price_minor", name="price_minor")
        await self.relay.create_indexes()

    def _event(self, type: str, product_id: ObjectId, version: int, data: Any) -> CloudEvent:
        # The id is derived from the change it announces: a re-send is a recognisable duplicate.
        return self._new_event(type, data, subject=str(product_id), id=f"{product_id}-v{version}")

    async def create(self, data: ProductIn) -> Product:
        """Insert a new product; Conflict if its sku is taken."""
        product_id, now = ObjectId(), _now()
        fields = data.model_dump()
        product = Product(id=str(product_id), **fields, version=1, created_at=now, updated_at=now)
        event = self._event(CREATED, product_id, 1, product.model_dump(mode="json"))
        doc = {
            "_id": product_id,
            **to_document(fields),
            "version": 1,
            "created_at": now,
            "updated_at": now,
            outbox.FIELD: [],
        }
        # Staged, not in the document: its removal once sent is then no write to the product,
        # which on FerretDB would read the whole catalogue.
        staged = await self.relay.stage(product_id, event, now)
        # If this raises, the product may be stored after all: the sweep finds out, and sends
        # its event or fences it off.
        inserted = await self._inserter.submit(doc)
        if isinstance(inserted, OperationFailure):
            raise inserted
        if not inserted:
            self.relay.unstage(staged)
            if await self.collection.find_one({"_id": product_id}, {"_id": 1}) is not None:
                raise Unavailable("the create took too long and was not stored; retry")
            raise self._sku_taken(data.sku)
        self.relay.send_soon(product_id, [staged])
        return product

    async def _insert(self, docs: Sequence[dict[str, Any]]) -> list[bool | OperationFailure]:
        return await insert_many_once(self.collection, list(docs))

    async def get(self, product_id: ObjectId) -> Product:
        doc = await self.collection.find_one({"_id": product_id}, {outbox.FIELD: 0})
        if doc is None or not _live(doc):
            raise NotFound(f"product {product_id} does not exist")
        return _product(doc)

    async def page(
        self, where: ProductFilter, *, after: ObjectId | None, limit: int
    ) -> tuple[list[Product], str | None]:
        """A page in creation order (keyset on `_id`) and the cursor of the next, if any."""
        query: dict[str, Any] = {"deleted_at": {"$exists": False}}
        if where.tag is not None:
            query["tags"] = where.tag
        if where.currency is not None:
            query["currency"] = where.currency
        price: dict[str, int] = {}
        if where.min_price is not None:
            price["$gte"] = to_minor(where.min_price)
        if where.max_price is not None:
            price["$lte"] = to_minor(where.max_price)
        if price:
            query["price_minor"] = price
        if where.name:
            # The user's text is a literal substring, never a pattern (no injection, no ReDoS).
            query["name"] = {"$regex": re.escape(where.name), "$options": "i"}
        if after is not None:
            query["_id"] = {"$gt": after}
        docs = (
            await self.collection.find(query, {outbox.FIELD: 0})
            .sort("_id", ASCENDING)
            .limit(limit + 1)
            .to_list()
        )
        more = len(docs) > limit
        items = [_product(doc) for doc in docs[:limit]]
        return items, encode_cursor(docs[limit - 1]["_id"]) if more else None

    async def replace(
        self, product_id: ObjectId, data: ProductIn, precondition: Precondition
    ) -> Product:
        """PUT: every writable field becomes what was sent."""
        async with self.relay.locks(product_id):
            current = await self._current(product_id, precondition)
            return await self._change(current, data.model_dump())

    async def patch(
        self, product_id: ObjectId, patch: ProductPatch, precondition: Precondition
    ) -> Product:
        """PATCH: the fields sent change, the others stay."""
        async with self.relay.locks(product_id):
            current = await self._current(product_id, precondition)
            merged = {**writable_fields(current), **patch}
            try:
                check_price_scale(merged["price"], merged["currency"])
            except ValueError as exc:
                raise InvalidProduct(
                    str(exc),
                    details=[{"loc": ["body", "price"], "msg": str(exc), "type": "value_error"}],
                ) from None
            return await self._change(current, merged)

    async def delete(self, product_id: ObjectId, precondition: Precondition) -> None:
        """Delete; deleting what is already gone succeeds (DELETE is idempotent)."""
        async with self.relay.locks(product_id):
            await self._delete(product_id, precondition)

    async def _delete(self, product_id: ObjectId, precondition: Precondition) -> None:
        for _ in range(_DELETE_RETRIES):
            current = await self.collection.find_one({"_id": product_id}, {outbox.FIELD: 0})
            if current is None or not _live(current):
                return
            if not precondition.allows(current["version"]):
                raise self._stale(product_id, current["version"])
            version, now = current["version"] + 1, _now()
            event = self._event(
                DELETED,
                product_id,
                version,
                {
                    "id": str(product_id),
                    "sku": current["sku"],
                    "version": version,
                    "deleted_at": now.isoformat().replace("+00:00", "Z"),
                },
            )
            after = await self.collection.find_one_and_update(
                {"_id": product_id, "version": current["version"]},
                {
                    "$unset": dict.fromkeys((*_STORED_FIELDS, "created_at", "updated_at"), ""),
                    "$set": {"deleted_at": now, "version": version},
                    "$push": {outbox.FIELD: outbox.entry(event, now)},
                },
                return_document=ReturnDocument.AFTER,
            )
            if after is not None:
                self.relay.send_soon(product_id, after[outbox.FIELD])
                return
            # Changed in between: read again; with If-Match that ends in 412 or success.
        raise Conflict(f"product {product_id} keeps changing; retry the delete")

    async def _current(self, product_id: ObjectId, precondition: Precondition) -> dict[str, Any]:
        current = await self.collection.find_one({"_id": product_id}, {outbox.FIELD: 0})
        if current is None or not _live(current):
            raise NotFound(f"product {product_id} does not exist")
        if not precondition.allows(current["version"]):
            raise self._stale(product_id, current["version"])
        return current

    async def _change(self, current: Mapping[str, Any], fields: Mapping[str, Any]) -> Product:
        """Write `fields` over `current` if nobody changed it since it was read."""
        product_id: ObjectId = current["_id"]
        before = writable_fields(current)
        changed = [name for name in before if fields[name] != before[name]]
        if not changed:
            return _product(current)  # nothing changes: no new version, no event
        version, now = current["version"] + 1, _now()
        product = Product(
            id=str(product_id),
            **fields,
            version=version,
            created_at=current["created_at"],
            updated_at=now,
        )
        event = self._event(
            UPDATED, product_id, version, {**product.model_dump(mode="json"), "changed": changed}
        )
        try:
            after = await self.collection.find_one_and_update(
                {"_id": product_id, "version": current["version"]},
                {
                    "$set": {**to_document(fields), "version": version, "updated_at": now},
                    "$push": {outbox.FIELD: outbox.entry(event, now)},
                },
                return_document=ReturnDocument.AFTER,
            )
        except OperationFailure as exc:
            if is_duplicate_key(exc):
                raise self._sku_taken(fields["sku"]) from None
            raise
        if after is None:
            latest = await self.collection.find_one(
                {"_id": product_id}, {"version": 1, "deleted_at": 1}
            )
            if latest is None or not _live(latest):
                raise NotFound(f"product {product_id} does not exist")
            raise self._stale(product_id, latest["version"])
        self.relay.send_soon(product_id, after[outbox.FIELD])
        return product

    @staticmethod
    def _sku_taken(sku: str) -> Conflict:
        return Conflict(f"a product with sku {sku!r} already exists", details={"sku": sku})

    @staticmethod
    def _stale(product_id: ObjectId, version: int) -> PreconditionFailed:
        return PreconditionFailed(
            f"product {product_id} has changed (it is at version {version}); "
            "read it again and retry with its new ETag",
            details={"etag": f'"{version}"'},
        )
