"""What products-api accepts, refuses and returns, decided before any database is involved."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from bson import ObjectId
from products_api.api.deps import etag, parse_if_match
from products_api.models import Product, ProductIn, ProductPatch
from products_api.store import decode_cursor, encode_cursor, from_minor, to_minor
from pydantic import TypeAdapter, ValidationError

from tests.products_api.helpers import PRODUCT

pytestmark = pytest.mark.unit

PATCH = TypeAdapter(ProductPatch)


def problems(model: Any, data: Any) -> list[tuple[tuple[Any, ...], str]]:
    """(location, type) of each problem pydantic reports for `data`."""
    with pytest.raises(ValidationError) as caught:
        if isinstance(model, TypeAdapter):
            model.validate_python(data)
        else:
            model.model_validate(data)
    return [(error["loc"], error["type"]) for error in caught.value.errors()]


@pytest.mark.parametrize(
    ("sent", "exact"),
    [
        ("19.99", "19.99"),
        (19.99, "19.99"),
        ("0.1", "0.1"),
        (0.3, "0.3"),
        (5, "5"),
        ("9999999999.99", "9999999999.99"),
        (9999999999.99, "9999999999.99"),
    ],
)
def test_prices_are_exact_decimals_from_strings_or_numbers(sent: Any, exact: str) -> None:
    assert ProductIn.model_validate({**PRODUCT, "price": sent}).price == Decimal(exact)


@pytest.mark.parametrize(
    "price",
    [
        "19.999",
        0.30000000000000004,
        "-1",
        -1,
        "1e3",
        "01",
        "1.",
        " 1",
        "NaN",
        "Infinity",
        "10000000000",
        True,
        None,
        {"$gt": ""},
    ],
)
def test_prices_that_are_not_plain_money_are_refused(price: Any) -> None:
    assert [loc for loc, _ in problems(ProductIn, {**PRODUCT, "price": price})] == [("price",)]


def test_a_price_finer_than_its_currency_is_refused() -> None:
    assert problems(ProductIn, {**PRODUCT, "currency": "JPY", "price": "100.5"}) == [
        (("price",), "value_error")
    ]
    assert ProductIn.model_validate({**PRODUCT, "currency": "JPY", "price": "100.00"}).price == 100


@pytest.mark.parametrize("currency", ["XXX", "eur", "EURO", "HRK", "", 978])
def test_only_iso_4217_currencies_in_circulation_are_accepted(currency: Any) -> None:
    assert [loc for loc, _ in problems(ProductIn, {**PRODUCT, "currency": currency})] == [
        ("currency",)
    ]


@pytest.mark.parametrize("stock", [-1, 1_000_000_001, "5", True, 2.5, None])
def test_stock_is_a_json_integer_not_below_zero(stock: Any) -> None:
    assert [loc for loc, _ in problems(ProductIn, {**PRODUCT, "stock": stock})] == [("stock",)]


def test_stock_accepts_integral_numbers_as_json_schema_does() -> None:
    assert ProductIn.model_validate({**PRODUCT, "stock": 3.0}).stock == 3


def test_tags_are_deduplicated_in_order() -> None:
    product = ProductIn.model_validate({**PRODUCT, "tags": ["b", "a", "b"]})
    assert product.tags == ["b", "a"]


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({**PRODUCT, "sku": {"$gt": ""}}, ("sku",)),
        ({**PRODUCT, "name": {"$ne": None}}, ("name",)),
        ({**PRODUCT, "tags": [{"$gt": ""}]}, ("tags", 0)),
        ({**PRODUCT, "tags": {"$in": ["x"]}}, ("tags",)),
        ({**PRODUCT, "$where": "sleep(1000)"}, ("$where",)),
        ({**PRODUCT, "$set": {"stock": 0}}, ("$set",)),
        ({**PRODUCT, "stock.$": 1}, ("stock.$",)),
        ({**PRODUCT, "price.minor": 1}, ("price.minor",)),
        ({**PRODUCT, "sku": "$gt"}, ("sku",)),
        ({**PRODUCT, "tags": ["$gt"]}, ("tags", 0)),
    ],
)
def test_mongodb_operators_and_dotted_keys_are_refused(body: Any, location: Any) -> None:
    assert location in [loc for loc, _ in problems(ProductIn, body)]


@pytest.mark.parametrize("text", ["a\x00b", "bell\x07", "\x85", "\ud800", "   "], ids=repr)
def test_names_must_be_printable_unicode(text: str) -> None:
    assert [loc for loc, _ in problems(ProductIn, {**PRODUCT, "name": text})] == [("name",)]


def test_names_keep_ordinary_unicode_and_whitespace() -> None:
    name = "Chaussure rouge \N{SPARKLES}\twith tab"
    assert ProductIn.model_validate({**PRODUCT, "name": name}).name == name


def test_a_patch_takes_any_subset_of_fields_but_no_nulls_or_operators() -> None:
    assert PATCH.validate_python({}) == {}
    assert PATCH.validate_python({"price": "1.50"}) == {"price": Decimal("1.50")}
    assert problems(PATCH, {"name": None}) == [(("name",), "string_type")]
    assert problems(PATCH, {"$set": {"name": "x"}}) == [(("$set",), "extra_forbidden")]
    assert problems(PATCH, {"id": "x"}) == [(("id",), "extra_forbidden")]


def test_prices_are_returned_with_their_currencys_places() -> None:
    now = datetime.now(UTC)
    common: dict[str, Any] = {
        "id": "x",
        "sku": "s",
        "name": "n",
        "description": "",
        "stock": 0,
        "tags": [],
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    assert str(Product(**common, currency="EUR", price=Decimal("19.9")).price) == "19.90"
    assert str(Product(**common, currency="JPY", price=Decimal("12800.00")).price) == "12800"
    assert (
        Product(**common, currency="EUR", price=Decimal(5)).model_dump(mode="json")["price"]
        == "5.00"
    )


@pytest.mark.parametrize("price", ["0", "0.01", "19.99", "9999999999.99", "100"])
def test_minor_units_round_trip_exactly(price: str) -> None:
    assert from_minor(to_minor(Decimal(price))) == Decimal(price)
    assert isinstance(to_minor(Decimal(price)), int)


def test_cursors_round_trip_and_strangers_are_refused() -> None:
    position = ObjectId()
    assert decode_cursor(encode_cursor(position)) == position
    for forged in ["", "zzz", encode_cursor(position)[:-2], "AAAAAAAAAAAAAAAAAAA", "!" * 19]:
        with pytest.raises(ValueError, match="not a cursor"):
            decode_cursor(forged)


@pytest.mark.parametrize(
    ("header", "matches_3", "matches_4"),
    [
        ("*", True, True),
        ('"3"', True, False),
        (' "4" , "3" ', True, True),
        ('W/"3"', False, False),
        ("3", False, False),
        ('"\N{SUPERSCRIPT THREE}"', False, False),
        ('"99999999999999999999999"', False, False),
        ("", False, False),
    ],
)
def test_if_match_uses_strong_comparison(header: str, matches_3: bool, matches_4: bool) -> None:
    precondition = parse_if_match(header)
    assert (precondition.allows(3), precondition.allows(4)) == (matches_3, matches_4)
    assert parse_if_match(etag(3)).allows(3)
