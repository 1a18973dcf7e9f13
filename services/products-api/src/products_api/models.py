"""The product's shapes at the API boundary: what clients send and what they get back.

Every input model forbids unknown keys and has no free-form map, so that nothing a client sends
can become a MongoDB operator (`{"$gt": ""}`) or a dotted path: a value is always a string, a
number or a list of constrained strings, never an object that reaches a query.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

# pydantic reads TypedDicts from typing_extensions on Python < 3.12.
from typing_extensions import TypedDict

from products_api.currencies import CURRENCIES, MINOR_UNIT_DIGITS

MAX_PRICE_DIGITS: Final = 12  # up to 9,999,999,999.99: exact as int64 minor units and as a float
PRICE_PLACES: Final = 2
MAX_STOCK: Final = 1_000_000_000
MAX_TAGS: Final = 20


# The same rule as `printable`, for the published schema (lone surrogates aside).
PRINTABLE_PATTERN: Final = "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]*$"


def printable(value: str) -> str:
    """Refuse text that cannot be stored as UTF-8 or that hides control characters."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    for char in value:
        if char not in "\t\n\r" and unicodedata.category(char) == "Cc":
            raise ValueError(f"text must not contain control character U+{ord(char):04X}")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _known_currency(value: str) -> str:
    if value not in MINOR_UNIT_DIGITS:
        raise ValueError("not an ISO 4217 currency code in circulation")
    return value


def _unique(tags: list[str]) -> list[str]:
    return list(dict.fromkeys(tags))


Sku = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
    Field(description="Stock-keeping unit, unique across products.", examples=["SHOE-RED-42"]),
]
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    AfterValidator(printable),
    AfterValidator(_not_blank),
    Field(examples=["Red running shoe"], json_schema_extra={"pattern": PRINTABLE_PATTERN}),
]
Description = Annotated[
    str,
    StringConstraints(max_length=5000),
    AfterValidator(printable),
    Field(examples=["Lightweight, size 42."], json_schema_extra={"pattern": PRINTABLE_PATTERN}),
]
PRICE_PATTERN: Final = r"^(0|[1-9][0-9]{0,9})(\.[0-9]{1,2})?$"


def _price_text(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("must be a decimal number")
    if isinstance(value, str) and not re.fullmatch(PRICE_PATTERN, value):
        raise ValueError('must be a plain decimal such as "19.99" (no sign, exponent or spaces)')
    return value


Price = Annotated[
    Decimal,
    Field(ge=0, max_digits=MAX_PRICE_DIGITS, decimal_places=PRICE_PLACES),
    BeforeValidator(_price_text),
    # What pydantic would publish ("any number or string") says less than it checks.
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": PRICE_PATTERN},
                {"type": "number", "minimum": 0, "maximum": 9_999_999_999.99},
            ],
            "description": (
                "Exact decimal amount, at most 2 decimal places (none for currencies without "
                'a minor unit, such as JPY). Send a JSON string ("19.99"), or a number with '
                "at most 12 significant digits; always returned as a string."
            ),
            "examples": ["19.99"],
        },
        mode="validation",
    ),
]
Currency = Annotated[
    str,
    AfterValidator(_known_currency),
    Field(
        description="ISO 4217 code.",
        examples=["EUR"],
        json_schema_extra={"enum": list(CURRENCIES)},
    ),
]


def _json_number(value: object) -> object:
    # JSON Schema's integer includes 3.0 but not "3" or true, which pydantic's lax int takes.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a JSON integer")
    return value


Stock = Annotated[int, Field(ge=0, le=MAX_STOCK, examples=[12]), BeforeValidator(_json_number)]
Tag = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]
Tags = Annotated[
    list[Tag],
    Field(max_length=MAX_TAGS, description="Lower-case labels; duplicates are dropped."),
    AfterValidator(_unique),
]

_STRICT = ConfigDict(extra="forbid")

PRODUCT_EXAMPLE: Final[dict[str, Any]] = {
    "sku": "SHOE-RED-42",
    "name": "Red running shoe",
    "description": "Lightweight, size 42.",
    "price": "89.90",
    "currency": "EUR",
    "stock": 12,
    "tags": ["shoes", "running"],
}


def price_places(currency: str) -> int:
    """Decimal places a price in `currency` has: its minor unit's, at most PRICE_PLACES."""
    return min(PRICE_PLACES, MINOR_UNIT_DIGITS.get(currency, PRICE_PLACES))


def check_price_scale(price: Decimal, currency: str) -> None:
    """A price may not be finer than its currency's minor unit (no 100.5 JPY)."""
    places = price_places(currency)
    if price != price.quantize(Decimal(1).scaleb(-places)):
        raise ValueError(f"{currency} prices have at most {places} decimal place(s)")


class ProductIn(BaseModel):
    """A whole product as a client writes it (POST and PUT)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [PRODUCT_EXAMPLE]})

    sku: Sku
    name: Name
    description: Description = ""
    # Before price, so that the price's check can see it.
    currency: Currency
    price: Price
    stock: Stock = 0
    tags: Tags = Field(default_factory=list)

    @field_validator("price")
    @classmethod
    def _price_fits_currency(cls, price: Decimal, info: ValidationInfo) -> Decimal:
        currency = info.data.get("currency")
        if currency is not None:
            check_price_scale(price, currency)
        return price


class ProductPatch(TypedDict, total=False):
    """A JSON merge patch (RFC 7396): only the fields sent change; none may be null."""

    __pydantic_config__ = _STRICT  # type: ignore[misc]

    sku: Sku
    name: Name
    description: Description
    price: Price
    currency: Currency
    stock: Stock
    tags: Tags


class Product(BaseModel):
    """A product as stored, with its identity and version."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "6650f1c2a4b5c6d7e8f90123",
                    **PRODUCT_EXAMPLE,
                    "version": 1,
                    "created_at": "2025-05-24T10:00:00Z",
                    "updated_at": "2025-05-24T10:00:00Z",
                }
            ]
        }
    )

    id: str = Field(description="Server-assigned identifier.")
    sku: str
    name: str
    description: str
    currency: str
    price: Decimal = Field(description="Exact decimal, as a string with the currency's places.")
    stock: int
    tags: list[str]
    version: int = Field(description="Incremented by every change; the ETag is built from it.")
    created_at: datetime
    updated_at: datetime

    @field_validator("price")
    @classmethod
    def _currency_places(cls, price: Decimal, info: ValidationInfo) -> Decimal:
        """19.9 EUR reads 19.90, 12800 JPY reads 12800: the same for every response."""
        return price.quantize(Decimal(1).scaleb(-price_places(info.data["currency"])))


class ProductPage(BaseModel):
    """One page of products in creation order."""

    items: list[Product]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )
