"""Records made products: tidied, validated by products-api's model, or failed with reasons."""

from __future__ import annotations

from typing import Any

import pytest
from item_processor.faults import Faults, InjectedFault
from item_processor.records import InvalidRecord, to_product

pytestmark = pytest.mark.unit


def test_a_record_is_tidied_before_it_is_validated() -> None:
    product = to_product(
        {
            "sku": "  SHOE-1 ",
            "name": " Red shoe\t",
            "price": " 19.90 ",
            "currency": "eur",
            "tags": [" Shoes", "RUNNING "],
        }
    )

    assert product.sku == "SHOE-1" and product.name == "Red shoe"
    assert str(product.price) == "19.90" and product.currency == "EUR"
    assert product.tags == ["shoes", "running"]
    assert (product.stock, product.description) == (0, "")


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"sku": "A", "name": "n", "price": "1.999", "currency": "EUR"}, "price"),
        ({"sku": "A", "name": "n", "price": "100.5", "currency": "JPY"}, "JPY prices"),
        ({"sku": "A", "name": "n", "price": "1", "currency": "XXX"}, "currency"),
        ({"sku": "bad sku!", "name": "n", "price": "1", "currency": "EUR"}, "sku"),
        ({"sku": "A", "price": "1", "currency": "EUR"}, "name: Field required"),
        ({"sku": "A", "name": "n", "price": "1", "currency": "EUR", "colour": "red"}, "colour"),
        ({"sku": "A", "name": "n", "price": "1", "currency": "EUR", "stock": -1}, "stock"),
    ],
)
def test_an_invalid_record_says_which_field_is_wrong(record: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidRecord) as raised:
        to_product(record)

    assert expected in raised.value.reason
    assert raised.value.errors and all("msg" in e and "loc" in e for e in raised.value.errors)


def test_every_problem_of_a_record_is_reported_at_once() -> None:
    with pytest.raises(InvalidRecord) as raised:
        to_product({"sku": "", "price": "-1"})

    fields = {error["loc"][0] for error in raised.value.errors}
    assert {"sku", "name", "price", "currency"} <= fields


@pytest.mark.parametrize(
    ("record", "kind"), [([1, 2], "an array"), ("x", "a string"), (None, "null"), (3, "a number")]
)
def test_a_record_that_is_not_an_object_is_invalid(record: Any, kind: str) -> None:
    with pytest.raises(InvalidRecord, match=f"not {kind}"):
        to_product(record)


def test_the_failure_knobs_are_off_by_default() -> None:
    faults = Faults(0.0, "")

    for n in range(100):
        faults.check(f"job:{n}", {"sku": f"S{n}"})


def test_first_attempts_fail_for_the_chosen_share_and_pass_on_retry() -> None:
    faults = Faults(0.2, "")
    failed = set()
    for n in range(1000):
        try:
            faults.check(f"job:{n}", {})
        except InjectedFault:
            failed.add(n)

    assert 150 < len(failed) < 250
    for n in failed:
        faults.check(f"job:{n}", {})  # the retry passes


def test_skus_matching_the_pattern_always_fail() -> None:
    faults = Faults(0.0, r"DOOMED-\d+")

    for _ in range(3):
        with pytest.raises(InjectedFault):
            faults.check("job:1", {"sku": "DOOMED-7"})
    faults.check("job:2", {"sku": "DOOMED-7x"})
    faults.check("job:3", [1])
