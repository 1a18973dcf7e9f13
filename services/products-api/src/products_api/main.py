"""products-api: the app, as `fnkit-serve products_api.main:app` serves it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from fnkit import Context, Function
from fnkit.locks import KeyedLock

from products_api.core.config import Settings
from products_api.outbox import ProductOutbox
from products_api.store import COLLECTION, ProductStore

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.responses import Response
    from starlette.types import Scope

DESCRIPTION = """\
Product catalogue: the serverless playbook's REST API pattern (API Gateway + Lambda +
DynamoDB) as a Knative Service on MongoDB.

- Prices are exact decimals (strings in responses), stored as integer minor units.
- Reads return an `ETag`; `PUT` and `PATCH` require `If-Match` (428 without it, 412 when
  stale); `DELETE` honours it when sent and is idempotent.
- Lists are keyset-paginated in creation order with an opaque `cursor`.
- Every change emits `io.knative-playbook.product.{created,updated,deleted}.v1`, at least
  once, through an outbox kept in the product document.
- Errors always have the body `{"error": {"code", "message", "details"}}`.
"""


def create_app(settings: Settings | None = None) -> Function[Settings]:
    """The products-api function, reading its settings from the environment by default."""
    # Read now rather than on first use: the body limit is part of the app.
    settings = settings or Settings()
    fn = Function(
        "products-api",
        settings_class=Settings,
        settings=settings,
        mongo=True,
        description=DESCRIPTION,
    )

    @fn.rest
    def routes(api: FastAPI) -> None:
        from fnkit.rest import body_shortcut, install, shortcut

        from products_api.api.deps import store_of
        from products_api.api.routes import products

        api.include_router(products.router)

        # Creates, answered likewise ahead of FastAPI (see below): the body as the route reads
        # it, and one the route would refuse goes on to it. Added before install's body limit,
        # which middleware added later wraps, so that the limit applies here too.
        async def create_product(
            scope: Scope, params: Mapping[str, str], body: bytes
        ) -> Response | None:
            product = products.parse_product(body)
            if product is None:
                return None
            store = store_of(api.state)
            return await products.create(store, product, scope.get("root_path", ""))

        body_shortcut(api, "POST", products.CREATE_PATH, create_product)
        install(api, max_body_bytes=settings.max_body_bytes)

        # The read every client makes most, answered without FastAPI's routing and dependency
        # injection, which cost more CPU than the database read itself (bench/rest.py).
        async def read_product(params: Mapping[str, str]) -> Response:
            return await products.read_product(store_of(api.state), params["product_id"])

        shortcut(api, "GET", products.READ_PATH, read_product)

    async def open_store(ctx: Context[Settings]) -> None:
        collection = ctx.db[COLLECTION]
        relay = ProductOutbox(
            collection,
            ctx.emit,
            grace_seconds=ctx.settings.outbox_grace_seconds,
            interval_seconds=ctx.settings.outbox_sweep_interval_seconds,
            batch=ctx.settings.outbox_sweep_batch,
            locks=KeyedLock(),
        )
        store = ProductStore(collection, relay, ctx.event)
        await store.create_indexes()
        relay.start()
        fn.state.products = store

    async def close_store(ctx: Context[Settings]) -> None:
        store: ProductStore | None = getattr(fn.state, "products", None)
        if store is not None:
            del fn.state.products
            await store.relay.close()

    fn.on_startup(open_store)
    fn.on_shutdown(close_store)
    return fn


app = create_app()
