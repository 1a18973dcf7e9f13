"""fnkit.rest.shortcut: a hot route answered ahead of FastAPI, the rest left to FastAPI."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import pytest
from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse, Response
from fnkit import Function, NotFound
from fnkit.rest import install, shortcut

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
