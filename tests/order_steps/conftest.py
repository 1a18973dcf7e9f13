"""order-steps fixtures: the app in-process on the real MongoDB server, products in
products-api's document shape, and orders as the workflow sends them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from bson import ObjectId
from devplane.servers import MongoServer
from fnkit import Function
from order_steps.config import Settings
from order_steps.main import create_app

from tests.support.apps import outbox_app_settings, serve_in_process
from tests.support.sinks import EventSink


class Steps:
    """The app under test, its client and its database."""

    def __init__(self, fn: Function[Settings], client: httpx.AsyncClient, db: Any) -> None:
        self.fn = fn
        self.client = client
        self.db = db

    async def call(self, step: str, body: dict[str, Any]) -> httpx.Response:
        return await self.client.post(f"/steps/{step}", json=body)

    async def ok(self, step: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.call(step, body)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def stock(self, sku: str) -> int:
        product = await self.db["products"].find_one({"sku": sku})
        return int(product["stock"])


async def add_product(
    db: Any, sku: str, *, stock: int, price_minor: int = 1000, currency: str = "EUR"
) -> dict[str, Any]:
    """A product as products-api stores it."""
    now = datetime.now(UTC)
    doc = {
        "_id": ObjectId(),
        "sku": sku,
        "name": f"Product {sku}",
        "description": "",
        "price_minor": price_minor,
        "currency": currency,
        "stock": stock,
        "tags": [],
        "version": 1,
        "created_at": now,
        "updated_at": now,
        "outbox": [],
    }
    await db["products"].insert_one(doc)
    return doc


def placed(*lines: tuple[str, int], pay_with: str = "tok_approve") -> dict[str, Any]:
    """An order as order.placed carries it (the workflow's `order` parameter)."""
    return {
        "order_id": str(ObjectId()),
        "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines],
        "payment_token": pay_with,
        "placed_at": "2026-01-01T00:00:00Z",
    }


@pytest.fixture
async def sink() -> AsyncIterator[EventSink]:
    async with EventSink() as server:
        yield server


@pytest.fixture
async def steps(
    mongo_server: MongoServer, mongo_db_name: str, mongo_db: Any, sink: EventSink
) -> AsyncIterator[Steps]:
    settings = Settings.model_validate(
        outbox_app_settings(mongo_server.url, mongo_db_name, sink.url)
    )
    fn = create_app(settings)
    async with serve_in_process(fn, base_url="http://steps") as client:
        yield Steps(fn, client, mongo_db)
