"""FastAPI dependency aliases for the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fnkit import Unavailable

from orders_api.store import OrderStore


async def get_store(request: Request) -> OrderStore:
    store: OrderStore | None = getattr(request.app.state, "orders", None)
    if store is None:
        raise Unavailable("orders-api is starting (creating its indexes); retry shortly")
    return store


StoreDep = Annotated[OrderStore, Depends(get_store)]
