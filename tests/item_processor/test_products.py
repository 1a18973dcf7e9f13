"""Imported products on the real MongoDB-protocol server: one per sku, in products-api's shape."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from bson import ObjectId
from fnkit import new_event
from item_processor.products import Change, ProductWriter, product_id
from item_processor.records import to_product
from products_api.models import ProductIn
from products_api.outbox import ProductOutbox
from products_api.store import COLLECTION, ProductStore

pytestmark = pytest.mark.integration


def record(n: int, **changes: Any) -> ProductIn:
    return to_product(
        {"sku": f"SKU-{n}", "name": f"Product {n}", "price": "12.50", "currency": "EUR", **changes}
    )


@pytest.fixture
async def products_api(mongo_db: Any) -> ProductStore:
    """products-api's own store on the same collection, to read what imports wrote."""

    async def no_emit(event: Any) -> None:
        return None

    store = ProductStore(
        mongo_db[COLLECTION],
        ProductOutbox(mongo_db[COLLECTION], no_emit, grace_seconds=0, interval_seconds=3600),
        lambda type, data=None, **kw: new_event(type, "/tests", data, **kw),
    )
    await store.create_indexes()
    return store


@pytest.fixture
def writer(mongo_db: Any, products_api: ProductStore) -> ProductWriter:
    return ProductWriter(mongo_db[COLLECTION], max_batch=100, merge_concurrency=4)


async def test_new_products_are_created_and_products_api_serves_them(
    writer: ProductWriter, products_api: ProductStore
) -> None:
    upserted = await asyncio.gather(*(writer.upsert(record(n)) for n in range(20)))

    assert {u.change for u in upserted} == {Change.CREATED}
    served = await products_api.get(upserted[3].product_id)
    assert (served.sku, served.name, str(served.price), served.version) == (
        "SKU-3",
        "Product 3",
        "12.50",
        1,
    )
    assert upserted[3].product_id == product_id("SKU-3")


async def test_the_same_record_again_is_unchanged_and_writes_nothing(
    writer: ProductWriter, products_api: ProductStore
) -> None:
    first = await writer.upsert(record(1))

    again = await writer.upsert(record(1))

    assert again.change is Change.UNCHANGED and again.product_id == first.product_id
    assert (await products_api.get(first.product_id)).version == 1


async def test_a_changed_record_updates_the_product_and_its_version(
    writer: ProductWriter, products_api: ProductStore
) -> None:
    first = await writer.upsert(record(1))

    changed = await writer.upsert(record(1, price="15.00", tags=["sale"]))

    assert changed.change is Change.UPDATED
    served = await products_api.get(first.product_id)
    assert (str(served.price), served.tags, served.version) == ("15.00", ["sale"], 2)


async def test_a_product_created_through_products_api_is_updated_not_duplicated(
    writer: ProductWriter, products_api: ProductStore, mongo_db: Any
) -> None:
    created = await products_api.create(record(7))

    upserted = await writer.upsert(record(7, stock=3))

    assert upserted.change is Change.UPDATED
    assert str(upserted.product_id) == created.id
    assert await mongo_db[COLLECTION].count_documents({"sku": "SKU-7"}) == 1
    assert (await products_api.get(ObjectId(created.id))).stock == 3


async def test_concurrent_deliveries_of_the_same_items_leave_one_product_per_sku(
    writer: ProductWriter, mongo_db: Any
) -> None:
    # Each item three times, as duplicate deliveries would bring them, all at once.
    deliveries = [record(n % 30) for n in range(90)]

    upserted = await asyncio.gather(*(writer.upsert(product) for product in deliveries))

    assert [u.change for u in upserted].count(Change.CREATED) == 30
    assert {u.change for u in upserted} == {Change.CREATED, Change.UNCHANGED}
    assert await mongo_db[COLLECTION].count_documents({}) == 30


async def test_a_sku_whose_own_id_another_product_holds_gets_a_fresh_id(
    writer: ProductWriter, products_api: ProductStore, mongo_db: Any
) -> None:
    # Imported as SKU-1, then renamed through products-api: SKU-1's id is held by SKU-RENAMED.
    first = await writer.upsert(record(1))
    await mongo_db[COLLECTION].update_one(
        {"_id": first.product_id}, {"$set": {"sku": "SKU-RENAMED"}}
    )

    again = await writer.upsert(record(1))

    assert again.change is Change.CREATED and again.product_id != first.product_id
    assert (await products_api.get(again.product_id)).sku == "SKU-1"
    assert (await products_api.get(first.product_id)).sku == "SKU-RENAMED"
