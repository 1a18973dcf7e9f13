"""orders-api on the real MongoDB-protocol server: placing, idempotency, the outbox, the view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fnkit import event_data

from tests.orders_api.conftest import Api
from tests.support.sinks import EventSink
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

PLACED = "io.knative-playbook.order.placed.v1"
ORDER: dict[str, Any] = {
    "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
    "lines": [{"sku": "SHOE-RED-42", "quantity": 2}, {"sku": "SOCKS-1", "quantity": 1}],
    "payment_token": "tok_approve",
}


async def place(api: Api, order: dict[str, Any] = ORDER, **headers: str) -> dict[str, Any]:
    response = await api.client.post("/orders", json=order, headers=headers)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert response.headers["location"] == f"/orders/{body['id']}"
    return body


async def test_a_placed_order_is_pending_and_announced_once(api: Api, sink: EventSink) -> None:
    await sink.start()

    placed = await place(api)

    assert placed["status"] == "PENDING"
    assert [h["outcome"] for h in placed["history"]] == ["placed"]
    assert (await api.client.get(f"/orders/{placed['id']}")).json() == placed
    await wait_for(lambda: _count(sink, 1), "order.placed")
    event = sink.events[0]
    assert event.get_type() == PLACED
    assert event.get_id() == f"{placed['id']}-placed"
    assert event.get_subject() == placed["id"]
    data = event_data(event)
    assert data["order_id"] == placed["id"]
    assert data["lines"] == ORDER["lines"]
    assert data["customer"] == ORDER["customer"]
    assert data["payment_token"] == "tok_approve"
    stored = await api.store.orders.find_one({"_id": placed["id"]})
    assert stored is not None
    assert stored["outbox"] == []  # sent, then popped


async def test_with_the_broker_down_the_order_is_stored_and_its_event_waits(
    api: Api, sink: EventSink
) -> None:
    placed = await place(api)
    await api.store.relay.flush()
    stored = await api.store.orders.find_one({"_id": placed["id"]})
    assert stored is not None
    assert [e["type"] for e in stored["outbox"]] == [PLACED]
    assert await api.store.relay.sweep() is False

    await sink.start()
    assert await api.store.relay.sweep() is True

    assert sink.ids() == [f"{placed['id']}-placed"]


async def test_the_same_idempotency_key_places_one_order(api: Api, sink: EventSink) -> None:
    await sink.start()
    first = await api.client.post("/orders", json=ORDER, headers={"Idempotency-Key": "k-1"})
    # The same order, its keys in another order: the same request.
    reordered = {"payment_token": ORDER["payment_token"], **ORDER}
    again = await api.client.post("/orders", json=reordered, headers={"Idempotency-Key": "k-1"})

    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await api.store.orders.count_documents({}) == 1
    await api.store.relay.flush()
    assert sink.ids() == [f"{first.json()['id']}-placed"]


async def test_an_idempotency_key_reused_for_another_order_is_refused(api: Api) -> None:
    first = await place(api, ORDER, **{"Idempotency-Key": "k-2"})
    other = {**ORDER, "payment_token": "tok_decline"}

    response = await api.client.post("/orders", json=other, headers={"Idempotency-Key": "k-2"})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert response.json()["error"]["details"] == {"order_id": first["id"]}
    assert await api.store.orders.count_documents({}) == 1


async def test_orders_without_a_key_are_separate_orders(api: Api) -> None:
    first, second = await place(api), await place(api)

    assert first["id"] != second["id"]
    assert await api.store.orders.count_documents({}) == 2


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"lines": []}, ["body", "lines"]),
        ({"lines": [{"sku": "A", "quantity": 0}]}, ["body", "lines", 0, "quantity"]),
        ({"lines": [{"sku": "A", "quantity": "2"}]}, ["body", "lines", 0, "quantity"]),
        ({"lines": [{"sku": "A", "quantity": 1}, {"sku": "A", "quantity": 2}]}, ["body", "lines"]),
        ({"lines": [{"sku": {"$gt": ""}, "quantity": 1}]}, ["body", "lines", 0, "sku"]),
        ({"payment_token": "4111111111111111"}, ["body", "payment_token"]),
        ({"customer": {"name": "Eve", "email": "not-an-address"}}, ["body", "customer", "email"]),
        ({"$where": "1"}, ["body", "$where"]),
    ],
)
async def test_malformed_orders_get_422_naming_the_field(
    api: Api, change: dict[str, Any], where: list[Any]
) -> None:
    response = await api.client.post("/orders", json={**ORDER, **change})

    assert response.status_code == 422
    assert where in [d["loc"] for d in response.json()["error"]["details"]]
    assert await api.store.orders.count_documents({}) == 0


async def test_unknown_and_malformed_order_ids(api: Api) -> None:
    assert (await api.client.get("/orders/0123456789abcdef01234567")).status_code == 404
    assert (await api.client.get("/orders/not-an-id")).status_code == 422


async def test_the_view_follows_what_the_saga_recorded(api: Api) -> None:
    placed = await place(api)
    order_id, start = placed["id"], datetime.now(UTC)

    def at(seconds: int) -> datetime:
        return start + timedelta(seconds=seconds)

    # What order-steps writes (its README documents these documents).
    await api.store.journal.insert_many(
        [
            {
                "order_id": order_id,
                "step": "validate",
                "outcome": "succeeded",
                "status": "VALIDATED",
                "at": at(1),
                "result": {"total_minor": 17980, "currency": "EUR"},
            },
            {
                "order_id": order_id,
                "step": "reserve-inventory",
                "outcome": "succeeded",
                "status": "INVENTORY_RESERVED",
                "at": at(2),
            },
            {
                "order_id": order_id,
                "step": "charge-payment",
                "outcome": "rejected",
                "detail": "card declined",
                "at": at(3),
            },
        ]
    )
    running = (await api.client.get(f"/orders/{order_id}")).json()
    assert running["status"] == "INVENTORY_RESERVED"
    assert running["total"] == {"amount": "179.80", "currency": "EUR"}

    await api.store.journal.insert_one(
        {
            "order_id": order_id,
            "step": "release-inventory",
            "outcome": "succeeded",
            "status": "INVENTORY_RELEASED",
            "at": at(4),
        }
    )
    await api.store.outcomes.insert_one(
        {
            "_id": order_id,
            "status": "FAILED",
            "reason": "card declined",
            "failed_step": "charge-payment",
            "compensations": ["release-inventory"],
            "at": at(5),
        }
    )
    failed = (await api.client.get(f"/orders/{order_id}")).json()

    assert failed["status"] == "FAILED"
    assert failed["reason"] == "card declined"
    assert failed["failed_step"] == "charge-payment"
    assert failed["compensations"] == ["release-inventory"]
    assert [(h["step"], h["outcome"]) for h in failed["history"]] == [
        ("place-order", "placed"),
        ("validate", "succeeded"),
        ("reserve-inventory", "succeeded"),
        ("charge-payment", "rejected"),
        ("release-inventory", "succeeded"),
        ("saga", "completed"),
    ]
    times = [h["at"] for h in failed["history"]]
    assert times == sorted(times)


async def _count(sink: EventSink, n: int) -> bool:
    return len(sink.events) >= n
