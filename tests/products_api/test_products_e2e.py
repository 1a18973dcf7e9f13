"""End to end through devplane: a created product's event reaches a subscriber by its Trigger."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from devplane.servers import FunctionProcess, free_port
from fnkit import event_data

from tests.products_api.helpers import PRODUCT
from tests.support.sinks import EventSink
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

CREATED = "io.knative-playbook.product.created.v1"


async def test_a_created_products_event_reaches_its_subscriber(
    function_process: Callable[..., FunctionProcess],
    service_env: dict[str, str],
    sink: EventSink,
    tmp_path: Path,
) -> None:
    await sink.start()
    # A subscriber added the way a user adds one: a Trigger in an extra values file.
    values = tmp_path / "product-watcher.yaml"
    values.write_text(
        json.dumps(
            {
                "functions": {
                    "product-watcher": {
                        "url": sink.url,
                        "triggers": [
                            {"name": "created", "filter": {"attributes": {"type": CREATED}}}
                        ],
                    }
                }
            }
        )
    )
    port = free_port()
    plane_env = {
        **service_env,
        "DEVPLANE_EXTRA_VALUES": str(values),
        "DEVPLANE_CRON": "false",
        "DEVPLANE_URL": f"http://127.0.0.1:{port}",
    }
    plane = await asyncio.to_thread(
        function_process, "devplane.main:app", plane_env, name="devplane", port=port
    )
    api = await asyncio.to_thread(
        function_process,
        "products_api.main:app",
        {**service_env, "K_SINK": f"{plane.url}/"},
        name="products-api",
    )

    async with httpx.AsyncClient(base_url=api.url) as client:
        response = await client.post("/products", json=PRODUCT)
        assert response.status_code == 201
        product = response.json()
        patched = await client.patch(
            f"/products/{product['id']}", json={"stock": 1}, headers={"If-Match": '"1"'}
        )
        assert patched.status_code == 200

    async def delivered() -> bool:
        return f"{product['id']}-v1" in sink.ids()

    await wait_for(delivered, "devplane to deliver product.created to the subscriber")
    created = next(e for e in sink.events if e.get_id() == f"{product['id']}-v1")
    assert created.get_type() == CREATED
    assert event_data(created) == product

    # The Trigger filters on the type: the update reached the broker, and went nowhere.
    async def updated_routed() -> list[dict[str, Any]] | None:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{plane.url}/events", params={"id": updated_id})
        events: list[dict[str, Any]] = response.json()["events"]
        return events or None

    updated_id = f"{product['id']}-v2"
    await wait_for(_truthy(updated_routed), "devplane to receive product.updated")
    record = (await updated_routed() or [{}])[0]
    assert record["deliveries"] == []
    assert updated_id not in sink.ids()


def _truthy(probe: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[bool]]:
    async def condition() -> bool:
        return bool(await probe())

    return condition
