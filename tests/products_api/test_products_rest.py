"""The REST API against the real MongoDB-protocol server: every status code it promises."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from bson import ObjectId
from devplane.servers import MongoServer

from tests.products_api.helpers import PRODUCT, Api

pytestmark = pytest.mark.integration

UNKNOWN_ID = "0123456789abcdef01234567"


def error(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


# -- POST ----------------------------------------------------------------------------------


async def test_create_returns_201_with_location_etag_and_exact_price(api: Api) -> None:
    response = await api.client.post("/products", json={**PRODUCT, "price": "1234567890.10"})
    assert response.status_code == 201
    created = response.json()
    assert response.headers["location"] == f"/products/{created['id']}"
    assert response.headers["etag"] == '"1"'
    assert created["price"] == "1234567890.10"
    assert {k: created[k] for k in PRODUCT if k != "price"} == {
        k: v for k, v in PRODUCT.items() if k != "price"
    }
    fetched = await api.client.get(response.headers["location"])
    assert fetched.status_code == 200
    assert fetched.json() == created


async def test_a_number_price_is_kept_exactly_and_stored_as_minor_units(api: Api) -> None:
    created = await api.create(price=0.1)
    assert created["price"] == "0.10"
    stored = await api.store.collection.find_one({"_id": ObjectId(created["id"])})
    assert stored is not None
    assert stored["price_minor"] == 10


async def test_a_duplicate_sku_is_409_and_leaves_the_first_product_alone(api: Api) -> None:
    first = await api.create()
    response = await api.client.post("/products", json={**PRODUCT, "name": "Impostor"})
    assert response.status_code == 409
    assert error(response)["code"] == "conflict"
    assert (await api.client.get(f"/products/{first['id']}")).json()["name"] == PRODUCT["name"]
    assert await api.store.collection.count_documents({}) == 1


async def test_invalid_input_is_422_with_the_path_of_every_bad_field(api: Api) -> None:
    body = {**PRODUCT, "price": "1.999", "currency": "ZZZ", "stock": -1, "tags": ["OK", "ok"]}
    del body["name"]
    response = await api.client.post("/products", json=body)
    assert response.status_code == 422
    assert error(response)["code"] == "invalid_request"
    locations = {tuple(problem["loc"]) for problem in error(response)["details"]}
    assert locations == {
        ("body", "name"),
        ("body", "price"),
        ("body", "currency"),
        ("body", "stock"),
        ("body", "tags", 0),
    }


@pytest.mark.parametrize(
    "body",
    [
        {**PRODUCT, "sku": {"$gt": ""}},
        {**PRODUCT, "name": {"$regex": ".*"}},
        {**PRODUCT, "$where": "1 == 1"},
        {**PRODUCT, "tags": {"$in": ["shoes"]}},
        {**PRODUCT, "a.b": 1},
        {"$set": {"stock": 0}},
    ],
    ids=["operator-value", "regex-value", "where-key", "in-list", "dotted-key", "update-doc"],
)
async def test_mongodb_operator_injection_is_refused_and_stores_nothing(
    api: Api, body: dict[str, Any]
) -> None:
    response = await api.client.post("/products", json=body)
    assert response.status_code == 422
    assert await api.store.collection.count_documents({}) == 0


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"sku": ', "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"[" * 5000 + b"]" * 5000, "application/json"),
    ],
    ids=["truncated", "invalid-utf8", "deep-nesting"],
)
async def test_bodies_that_are_not_json_objects_get_a_4xx(
    api: Api, content: bytes, content_type: str
) -> None:
    response = await api.client.post(
        "/products", content=content, headers={"content-type": content_type}
    )
    assert response.status_code in (400, 422)
    assert "error" in response.json()


async def test_a_body_over_the_limit_is_413_declared_or_streamed(make_api: Any) -> None:
    async with make_api(max_body_bytes=1000) as api:
        padded = {**PRODUCT, "description": "x" * 2000}
        declared = await api.client.post("/products", json=padded)
        assert declared.status_code == 413
        assert error(declared)["code"] == "payload_too_large"

        async def chunks() -> Any:
            for _ in range(10):
                yield b" " * 200

        streamed = await api.client.post(
            "/products", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413
        assert error(streamed)["code"] == "payload_too_large"
        assert await api.store.collection.count_documents({}) == 0
        assert (await api.client.post("/products", json=PRODUCT)).status_code == 201


# -- GET -----------------------------------------------------------------------------------


async def test_an_unknown_product_is_404_and_a_malformed_id_422(api: Api) -> None:
    missing = await api.client.get(f"/products/{UNKNOWN_ID}")
    assert missing.status_code == 404
    assert error(missing)["code"] == "not_found"
    malformed = await api.client.get("/products/not-an-id")
    assert malformed.status_code == 422
    assert error(malformed)["details"][0]["loc"] == ["path", "product_id"]


# -- PUT and PATCH -------------------------------------------------------------------------


async def test_put_replaces_every_field_and_bumps_the_etag(api: Api) -> None:
    created = await api.create()
    replacement = {"sku": "SHOE-BLUE-43", "name": "Blue shoe", "price": "50", "currency": "USD"}
    response = await api.client.put(
        f"/products/{created['id']}", json=replacement, headers={"If-Match": '"1"'}
    )
    assert response.status_code == 200
    assert response.headers["etag"] == '"2"'
    body = response.json()
    assert (body["sku"], body["name"], body["price"], body["currency"]) == (
        "SHOE-BLUE-43",
        "Blue shoe",
        "50.00",
        "USD",
    )
    assert (body["description"], body["stock"], body["tags"]) == ("", 0, [])
    assert body["created_at"] == created["created_at"]
    fetched = await api.client.get(f"/products/{created['id']}")
    assert fetched.json() == body
    assert fetched.headers["etag"] == '"2"'


async def test_patch_changes_only_the_fields_sent(api: Api) -> None:
    created = await api.create()
    response = await api.client.patch(
        f"/products/{created['id']}",
        json={"price": "79.90", "tags": ["sale"]},
        headers={"If-Match": '"1"', "content-type": "application/merge-patch+json"},
    )
    assert response.status_code == 200
    assert response.headers["etag"] == '"2"'
    assert {
        **created,
        "price": "79.90",
        "tags": ["sale"],
        "version": 2,
        "updated_at": response.json()["updated_at"],
    } == response.json()


async def test_a_change_without_if_match_is_428(api: Api) -> None:
    created = await api.create()
    for method in ("PUT", "PATCH"):
        response = await api.client.request(method, f"/products/{created['id']}", json=PRODUCT)
        assert response.status_code == 428
        assert error(response)["code"] == "precondition_required"
    assert (await api.client.get(f"/products/{created['id']}")).json()["version"] == 1


async def test_a_stale_if_match_is_412_and_changes_nothing(api: Api) -> None:
    created = await api.create()
    url = f"/products/{created['id']}"
    await api.client.patch(url, json={"stock": 1}, headers={"If-Match": '"1"'})
    stale = await api.client.patch(url, json={"stock": 2}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert error(stale)["details"] == {"etag": '"2"'}
    weak = await api.client.put(url, json=PRODUCT, headers={"If-Match": 'W/"2"'})
    assert weak.status_code == 412
    assert (await api.client.get(url)).json()["stock"] == 1


async def test_if_match_star_overwrites_any_version(api: Api) -> None:
    created = await api.create()
    response = await api.client.patch(
        f"/products/{created['id']}", json={"stock": 7}, headers={"If-Match": "*"}
    )
    assert response.status_code == 200
    assert response.json()["stock"] == 7


async def test_concurrent_writers_with_the_same_etag_exactly_one_wins(api: Api) -> None:
    created = await api.create()
    url = f"/products/{created['id']}"
    responses = await asyncio.gather(
        *(
            api.client.patch(url, json={"stock": n}, headers={"If-Match": '"1"'})
            for n in range(1, 7)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 412, 412, 412, 412, 412]
    winner = next(r.json() for r in responses if r.status_code == 200)
    final = (await api.client.get(url)).json()
    assert (final["stock"], final["version"]) == (winner["stock"], 2)


async def test_changes_to_a_missing_product_are_404(api: Api) -> None:
    for method in ("PUT", "PATCH"):
        response = await api.client.request(
            method, f"/products/{UNKNOWN_ID}", json=PRODUCT, headers={"If-Match": "*"}
        )
        assert response.status_code == 404


async def test_changing_the_sku_to_a_taken_one_is_409(api: Api) -> None:
    await api.create(sku="TAKEN")
    other = await api.create(sku="OTHER")
    url = f"/products/{other['id']}"
    for method, body in (("PATCH", {"sku": "TAKEN"}), ("PUT", {**PRODUCT, "sku": "TAKEN"})):
        response = await api.client.request(method, url, json=body, headers={"If-Match": '"1"'})
        assert response.status_code == 409, method
    assert (await api.client.get(url)).json()["sku"] == "OTHER"


async def test_a_patch_is_validated_as_the_product_it_produces(api: Api) -> None:
    created = await api.create(price="19.99")
    response = await api.client.patch(
        f"/products/{created['id']}", json={"currency": "JPY"}, headers={"If-Match": '"1"'}
    )
    assert response.status_code == 422
    assert error(response)["details"][0]["loc"] == ["body", "price"]
    null = await api.client.patch(
        f"/products/{created['id']}", json={"name": None}, headers={"If-Match": '"1"'}
    )
    assert null.status_code == 422
    assert error(null)["details"][0]["loc"] == ["body", "name"]


async def test_a_change_that_changes_nothing_keeps_the_version(api: Api) -> None:
    created = await api.create()
    response = await api.client.patch(
        f"/products/{created['id']}", json={"stock": PRODUCT["stock"]}, headers={"If-Match": '"1"'}
    )
    assert response.status_code == 200
    assert response.headers["etag"] == '"1"'


# -- DELETE --------------------------------------------------------------------------------


async def test_delete_is_204_and_idempotent(api: Api) -> None:
    created = await api.create()
    url = f"/products/{created['id']}"
    assert (await api.client.delete(url)).status_code == 204
    assert (await api.client.get(url)).status_code == 404
    assert (await api.client.delete(url)).status_code == 204
    assert (await api.client.delete(f"/products/{UNKNOWN_ID}")).status_code == 204
    assert (
        await api.client.patch(url, json={"stock": 1}, headers={"If-Match": "*"})
    ).status_code == 404


async def test_delete_honours_if_match(api: Api) -> None:
    created = await api.create()
    url = f"/products/{created['id']}"
    stale = await api.client.delete(url, headers={"If-Match": '"7"'})
    assert stale.status_code == 412
    assert (await api.client.get(url)).status_code == 200
    assert (await api.client.delete(url, headers={"If-Match": '"1"'})).status_code == 204


async def test_a_deleted_products_sku_can_be_used_again(api: Api) -> None:
    # The broker is down, so the deleted product is still a tombstone awaiting its event.
    first = await api.create()
    await api.client.delete(f"/products/{first['id']}")
    second = await api.create()
    assert second["id"] != first["id"]
    listed = (await api.client.get("/products")).json()["items"]
    assert [p["id"] for p in listed] == [second["id"]]


# -- GET /products -------------------------------------------------------------------------


async def test_lists_filter_by_tag_price_currency_and_name(api: Api) -> None:
    shoe = await api.create(sku="S1", name="Red Running Shoe", price="89.90", tags=["shoes"])
    sale = await api.create(sku="S2", name="50% off (sale) boot", price="40", tags=["shoes"])
    hat = await api.create(sku="H1", name="Straw hat", price="15.00", tags=["hats"])
    yen = await api.create(sku="J1", name="Geta", price="4000", currency="JPY", tags=[])

    async def ids(**params: Any) -> list[str]:
        response = await api.client.get("/products", params=params)
        assert response.status_code == 200, response.text
        return [p["id"] for p in response.json()["items"]]

    assert await ids() == [shoe["id"], sale["id"], hat["id"], yen["id"]]
    assert await ids(tag="shoes") == [shoe["id"], sale["id"]]
    assert await ids(min_price="40", max_price="89.90") == [shoe["id"], sale["id"]]
    assert await ids(min_price="40.01", currency="EUR") == [shoe["id"]]
    assert await ids(currency="JPY") == [yen["id"]]
    assert await ids(name="running") == [shoe["id"]]
    assert await ids(name="RUNNING SHOE", tag="shoes") == [shoe["id"]]
    # The user's text is taken literally, never as a regular expression.
    assert await ids(name="(SALE)") == [sale["id"]]
    assert await ids(name="50%") == [sale["id"]]
    assert await ids(name=".*") == []
    assert await ids(name="^S") == []


async def test_list_parameters_are_validated(api: Api) -> None:
    for params in (
        {"cursor": "not-a-cursor"},
        {"limit": 0},
        {"tag": "$gt"},
        {"min_price": "-1"},
        {"currency": "eur"},
        {"name": "a\x00"},
    ):
        response = await api.client.get("/products", params=params)
        assert response.status_code == 422, params
        assert error(response)["details"][0]["loc"][0] == "query"


async def test_pages_follow_cursors_and_the_limit_is_capped(make_api: Any) -> None:
    async with make_api(page_size_max=4) as api:
        created = [(await api.create(sku=f"P{n:02}"))["id"] for n in range(10)]
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 1000}
            if cursor:
                params["cursor"] = cursor
            page = (await api.client.get("/products", params=params)).json()
            assert len(page["items"]) <= 4
            seen += [p["id"] for p in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == created
        assert pages == 3


async def test_paging_while_others_insert_sees_every_earlier_product_once(api: Api) -> None:
    before = [(await api.create(sku=f"B{n:03}"))["id"] for n in range(30)]
    stop = asyncio.Event()

    async def insert_meanwhile() -> int:
        count = 0
        while not stop.is_set():
            await api.create(sku=f"N{count:04}")
            count += 1
            await asyncio.sleep(0)
        return count

    inserter = asyncio.create_task(insert_meanwhile())
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 4}
        if cursor:
            params["cursor"] = cursor
        page = (await api.client.get("/products", params=params)).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None or len(seen) >= 60:
            break
        await asyncio.sleep(0.01)
    stop.set()
    inserted = await inserter
    assert inserted > 0
    assert len(seen) == len(set(seen)), "a product appeared twice"
    assert seen[:30] == before
    assert seen == sorted(seen, key=ObjectId)


# -- dependencies and documentation --------------------------------------------------------


async def test_mongodb_down_is_503_and_up_again_is_200(api: Api, mongo_server: MongoServer) -> None:
    created = await api.create()
    mongo_server.stop()
    try:
        response = await api.client.get(f"/products/{created['id']}")
        assert response.status_code == 503
        assert error(response)["code"] == "database_unavailable"
    finally:
        mongo_server.start()
    assert (await api.client.get(f"/products/{created['id']}")).status_code == 200


async def test_openapi_documents_every_route_with_examples(api: Api) -> None:
    schema = (await api.client.get("/openapi.json")).json()
    products = schema["paths"]["/products"]
    one = schema["paths"]["/products/{product_id}"]
    assert set(products) == {"get", "post"}
    assert set(one) == {"get", "put", "patch", "delete"}
    assert products["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert set(products["post"]["responses"]) >= {"201", "409", "413", "422"}
    assert set(one["put"]["responses"]) >= {"200", "404", "412", "428"}
    assert schema["components"]["schemas"]["Product"]["examples"]
    docs = await api.client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_unknown_paths_and_methods_use_the_same_error_body(api: Api) -> None:
    missing = await api.client.get("/nowhere")
    assert (missing.status_code, error(missing)["code"]) == (404, "not_found")
    wrong = await api.client.request("PUT", "/products")
    assert (wrong.status_code, error(wrong)["code"]) == (405, "method_not_allowed")
    assert set(wrong.headers["allow"].split(", ")) >= {"GET", "POST"}
