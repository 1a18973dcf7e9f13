"""FastAPI dependency aliases for the routes."""

from __future__ import annotations

import re
from typing import Annotated, Final

from fastapi import Depends, Header, Request
from fnkit import FunctionError, Unavailable
from starlette.datastructures import State

from products_api.core.config import Settings
from products_api.store import Precondition, ProductStore

_ENTITY_TAG: Final = re.compile(r'"(\d{1,18})"', re.ASCII)


class PreconditionRequired(FunctionError):
    """A change without If-Match: it could silently overwrite someone else's (RFC 6585)."""

    status = 428
    code = "precondition_required"


def etag(version: int) -> str:
    return f'"{version}"'


def parse_if_match(value: str) -> Precondition:
    """`*` matches any version; strong tags match their version; weak or malformed, none."""
    if value.strip() == "*":
        return Precondition(None)
    versions = {
        int(match[1]) for tag in value.split(",") if (match := _ENTITY_TAG.fullmatch(tag.strip()))
    }
    return Precondition(frozenset(versions))


def store_of(state: State) -> ProductStore:
    """The app's store, once start-up has opened it."""
    store: ProductStore | None = getattr(state, "products", None)
    if store is None:
        raise Unavailable("products-api is starting (creating its indexes); retry shortly")
    return store


async def get_store(request: Request) -> ProductStore:
    return store_of(request.app.state)


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.ctx.settings
    return settings


async def required_if_match(
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description="Required: the ETag of the version being changed, or `*` for any.",
            examples=['"1"'],
        ),
    ] = None,
) -> Precondition:
    if if_match is None:
        raise PreconditionRequired(
            "send If-Match with the ETag from your last read of the product "
            "(or `If-Match: *` to overwrite whatever is there)"
        )
    return parse_if_match(if_match)


async def optional_if_match(
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description="Optional: delete only if the product is still at this ETag.",
            examples=['"1"'],
        ),
    ] = None,
) -> Precondition:
    return Precondition(None) if if_match is None else parse_if_match(if_match)


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ProductStore, Depends(get_store)]
IfMatchRequired = Annotated[Precondition, Depends(required_if_match)]
IfMatchOptional = Annotated[Precondition, Depends(optional_if_match)]
