"""fnkit.rest.shortcut and body_shortcut: a hot route answered ahead of FastAPI, the rest
left to FastAPI."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse, Response
from fnkit import Function, NotFound
from fnkit.rest import body_shortcut, install, shortcut
from pydantic import BaseModel
from starlette.types import Scope

from tests.fnkit.helpers import serve, unique_name
from tests.fnkit.sample_functions import SampleSettings

pytestmark = pytest.mark.unit

THINGS = {"a1": "first"}


def things_app(answered_by: list[str]) -> Function[SampleSettings]:
    router = APIRouter()

    async def read(thing_id: str) -> Response:
        if thing_id not in THINGS:
            raise NotFound(f"thing {thing_id} does not exist")
        return JSONResponse({"id": thing_id, "name": THINGS[thing_id]}, headers={"ETag": '"1"'})

    @router.get("/things/{thing_id}")
    async def get_thing(thing_id: Annotated[str, Path(pattern=r"^[a-z][0-9]$")]) -> Response:
        answered_by.append("fastapi")
        return await read(thing_id)

    async def fast_read(params: Mapping[str, str]) -> Response:
        answered_by.append("shortcut")
        return await read(params["thing_id"])

    fn = Function(unique_name(), settings_class=SampleSettings, settings=SampleSettings())
    install(fn.api, max_body_bytes=64)
    fn.api.include_router(router)
    shortcut(fn.api, "GET", r"/things/(?P<thing_id>[a-z][0-9])", fast_read)
    return fn


async def test_matching_reads_take_the_shortcut_with_the_routes_answers() -> None:
    answered_by: list[str] = []
    async with serve(things_app(answered_by)) as served:
        found = await served.client.get("/things/a1")
        missing = await served.client.get("/things/b2")

    assert answered_by == ["shortcut", "shortcut"]
    assert (found.status_code, found.json(), found.headers["etag"]) == (
        200,
        {"id": "a1", "name": "first"},
        '"1"',
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert [line["status"] for line in served.logs.named("request failed")] == [404]


async def test_what_the_pattern_leaves_out_is_fastapis() -> None:
    answered_by: list[str] = []
    async with serve(things_app(answered_by)) as served:
        malformed = await served.client.get("/things/not-an-id")
        deeper = await served.client.get("/things/a1/parts")
        other_method = await served.client.delete("/things/a1")

    assert answered_by == []
    assert malformed.status_code == 422
    assert malformed.json()["error"]["details"][0]["loc"] == ["path", "thing_id"]
    assert deeper.status_code == 404
    assert other_method.status_code == 405


class Thing(BaseModel):
    name: str


def create_app(answered_by: list[str]) -> Function[SampleSettings]:
    router = APIRouter()

    @router.post("/things", status_code=201)
    async def create_thing(thing: Thing) -> Response:
        answered_by.append("fastapi")
        return JSONResponse({"name": thing.name}, status_code=201)

    async def fast_create(scope: Scope, params: Mapping[str, str], body: bytes) -> Response | None:
        try:
            thing = Thing.model_validate_json(body)
        except ValueError:
            return None
        answered_by.append("shortcut")
        return JSONResponse({"name": thing.name}, status_code=201)

    fn = Function(unique_name(), settings_class=SampleSettings, settings=SampleSettings())
    fn.api.include_router(router)
    body_shortcut(fn.api, "POST", "/things", fast_create)
    install(fn.api, max_body_bytes=64)  # added after: its limit wraps the shortcut
    return fn


async def test_a_body_the_shortcut_accepts_is_its_and_one_it_refuses_fastapis() -> None:
    answered_by: list[str] = []
    async with serve(create_app(answered_by)) as served:
        created = await served.client.post("/things", json={"name": "x"})
        invalid = await served.client.post("/things", json={"name": 1})
        not_json = await served.client.post(
            "/things", content=b"{", headers={"content-type": "application/json"}
        )
        as_text = await served.client.post(
            "/things", content=b'{"name": "x"}', headers={"content-type": "text/plain"}
        )

        async def chunks() -> Any:
            for _ in range(10):
                yield b" " * 20

        streamed = await served.client.post(
            "/things", content=chunks(), headers={"content-type": "application/json"}
        )

    assert (created.status_code, created.json()) == (201, {"name": "x"})
    assert answered_by == ["shortcut"]
    assert invalid.status_code == 422
    assert invalid.json()["error"]["details"][0]["loc"] == ["body", "name"]
    assert not_json.status_code == 422
    assert not_json.json()["error"]["details"][0]["type"] == "json_invalid"
    # Not declared JSON: FastAPI's answer (it does not read the body as JSON), not the shortcut's.
    assert as_text.status_code == 422
    assert answered_by == ["shortcut"]
    assert streamed.status_code == 413
    assert streamed.json()["error"]["code"] == "payload_too_large"
