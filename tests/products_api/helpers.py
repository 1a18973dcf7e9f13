"""Helpers for the products-api tests: a product, and the app under test."""

from __future__ import annotations

from typing import Any

import httpx
from fnkit import Function
from products_api.core.config import Settings
from products_api.store import ProductStore

PRODUCT: dict[str, Any] = {
    "sku": "SHOE-RED-42",
    "name": "Red running shoe",
    "description": "Lightweight, size 42.",
    "price": "89.90",
    "currency": "EUR",
    "stock": 12,
    "tags": ["shoes", "running"],
}


class Api:
    """The app under test, its HTTP client, and its store."""

    def __init__(self, fn: Function[Settings], client: httpx.AsyncClient) -> None:
        self.fn = fn
        self.client = client

    @property
    def store(self) -> ProductStore:
        store: ProductStore = self.fn.api.state.products
        return store

    async def create(self, **fields: Any) -> dict[str, Any]:
        response = await self.client.post("/products", json={**PRODUCT, **fields})
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created
