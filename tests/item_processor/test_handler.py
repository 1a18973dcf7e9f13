"""item-processor's event contract, in-process on the real MongoDB-protocol server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from devplane.servers import MongoServer
from item_processor.config import Settings
from item_processor.main import create_app

pytestmark = pytest.mark.integration

ITEM_REQUESTED = "io.knative-playbook.item.requested.v1"
JOB = "0123456789abcdef0123456789abcdef"


def item(index: int, record: Any, *, structured: bool = False) -> tuple[dict[str, str], bytes]:
    data = {"job_id": JOB, "index": index, "record": record}
    attributes = {
        "specversion": "1.0",
        "id": f"{JOB}:{index}",
        "source": "/knative-playbook/bulk-jobs",
        "type": ITEM_REQUESTED,
        "subject": f"{JOB}/{index}",
    }
    if structured:
        envelope = {**attributes, "datacontenttype": "application/json", "data": data}
        return {"content-type": "application/cloudevents+json"}, json.dumps(envelope).encode()
    headers = {f"ce-{name}": value for name, value in attributes.items()}
    return {**headers, "content-type": "application/json"}, json.dumps(data).encode()


def shoe(sku: str = "SHOE-1", **changes: Any) -> dict[str, Any]:
    return {"sku": sku, "name": "Shoe", "price": "20", "currency": "EUR", **changes}


Processor = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def processor(mongo_server: MongoServer, mongo_db_name: str) -> Processor:
    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        settings = Settings.model_validate(
            {
                "environment": "dev",
                "mongo_url": mongo_server.url,
                "mongo_db": mongo_db_name,
                "mongo_timeout_seconds": 2.0,
                **overrides,
            }
        )
        fn = create_app(settings)
        async with fn.api.router.lifespan_context(fn.api):
            transport = httpx.ASGITransport(app=fn, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://ip") as client:
                for _ in range(100):
                    if (await client.get("/health/readiness")).status_code == 200:
                        break
                yield client

    return start


async def post(client: httpx.AsyncClient, message: tuple[dict[str, str], bytes]) -> httpx.Response:
    headers, body = message
    return await client.post("/", headers=headers, content=body)


@pytest.mark.parametrize("structured", [False, True])
async def test_a_valid_record_is_upserted_and_answered_with_item_processed(
    processor: Processor, mongo_db: Any, structured: bool
) -> None:
    async with processor() as client:
        response = await post(client, item(4, shoe(), structured=structured))

    assert response.status_code == 200
    assert response.headers["ce-type"] == "io.knative-playbook.item.processed.v1"
    assert response.headers["ce-id"] == f"{JOB}:4:result"
    assert response.headers["ce-subject"] == f"{JOB}/4"
    data = response.json()
    assert data["job_id"] == JOB and data["index"] == 4 and data["sku"] == "SHOE-1"
    assert data["change"] == "created"
    stored = await mongo_db["products"].find_one({"sku": "SHOE-1"})
    assert str(stored["_id"]) == data["product_id"] and stored["price_minor"] == 2000


async def test_a_redelivery_is_answered_the_same_and_leaves_one_product(
    processor: Processor, mongo_db: Any
) -> None:
    async with processor() as client:
        first = await post(client, item(0, shoe()))
        again = await post(client, item(0, shoe()))

    assert first.status_code == again.status_code == 200
    assert again.headers["ce-id"] == first.headers["ce-id"]
    assert again.json()["change"] == "unchanged"
    assert await mongo_db["products"].count_documents({}) == 1


async def test_an_invalid_record_is_a_result_item_failed_with_the_reason(
    processor: Processor, mongo_db: Any
) -> None:
    async with processor() as client:
        response = await post(client, item(9, shoe(price="1.234")))

    assert response.status_code == 200
    assert response.headers["ce-type"] == "io.knative-playbook.item.failed.v1"
    data = response.json()
    assert (data["job_id"], data["index"]) == (JOB, 9)
    assert data["reason"].startswith("price:")
    assert data["errors"][0]["loc"] == ["price"]
    assert await mongo_db["products"].count_documents({}) == 0


@pytest.mark.parametrize(
    "data",
    [
        {"index": 0, "record": {}},
        {"job_id": JOB, "record": {}},
        {"job_id": JOB, "index": -1, "record": {}},
        {"job_id": JOB, "index": True, "record": {}},
        {"job_id": JOB, "index": 0},
        [1, 2],
    ],
)
async def test_an_event_that_names_no_item_is_400(processor: Processor, data: Any) -> None:
    headers, _ = item(0, {})
    async with processor() as client:
        response = await client.post("/", headers=headers, content=json.dumps(data))

    assert response.status_code == 400


async def test_the_fault_knobs_answer_503_so_the_broker_retries(processor: Processor) -> None:
    async with processor(fault_first_attempt_503_ratio=1.0, fault_fail_sku_pattern="DOOMED") as c:
        first = await post(c, item(0, shoe()))
        retried = await post(c, item(0, shoe()))
        doomed = [await post(c, item(1, shoe("DOOMED"))) for _ in range(3)]

    assert first.status_code == 503 and first.json()["error"]["code"] == "injected_fault"
    assert retried.status_code == 200
    assert [r.status_code for r in doomed] == [503, 503, 503]


async def test_mongodb_down_is_503(processor: Processor, mongo_server: MongoServer) -> None:
    async with processor(mongo_timeout_seconds=0.5) as client:
        mongo_server.stop()
        try:
            response = await post(client, item(0, shoe()))
        finally:
            mongo_server.start()

    assert response.status_code == 503
