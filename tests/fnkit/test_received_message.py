"""`received_message()`: a handler can read the request its event arrived in, exactly."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, cast

import httpx
import pytest
from fnkit import CloudEvent, Context, Function
from fnkit.events import ReceivedMessage, received_message

pytestmark = pytest.mark.unit


async def test_handler_sees_the_exact_headers_and_body() -> None:
    fn: Function[Any] = Function(f"raw-{uuid.uuid4().hex[:8]}")
    seen: list[ReceivedMessage] = []

    @fn.fallback()
    async def keep(event: CloudEvent, ctx: Context[Any]) -> None:
        seen.append(received_message())

    body = b'{ "spaced" :  1 }'
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "1",
        "ce-source": "/s",
        "ce-type": "t",
        "ce-time": "2025-01-01T00:00:00.123456789Z",
        "content-type": "application/json",
    }
    async with fn.api.router.lifespan_context(fn.api):
        transport = httpx.ASGITransport(app=cast(Any, fn))  # ASGI scope types differ
        async with httpx.AsyncClient(transport=transport, base_url="http://fn") as client:
            for _ in range(500):  # start-up runs in the background; events wait for it
                if (await client.get("/health/readiness")).status_code == 200:
                    break
                await asyncio.sleep(0.01)
            response = await client.post("/", headers=headers, content=body)

    assert response.status_code == 204
    [message] = seen
    assert message.body == body
    assert {k: message.headers[k] for k in headers} == headers


def test_outside_an_invocation_it_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        received_message()
