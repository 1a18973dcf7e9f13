"""Listing, showing, deleting and purging dead letters over the REST API."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tests.dead_letter.helpers import Served, binary_dead_letter, knative_error

pytestmark = pytest.mark.integration

PRODUCT = "io.knative-playbook.product.created.v1"
ORDER = "io.knative-playbook.order.placed.v1"


async def _store_many(service: Served, count: int, **kwargs: object) -> list[str]:
    messages = [binary_dead_letter(b"{}", **kwargs) for _ in range(count)]  # type: ignore[arg-type]
    for message in messages:
        assert (await service.post(message)).status_code == 204
    return [message[0]["ce-id"] for message in messages]


async def _all_pages(service: Served, **params: str | int) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = (await service.client.get("/dead-letters", params=query)).json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def test_filters_by_type_source_and_destination(service: Served) -> None:
    products = await _store_many(service, 3, type=PRODUCT)
    orders = await _store_many(service, 2, type=ORDER, source="/orders")
    elsewhere = await _store_many(
        service, 1, type=ORDER, source="/orders", error=knative_error(destination="http://b/")
    )

    by_type = (await service.client.get("/dead-letters", params={"type": PRODUCT})).json()
    by_source = (await service.client.get("/dead-letters", params={"source": "/orders"})).json()
    by_destination = (
        await service.client.get("/dead-letters", params={"destination": "http://b/"})
    ).json()
    nothing = (await service.client.get("/dead-letters", params={"type": "no.such"})).json()

    assert {i["event_id"] for i in by_type["items"]} == set(products)
    assert {i["event_id"] for i in by_source["items"]} == set(orders + elsewhere)
    assert [i["event_id"] for i in by_destination["items"]] == elsewhere
    assert nothing == {"items": [], "next_cursor": None}


async def test_filters_by_time_of_dead_lettering(service: Served) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    stored = await _store_many(service, 2)
    after = datetime.now(UTC) + timedelta(seconds=1)

    inside = (
        await service.client.get(
            "/dead-letters", params={"since": before.isoformat(), "until": after.isoformat()}
        )
    ).json()
    later = (await service.client.get("/dead-letters", params={"since": after.isoformat()})).json()
    earlier = (
        await service.client.get("/dead-letters", params={"until": before.isoformat()})
    ).json()

    assert {i["event_id"] for i in inside["items"]} == set(stored)
    assert later["items"] == [] and earlier["items"] == []


async def test_pages_are_newest_first_and_complete(service: Served) -> None:
    stored = await _store_many(service, 7)

    items = await _all_pages(service, limit=3)

    assert [i["event_id"] for i in items] == list(reversed(stored))


async def test_cursor_pages_neither_repeat_nor_skip_while_others_are_inserted(
    service: Served,
) -> None:
    stored = set(await _store_many(service, 12))
    seen: list[str] = []
    cursor = None
    while True:
        page = (
            await service.client.get(
                "/dead-letters", params={"limit": 4, **({"cursor": cursor} if cursor else {})}
            )
        ).json()
        seen.extend(i["event_id"] for i in page["items"])
        # More dead letters arrive between every two pages, concurrently.
        await asyncio.gather(*(service.post(binary_dead_letter(b"{}")) for _ in range(3)))
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert len(seen) == len(set(seen))
    assert set(seen) == stored  # newer arrivals sort before the cursor, so none interleave


async def test_get_shows_one_and_404s_the_absent(service: Served) -> None:
    [event_id] = await _store_many(service, 1)
    letter_id = await service.id_of(event_id)

    found = await service.client.get(f"/dead-letters/{letter_id}")
    absent = await service.client.get("/dead-letters/0123456789abcdef01234567")
    malformed = await service.client.get("/dead-letters/not-an-id")

    assert found.status_code == 200 and found.json()["event_id"] == event_id
    assert absent.status_code == 404
    assert absent.json()["error"]["code"] == "not_found"
    assert malformed.status_code == 404


async def test_delete_is_idempotent(service: Served) -> None:
    [event_id, kept] = await _store_many(service, 2)
    letter_id = await service.id_of(event_id)

    first = await service.client.delete(f"/dead-letters/{letter_id}")
    second = await service.client.delete(f"/dead-letters/{letter_id}")
    remaining = (await service.client.get("/dead-letters")).json()["items"]

    assert (first.status_code, second.status_code) == (204, 204)
    assert (await service.client.get(f"/dead-letters/{letter_id}")).status_code == 404
    assert [i["event_id"] for i in remaining] == [kept]


async def test_purge_by_type_and_age_returns_the_count(service: Served) -> None:
    old_products = await _store_many(service, 3, type=PRODUCT)
    await _store_many(service, 2, type=ORDER)
    cutoff = datetime.now(UTC) + timedelta(milliseconds=5)
    await asyncio.sleep(0.05)
    new_products = await _store_many(service, 1, type=PRODUCT)

    purged = await service.client.delete(
        "/dead-letters", params={"type": PRODUCT, "before": cutoff.isoformat()}
    )
    left = (await service.client.get("/dead-letters")).json()["items"]

    assert purged.status_code == 200 and purged.json() == {"deleted": len(old_products)}
    assert {i["event_id"] for i in left if i["type"] == PRODUCT} == set(new_products)
    assert sum(i["type"] == ORDER for i in left) == 2


async def test_purge_without_a_filter_is_refused(service: Served) -> None:
    await _store_many(service, 2)

    response = await service.client.delete("/dead-letters")

    assert response.status_code == 422
    assert "at least one filter" in response.json()["error"]["message"]
    assert len((await service.client.get("/dead-letters")).json()["items"]) == 2


async def test_openapi_documents_the_routes_with_examples(service: Served) -> None:
    schema = (await service.client.get("/openapi.json")).json()
    docs = await service.client.get("/docs")

    assert docs.status_code == 200
    paths = schema["paths"]
    assert {"get", "delete"} <= set(paths["/dead-letters"])
    assert {"get", "delete"} <= set(paths["/dead-letters/{letter_id}"])
    assert "post" in paths["/dead-letters/{letter_id}/replay"]
    assert schema["components"]["schemas"]["DeadLetter"]["examples"]


async def test_stored_gauge_follows_stores_and_deletes(service: Served) -> None:
    async def gauge() -> float:
        await service.fn.api.state.dead_letters.sweep()
        return (await service.metrics())[("dead_letters_current", frozenset())]

    [first, *_] = await _store_many(service, 3)
    stored = await gauge()
    await service.client.delete(f"/dead-letters/{await service.id_of(first)}")

    assert (stored, await gauge()) == (3, 2)


@pytest.mark.parametrize("before", ["1e10", "99999999999", "0.5", "yesterday"])
async def test_a_purge_cutoff_that_is_not_an_iso_date_is_refused(
    service: Served, before: str
) -> None:
    # Found by schemathesis: pydantic read a number as seconds since 1970, so `1e10` (2286)
    # purged every dead letter.
    await _store_many(service, 2)

    purged = await service.client.delete("/dead-letters", params={"before": before})
    listed = await service.client.get("/dead-letters", params={"until": before})

    assert (purged.status_code, listed.status_code) == (422, 422), purged.text
    assert purged.json()["error"]["details"][0]["loc"] == ["query", "before"]
    assert len((await service.client.get("/dead-letters")).json()["items"]) == 2
