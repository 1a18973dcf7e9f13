"""HTTP for products: status codes, headers and parameters; the logic is in store.py."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any, Final

from bson import ObjectId
from fastapi import APIRouter, Body, Path, Query, Request, Response
from fnkit.rest import error_responses
from pydantic import AfterValidator, BaseModel

from products_api.api.deps import (
    IfMatchOptional,
    IfMatchRequired,
    SettingsDep,
    StoreDep,
    etag,
)
from products_api.currencies import CURRENCIES
from products_api.models import (
    MAX_PRICE_DIGITS,
    PRICE_PLACES,
    PRODUCT_EXAMPLE,
    Product,
    ProductIn,
    ProductPage,
    ProductPatch,
    printable,
)
from products_api.store import CURSOR_PATTERN, ProductFilter, ProductStore, decode_cursor

router = APIRouter(prefix="/products", tags=["products"])

DEFAULT_PAGE_SIZE: Final = 20

_ETAG_HEADER: Final = {
    "ETag": {"description": "The product's version, for If-Match.", "schema": {"type": "string"}}
}
_LOCATION_HEADER: Final = {
    "Location": {"description": "Where the new product is.", "schema": {"type": "string"}}
}


def _json(
    model: BaseModel, *, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """The model as the JSON body, serialized once by pydantic.

    Returning the model would have FastAPI validate it again against the response model
    before serializing it: a second pass over what the route has just built and validated,
    paid on every read. The routes still declare `response_model`, for /docs.
    """
    return Response(
        model.__pydantic_serializer__.to_json(model),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def _valid_cursor(cursor: str | None) -> str | None:
    if cursor is not None:
        decode_cursor(cursor)
    return cursor


ID_PATTERN: Final = r"[0-9a-f]{24}"
# GET /products/{id} as main.py's shortcut matches it.
READ_PATH: Final = rf"/products/(?P<product_id>{ID_PATTERN})"

ProductId = Annotated[
    str,
    Path(
        pattern=rf"^{ID_PATTERN}$",
        description="The id the product was created with.",
        examples=["6650f1c2a4b5c6d7e8f90123"],
    ),
]
PriceBound = Annotated[
    Decimal | None, Query(ge=0, max_digits=MAX_PRICE_DIGITS, decimal_places=PRICE_PLACES)
]


@router.post(
    "",
    status_code=201,
    response_model=Product,
    summary="Create a product.",
    responses={
        201: {"description": "Created.", "headers": {**_LOCATION_HEADER, **_ETAG_HEADER}},
        **error_responses(400, 409, 413, 422, 503),
    },
)
async def create_product(
    product: Annotated[
        ProductIn,
        Body(
            openapi_examples={
                "shoe": {"summary": "A product", "value": PRODUCT_EXAMPLE},
                "yen": {
                    "summary": "A currency without minor unit",
                    "value": {
                        **PRODUCT_EXAMPLE,
                        "sku": "SHOE-RED-42-JP",
                        "price": "12800",
                        "currency": "JPY",
                    },
                },
            }
        ),
    ],
    store: StoreDep,
    request: Request,
) -> Response:
    """409 if the sku is taken. Emits `io.knative-playbook.product.created.v1`."""
    return await create(store, product, request.scope.get("root_path", ""))


# POST /products as main.py's shortcut matches it.
CREATE_PATH: Final = "/products"


def parse_product(body: bytes) -> ProductIn | None:
    """The body as the create route reads it (JSON, then the model), or None where that fails:
    the route itself then answers, with the error it gives."""
    try:
        return ProductIn.model_validate(json.loads(body))
    except (ValueError, RecursionError):  # pydantic's ValidationError is a ValueError
        return None


async def create(store: ProductStore, product: ProductIn, root_path: str) -> Response:
    created = await store.create(product)
    location = f"{root_path}/products/{created.id}"
    return _json(
        created, status_code=201, headers={"Location": location, "ETag": etag(created.version)}
    )


@router.get(
    "",
    response_model=ProductPage,
    summary="List products, oldest first, a page at a time.",
    responses=error_responses(422, 503),
)
async def list_products(
    store: StoreDep,
    settings: SettingsDep,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="`next_cursor` of the previous page."),
        AfterValidator(_valid_cursor),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, description="Page size; values above the server's cap are lowered.")
    ] = DEFAULT_PAGE_SIZE,
    tag: Annotated[str | None, Query(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")] = None,
    currency: Annotated[
        str | None, Query(pattern=r"^[A-Z]{3}$", json_schema_extra={"enum": list(CURRENCIES)})
    ] = None,
    min_price: PriceBound = None,
    max_price: PriceBound = None,
    name: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=100,
            description="Case-insensitive substring of the name (taken literally).",
        ),
        AfterValidator(printable),
    ] = None,
) -> Response:
    """Pages are stable while products are added: each product appears at most once."""
    where = ProductFilter(
        tag=tag, currency=currency, min_price=min_price, max_price=max_price, name=name
    )
    items, next_cursor = await store.page(
        where,
        after=decode_cursor(cursor) if cursor else None,
        limit=min(limit, settings.page_size_max),
    )
    return _json(ProductPage(items=items, next_cursor=next_cursor))


@router.get(
    "/{product_id}",
    response_model=Product,
    summary="Read a product.",
    responses={200: {"headers": _ETAG_HEADER}, **error_responses(404, 422, 503)},
)
async def get_product(product_id: ProductId, store: StoreDep) -> Response:
    # main.py's shortcut answers well-formed ids; this route documents the read and answers
    # the rest (422).
    return await read_product(store, product_id)


async def read_product(store: ProductStore, product_id: str) -> Response:
    product = await store.get(ObjectId(product_id))
    return _json(product, headers={"ETag": etag(product.version)})


_CHANGE_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {"headers": _ETAG_HEADER},
    **error_responses(400, 404, 409, 412, 413, 422, 428, 503),
}


@router.put(
    "/{product_id}",
    response_model=Product,
    summary="Replace a product.",
    responses=_CHANGE_RESPONSES,
)
async def replace_product(
    product_id: ProductId,
    product: Annotated[
        ProductIn,
        Body(
            openapi_examples={
                "restock": {"summary": "Every field", "value": {**PRODUCT_EXAMPLE, "stock": 40}},
            }
        ),
    ],
    precondition: IfMatchRequired,
    store: StoreDep,
) -> Response:
    """If-Match is required (428 without it; 412 if stale). Emits `...product.updated.v1`."""
    replaced = await store.replace(ObjectId(product_id), product, precondition)
    return _json(replaced, headers={"ETag": etag(replaced.version)})


@router.patch(
    "/{product_id}",
    response_model=Product,
    summary="Change some fields of a product.",
    responses=_CHANGE_RESPONSES,
)
async def patch_product(
    product_id: ProductId,
    patch: Annotated[
        ProductPatch,
        Body(
            openapi_examples={
                "price": {"summary": "A new price", "value": {"price": "79.90"}},
                "stock": {"summary": "Stock and tags", "value": {"stock": 0, "tags": ["sold-out"]}},
            }
        ),
    ],
    precondition: IfMatchRequired,
    store: StoreDep,
) -> Response:
    """A JSON merge patch (`application/merge-patch+json` or `application/json`).

    If-Match is required (428 without it; 412 if stale). Emits `...product.updated.v1` unless
    nothing changes.
    """
    patched = await store.patch(ObjectId(product_id), patch, precondition)
    return _json(patched, headers={"ETag": etag(patched.version)})


@router.delete(
    "/{product_id}",
    status_code=204,
    summary="Delete a product.",
    responses={
        204: {"description": "Deleted, or already gone."},
        **error_responses(409, 412, 422, 503),
    },
)
async def delete_product(
    product_id: ProductId, precondition: IfMatchOptional, store: StoreDep
) -> Response:
    """Idempotent: 204 whether or not it existed. Emits `...product.deleted.v1` once."""
    await store.delete(ObjectId(product_id), precondition)
    return Response(status_code=204)
