"""REST routes beside the CloudEvent handlers in one app, answering with the same contract."""

from __future__ import annotations

from typing import Any

import pytest
from fnkit import Function

from tests.fnkit.helpers import serve
from tests.fnkit.sample_functions import RECORDED, SampleSettings

pytestmark = pytest.mark.integration


async def test_routes_and_events_share_the_app_and_its_database(
    mongo_app: Function[SampleSettings], mongo_db: Any
) -> None:
    async with serve(mongo_app) as served:
        created = await served.client.post("/records", json={"key": "r1", "note": "by route"})
        event = await served.binary(RECORDED, {"key": "r2"})
        by_event = await served.client.get("/records/r2")
        by_route = await served.client.get("/records/r1")
        greeting = await served.client.get("/settings/greeting")
        docs = await served.client.get("/openapi.json")

    assert created.status_code == 201
    assert created.json() == {"key": "r1"}
    assert event.status_code == 200
    assert by_event.status_code == 200
    assert by_event.json()["receipt"] == event.json()["receipt"]
    assert by_route.json() == {"_id": "r1", "note": "by route"}
    assert greeting.json() == {"greeting": "hello"}
    assert {"/records", "/records/{key}", "/health/readiness", "/metrics"} <= set(
        docs.json()["paths"]
    )
    assert await mongo_db["records"].count_documents({}) == 2


@pytest.mark.parametrize(
    ("method", "path", "status", "code", "message"),
    [
        ("GET", "/records/missing", 404, "not_found", "no record 'missing'"),
        ("GET", "/boom", 500, "internal_error", "internal error; see the function's log"),
        ("GET", "/orders/parse", 422, "invalid_data", "event data failed validation"),
        ("GET", "/maintenance", 503, "unavailable", "down for maintenance"),
    ],
)
async def test_route_errors_map_to_the_contract(
    mongo_app: Function[SampleSettings],
    method: str,
    path: str,
    status: int,
    code: str,
    message: str,
) -> None:
    async with serve(mongo_app) as served:
        response = await served.client.request(method, path)
        logs = served.logs.lines

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"] == message
    if status == 500:
        (crash,) = [line for line in logs if line["msg"] == "route crashed"]
        assert crash["path"] == path
        assert "RuntimeError: the route has a bug" in crash["exception"]
    else:
        (line,) = [line for line in logs if line["msg"] == "request failed"]
        assert (line["path"], line["status"], line["error"]) == (path, status, message)


async def test_conflict_from_a_route(mongo_app: Function[SampleSettings]) -> None:
    async with serve(mongo_app) as served:
        first = await served.client.post("/records", json={"key": "dup"})
        second = await served.client.post("/records", json={"key": "dup"})

    assert first.status_code == 201
    assert second.status_code == 409
    assert second.json()["error"] == {"code": "conflict", "message": "record 'dup' exists"}


async def test_request_body_validation_stays_fastapis(mongo_app: Function[SampleSettings]) -> None:
    async with serve(mongo_app) as served:
        response = await served.client.post("/records", json={"note": "no key"})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "key"]


async def test_other_methods_on_root_are_not_events(mongo_app: Function[SampleSettings]) -> None:
    async with serve(mongo_app) as served:
        response = await served.client.get("/")

    assert response.status_code == 404
