"""fnkit.rest: the OpenAPI document names every error `install` answers, in the body it sends."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter
from fnkit import Function
from fnkit.rest import install
from pydantic import BaseModel

from tests.fnkit.helpers import serve, unique_name
from tests.fnkit.sample_functions import SampleSettings

pytestmark = pytest.mark.unit

ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}


class Thing(BaseModel):
    name: str


def things_app() -> Function[SampleSettings]:
    router = APIRouter()

    @router.post("/things", status_code=201)
    async def create(thing: Thing) -> Thing:
        return thing

    @router.get("/things")
    async def search(limit: int = 10) -> list[Thing]:
        return []

    fn = Function(unique_name(), settings_class=SampleSettings, settings=SampleSettings())
    install(fn.api, max_body_bytes=64)
    fn.api.include_router(router)
    return fn


def schema_of(responses: dict[str, Any], status: int) -> Any:
    return responses[str(status)]["content"]["application/json"]["schema"]


async def test_what_install_answers_is_what_the_document_says() -> None:
    fn = things_app()
    spec = fn.api.openapi()
    create = spec["paths"]["/things"]["post"]["responses"]
    search = spec["paths"]["/things"]["get"]["responses"]
    async with serve(fn) as served:
        not_utf8 = await served.client.post(
            "/things", content=b"\x80", headers={"content-type": "application/json"}
        )
        too_large = await served.client.post("/things", json={"name": "x" * 100})
        invalid = await served.client.get("/things", params={"limit": "many"})

    assert (not_utf8.status_code, too_large.status_code, invalid.status_code) == (400, 413, 422)
    for answer in (not_utf8, too_large, invalid):
        assert set(answer.json()) == {"error"}
    assert schema_of(create, 400) == schema_of(create, 413) == ERROR_BODY
    assert schema_of(create, 422) == schema_of(search, 422) == ERROR_BODY
    assert "400" not in search and "413" not in search  # no body, so neither can happen
    assert set(spec["components"]["schemas"]) >= {"ErrorBody", "ErrorInfo"}
    assert list(create) == sorted(create)
