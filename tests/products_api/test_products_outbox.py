"""Product events: emitted after each change, kept while the broker is down, never lost."""

from __future__ import annotations

from typing import Any

import pytest
from bson import ObjectId
from fnkit import event_data

from tests.products_api.helpers import PRODUCT, Api
from tests.support.sinks import EventSink
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

CREATED = "io.knative-playbook.product.created.v1"
UPDATED = "io.knative-playbook.product.updated.v1"
DELETED = "io.knative-playbook.product.deleted.v1"


async def stored(api: Api, product_id: str) -> dict[str, Any] | None:
    doc: dict[str, Any] | None = await api.store.collection.find_one({"_id": ObjectId(product_id)})
    return doc


async def pending(api: Api, product_id: str) -> list[str]:
    """Events not sent yet: a create's, staged beside the product, then those in its outbox."""
    staged = await api.store.relay.staged.find({"doc": ObjectId(product_id)}).to_list()
    doc = await stored(api, product_id)
    in_doc = [entry["id"] for entry in doc.get("outbox", [])] if doc else []
    return [entry["_id"] for entry in staged] + in_doc


async def test_each_change_emits_its_event_once_with_the_products_state(
    api: Api, sink: EventSink
) -> None:
    await sink.start()
    created = await api.create()
    url = f"/products/{created['id']}"
    await wait_for(lambda: _has(sink, 1), "the created event")
    updated = (await api.client.patch(url, json={"stock": 3}, headers={"If-Match": '"1"'})).json()
    await wait_for(lambda: _has(sink, 2), "the updated event")
    await api.client.delete(url)
    await wait_for(lambda: _has(sink, 3), "the deleted event")

    assert [e.get_type() for e in sink.events] == [CREATED, UPDATED, DELETED]
    assert sink.ids() == [f"{created['id']}-v1", f"{created['id']}-v2", f"{created['id']}-v3"]
    assert {e.get_subject() for e in sink.events} == {created["id"]}
    assert {e.get_source() for e in sink.events} == {"/knative-playbook/products-api"}
    assert event_data(sink.events[0]) == created
    assert event_data(sink.events[1]) == {**updated, "changed": ["stock"]}
    assert event_data(sink.events[2])["sku"] == PRODUCT["sku"]
    assert event_data(sink.events[2])["version"] == 3
    # Every event sent: nothing pending, and the tombstone is gone with its last event.
    await wait_for(lambda: _gone(api, created["id"]), "the tombstone to be removed")


async def test_a_change_that_changes_nothing_emits_nothing(api: Api, sink: EventSink) -> None:
    await sink.start()
    created = await api.create()
    await wait_for(lambda: _has(sink, 1), "the created event")
    await api.client.put(f"/products/{created['id']}", json=PRODUCT, headers={"If-Match": "*"})
    await api.client.post("/products", json=PRODUCT)  # 409: no event either
    assert await api.store.relay.sweep()
    assert sink.ids() == [f"{created['id']}-v1"]


async def test_with_the_broker_down_writes_succeed_and_events_wait(
    api: Api, sink: EventSink
) -> None:
    created = await api.create()
    url = f"/products/{created['id']}"
    changed = await api.client.patch(url, json={"stock": 1}, headers={"If-Match": '"1"'})
    assert changed.status_code == 200
    await api.store.relay.flush()
    assert await pending(api, created["id"]) == [f"{created['id']}-v1", f"{created['id']}-v2"]
    assert await api.store.relay.sweep() is False  # the broker is still down

    deleted = await api.create(sku="GONE")
    assert (await api.client.delete(f"/products/{deleted['id']}")).status_code == 204
    tombstone = await stored(api, deleted["id"])
    assert tombstone is not None
    assert set(tombstone) == {"_id", "version", "deleted_at", "outbox"}
    assert (await api.client.get(f"/products/{deleted['id']}")).status_code == 404

    await sink.start()
    assert await api.store.relay.sweep() is True
    assert sorted(sink.ids()) == sorted(
        [f"{created['id']}-v1", f"{created['id']}-v2", f"{deleted['id']}-v1", f"{deleted['id']}-v2"]
    )
    # In order per product, and each exactly once.
    assert sink.ids(UPDATED) == [f"{created['id']}-v2"]
    assert [i for i in sink.ids() if i.startswith(created["id"])] == [
        f"{created['id']}-v1",
        f"{created['id']}-v2",
    ]
    assert await pending(api, created["id"]) == []
    assert await stored(api, deleted["id"]) is None

    assert await api.store.relay.sweep() is True
    assert len(sink.events) == 4


async def test_a_resent_event_is_the_same_event(api: Api, sink: EventSink) -> None:
    # The broker takes the event but answers 500 (say, it timed out storing it): the event is
    # sent again later, and the copies are the same event, recognisable as duplicates.
    sink.status = 500
    await sink.start()
    created = await api.create()
    await api.store.relay.flush()
    assert len(sink.events) == 1
    assert await pending(api, created["id"]) == [f"{created['id']}-v1"]
    assert await api.store.relay.sweep() is False
    sink.status = 202
    assert await api.store.relay.sweep() is True
    assert len(sink.events) == 3
    first = sink.events[0]
    for copy in sink.events[1:]:
        assert copy.get_attributes() == first.get_attributes()
        assert copy.get_data() == first.get_data()
    assert await pending(api, created["id"]) == []


async def test_the_sweep_leaves_fresh_events_to_the_request_that_wrote_them(
    make_api: Any, sink: EventSink
) -> None:
    async with make_api(outbox_grace_seconds=3600) as api:
        created = await api.create()
        await api.store.relay.flush()
        await sink.start()
        assert await api.store.relay.sweep() is True
        assert sink.events == []
        assert await pending(api, created["id"]) == [f"{created['id']}-v1"]


async def test_the_startup_sweep_sends_what_an_earlier_process_left(
    make_api: Any, sink: EventSink
) -> None:
    async with make_api() as api:
        created = await api.create()
        await api.store.relay.flush()
        assert await pending(api, created["id"]) == [f"{created['id']}-v1"]
    await sink.start()
    async with make_api() as api:
        await wait_for(lambda: _has(sink, 1), "the start-up sweep to send the event")
        await wait_for(lambda: _pending_is(api, created["id"], []), "the outbox to empty")
    assert sink.ids() == [f"{created['id']}-v1"]


async def _has(sink: EventSink, count: int) -> bool:
    return len(sink.events) >= count


async def _pending_is(api: Api, product_id: str, expected: list[str]) -> bool:
    return await pending(api, product_id) == expected


async def _gone(api: Api, product_id: str) -> bool:
    return await stored(api, product_id) is None
