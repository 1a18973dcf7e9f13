"""The order saga end to end: devplane (broker + workflow runner), orders-api, order-steps,
workflow-launcher and products-api as processes, on the real MongoDB-protocol server.

Routing is the chart's values plus an extra values file that gives each function its test
process's URL (as a user adds Triggers without editing the chart); devplane runs the
repository's workflows/order-saga.yaml, the file the chart installs.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from devplane.servers import MongoServer, free_port
from pymongo import AsyncMongoClient

from tests.support.processes import ProcessGroup
from tests.support.waiting import wait_for

SERVICES = {
    "products-api": "products_api.main:app",
    "orders-api": "orders_api.main:app",
    "order-steps": "order_steps.main:app",
    "workflow-launcher": "workflow_launcher.main:app",
}
FINAL = ("COMPLETED", "FAILED")


@dataclass
class Platform:
    urls: dict[str, str]
    devplane: str
    db: Any
    client: httpx.AsyncClient

    async def product(self, stock: int, price: str = "25.00") -> dict[str, Any]:
        """A new product with its own sku (tests share the database)."""
        sku = f"SKU-{uuid.uuid4().hex[:10]}"
        response = await self.client.post(
            f"{self.urls['products-api']}/products",
            json={
                "sku": sku,
                "name": f"Item {sku}",
                "price": price,
                "currency": "EUR",
                "stock": stock,
            },
        )
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def read(self, url: str) -> httpx.Response:
        """GET, waiting out 503s: the database may be too busy for a moment under load."""
        for _ in range(30):
            response = await self.client.get(url)
            if response.status_code != 503:
                return response
            await asyncio.sleep(1)
        pytest.fail(f"{url} kept answering 503: {response.text}")

    async def get_product(self, product_id: str) -> dict[str, Any]:
        response = await self.read(f"{self.urls['products-api']}/products/{product_id}")
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    async def place(self, sku: str, quantity: int, pay_with: str = "tok_approve") -> str:
        response = await self.client.post(
            f"{self.urls['orders-api']}/orders",
            json={
                "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
                "lines": [{"sku": sku, "quantity": quantity}],
                "payment_token": pay_with,
            },
        )
        assert response.status_code == 202, response.text
        order_id: str = response.json()["id"]
        return order_id

    async def order(self, order_id: str) -> dict[str, Any]:
        response = await self.read(f"{self.urls['orders-api']}/orders/{order_id}")
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    async def finished(self, order_id: str, within: float = 120.0) -> dict[str, Any]:
        """The order once its outcome is recorded and its workflow is over."""
        return (await self.all_finished([order_id], within))[0]

    async def all_finished(
        self, order_ids: list[str], within: float = 120.0
    ) -> list[dict[str, Any]]:
        """The orders once each has its outcome and its workflow is over, polled one at a
        time (a poll per order at once would load the server more than the orders do)."""
        done: dict[str, dict[str, Any]] = {}

        async def all_final() -> list[dict[str, Any]] | None:
            for order_id in order_ids:
                if order_id in done:
                    continue
                order = await self.order(order_id)
                if order["status"] not in FINAL:
                    return None
                workflow = await self.workflow(order_id)
                if not workflow or not workflow["finished_at"]:
                    return None
                done[order_id] = order
            return [done[order_id] for order_id in order_ids]

        return await wait_for(
            all_final, f"{len(order_ids)} order(s) to finish", within=within, every=0.5
        )

    async def workflow(self, order_id: str) -> dict[str, Any] | None:
        response = await self.read(f"{self.devplane}/workflows/order-saga-{order_id}")
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    async def events(self, event_type: str, subject: str) -> list[dict[str, Any]]:
        response = await self.client.get(
            f"{self.devplane}/events", params={"type": event_type, "limit": 10_000}
        )
        return [e for e in response.json()["events"] if e["subject"] == subject]


def routing_values(urls: dict[str, str]) -> str:
    """The chart's routing with each function at its test process; quick broker retries."""
    return json.dumps(
        {
            "eventing": {
                "delivery": {
                    "retry": 5,
                    "backoffPolicy": "exponential",
                    "backoffDelay": "PT0.2S",
                    "timeout": "PT30S",
                    "deadLetterSink": None,
                }
            },
            "functions": {name: {"url": url} for name, url in urls.items()},
        }
    )


@pytest.fixture(scope="module")
def platform_processes(
    tmp_path_factory: pytest.TempPathFactory, mongo_server: MongoServer
) -> Iterator[tuple[dict[str, str], str, str]]:
    root = tmp_path_factory.mktemp("saga")
    db_name = f"t_saga_{uuid.uuid4().hex[:8]}"
    devplane_port = free_port()
    devplane_url = f"http://127.0.0.1:{devplane_port}"
    ports = {name: free_port() for name in SERVICES}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    values = root / "saga-values.yaml"
    values.write_text(routing_values(urls))
    env = {
        "ENVIRONMENT": "dev",
        "MONGO_URL": mongo_server.url,
        "MONGO_DB": db_name,
        "MONGO_TIMEOUT_SECONDS": "3",
        "K_SINK": devplane_url,
        "WORKFLOW_BACKEND": "devplane",
    }
    with ProcessGroup(root) as group:
        group.start_devplane(devplane_port, env, values)
        for name, module in SERVICES.items():
            group.start(name, module, ports[name], env)
        group.wait_ready(60)
        yield urls, devplane_url, db_name


@pytest.fixture(scope="module")
async def platform(
    platform_processes: tuple[dict[str, str], str, str], mongo_server: MongoServer
) -> AsyncIterator[Platform]:
    urls, devplane_url, db_name = platform_processes
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_server.url, tz_aware=True)
    async with httpx.AsyncClient(timeout=60) as client:
        yield Platform(urls, devplane_url, mongo[db_name], client)
    await mongo.close()


def root_dir() -> Path:
    return Path(__file__).resolve().parents[2]
