"""Each saga step on the real MongoDB-protocol server: what it does, once per (order, step)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fnkit import event_data

from tests.order_steps.conftest import Steps, add_product, placed
from tests.support.sinks import EventSink
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


async def validated(steps: Steps, *lines: tuple[str, int], pay_with: str = "tok_approve") -> Any:
    return await steps.ok("validate", placed(*lines, pay_with=pay_with))


async def test_validate_prices_the_order_from_the_catalogue(steps: Steps) -> None:
    shoe = await add_product(steps.db, "SHOE", stock=5, price_minor=8990)
    await add_product(steps.db, "SOCK", stock=5, price_minor=450)

    order = await validated(steps, ("SHOE", 2), ("SOCK", 3))

    assert order["total_minor"] == 2 * 8990 + 3 * 450
    assert order["currency"] == "EUR"
    assert order["lines"][0] == {
        "sku": "SHOE",
        "quantity": 2,
        "product_id": str(shoe["_id"]),
        "name": "Product SHOE",
        "unit_price_minor": 8990,
    }
    journal = await steps.db["order_journal"].find_one({"_id": f"{order['order_id']}/validate"})
    assert journal["status"] == "VALIDATED"


async def test_an_unknown_sku_is_rejected_and_stays_rejected(steps: Steps) -> None:
    order = placed(("NOPE", 1))

    first = await steps.call("validate", order)
    await add_product(steps.db, "NOPE", stock=1)  # appears later: the decision stands
    again = await steps.call("validate", order)

    assert first.status_code == again.status_code == 422
    assert first.json() == again.json()
    assert "NOPE" in first.json()["error"]["message"]


async def test_mixed_currencies_are_rejected(steps: Steps) -> None:
    await add_product(steps.db, "EUR-1", stock=1)
    await add_product(steps.db, "USD-1", stock=1, currency="USD")

    response = await steps.call("validate", placed(("EUR-1", 1), ("USD-1", 1)))

    assert response.status_code == 422
    assert response.json()["error"]["details"] == {"currencies": ["EUR", "USD"]}


async def test_reserving_takes_stock_once_and_bumps_the_version(steps: Steps) -> None:
    await add_product(steps.db, "SHOE", stock=5)
    order = await validated(steps, ("SHOE", 2))

    first = await steps.ok("reserve-inventory", order)
    again = await steps.ok("reserve-inventory", order)

    assert (
        first
        == again
        == {"order_id": order["order_id"], "reserved": [{"sku": "SHOE", "quantity": 2}]}
    )
    product = await steps.db["products"].find_one({"sku": "SHOE"})
    assert product["stock"] == 3
    assert product["version"] == 2  # products-api's ETag moves with the stock


async def test_a_reservation_is_all_lines_or_none(steps: Steps) -> None:
    await add_product(steps.db, "SHOE", stock=5)
    await add_product(steps.db, "RARE", stock=1)
    order = await validated(steps, ("SHOE", 2), ("RARE", 3))

    response = await steps.call("reserve-inventory", order)

    assert response.status_code == 422
    assert response.json()["error"]["details"] == {"sku": "RARE", "wanted": 3, "left": 1}
    assert await steps.stock("SHOE") == 5
    assert await steps.stock("RARE") == 1
    released = await steps.ok("release-inventory", order)
    assert released["released"] == []  # nothing of this order was left to give back
    assert await steps.stock("SHOE") == 5


async def test_release_gives_units_back_once(steps: Steps) -> None:
    await add_product(steps.db, "SHOE", stock=5)
    order = await validated(steps, ("SHOE", 2))
    await steps.ok("reserve-inventory", order)

    first = await steps.ok("release-inventory", order)
    again = await steps.ok("release-inventory", order)

    assert first == again
    assert first["released"] == [{"sku": "SHOE", "quantity": 2}]
    assert await steps.stock("SHOE") == 5


async def test_a_committed_reservation_is_not_released(steps: Steps) -> None:
    await add_product(steps.db, "SHOE", stock=5)
    order = await validated(steps, ("SHOE", 2))
    await steps.ok("reserve-inventory", order)
    await steps.ok("charge-payment", order)
    await steps.ok("commit-inventory", order)

    released = await steps.ok("release-inventory", order)

    assert released["released"] == []
    assert released["kept_committed"] == [{"sku": "SHOE", "quantity": 2}]
    assert await steps.stock("SHOE") == 3


async def test_a_charge_happens_once(steps: Steps) -> None:
    await add_product(steps.db, "SHOE", stock=5, price_minor=8990)
    order = await validated(steps, ("SHOE", 2))

    answers = await asyncio.gather(*(steps.call("charge-payment", order) for _ in range(5)))

    assert {r.status_code for r in answers} == {200}
    assert len({r.json()["charge_id"] for r in answers}) == 1
    assert answers[0].json()["amount_minor"] == 17980
    assert await steps.db["payments"].count_documents({"kind": "charge"}) == 1


async def test_a_declined_card_is_a_final_422_and_charges_nothing(steps: Steps) -> None:
    await add_product(steps.db, "SHOE", stock=5)
    order = await validated(steps, ("SHOE", 1), pay_with="tok_decline")

    first = await steps.call("charge-payment", order)
    again = await steps.call("charge-payment", order)

    assert first.status_code == again.status_code == 422
    assert first.json()["error"]["message"] == "the card was declined"
    assert await steps.db["payments"].count_documents({}) == 0


async def test_a_flaky_provider_fails_n_times_then_approves(steps: Steps) -> None:
    await add_product(steps.db, "SHOE", stock=5)
    order = await validated(steps, ("SHOE", 1), pay_with="tok_fail_2")

    statuses = [(await steps.call("charge-payment", order)).status_code for _ in range(4)]

    assert statuses == [503, 503, 200, 200]
    assert await steps.db["payments"].count_documents({"kind": "charge"}) == 1
    journal = await steps.db["order_journal"].find({"order_id": order["order_id"]}).to_list()
    charge = [
        e["outcome"]
        for e in sorted(journal, key=lambda e: e["at"])
        if e["step"] == "charge-payment"
    ]
    assert charge == ["failed", "failed", "succeeded"]


async def test_tok_commit_fail_makes_the_commit_fail_and_refund_undoes_the_charge(
    steps: Steps,
) -> None:
    await add_product(steps.db, "SHOE", stock=5)
    order = await validated(steps, ("SHOE", 1), pay_with="tok_commit_fail")
    await steps.ok("reserve-inventory", order)
    charge = await steps.ok("charge-payment", order)

    commit = await steps.call("commit-inventory", order)
    refund = await steps.ok("refund-payment", order)
    refund_again = await steps.ok("refund-payment", order)
    await steps.ok("release-inventory", order)

    assert commit.status_code == 422
    assert commit.json()["error"]["code"] == "commit_failed"
    assert refund == refund_again
    assert refund["refunded"] is True
    assert refund["charge_id"] == charge["charge_id"]
    assert await steps.db["payments"].count_documents({"kind": "refund"}) == 1
    assert await steps.stock("SHOE") == 5


async def test_refunding_an_order_never_charged_does_nothing(steps: Steps) -> None:
    await add_product(steps.db, "SHOE", stock=5)
    order = await validated(steps, ("SHOE", 1))

    refund = await steps.ok("refund-payment", order)

    assert refund["refunded"] is False
    assert await steps.db["payments"].count_documents({}) == 0


async def test_one_invoice_and_one_confirmation_per_order(steps: Steps) -> None:
    await add_product(steps.db, "SHOE", stock=5, price_minor=8990)
    order = await validated(steps, ("SHOE", 2))

    invoices = [await steps.ok("create-invoice", order) for _ in range(3)]
    notes = [await steps.ok("notify-customer", order) for _ in range(3)]

    assert invoices[0] == invoices[2]
    assert invoices[0]["total_minor"] == 17980
    assert notes[0]["to"] == "ada@example.com"
    assert await steps.db["invoices"].count_documents({}) == 1
    assert await steps.db["notifications"].count_documents({}) == 1


async def test_the_outcome_is_recorded_and_announced_once(steps: Steps, sink: EventSink) -> None:
    await add_product(steps.db, "SHOE", stock=5)
    order = await validated(steps, ("SHOE", 1), pay_with="tok_decline")
    await steps.ok("reserve-inventory", order)
    await steps.call("charge-payment", order)
    await steps.ok("release-inventory", order)
    exit_call = {"order_id": order["order_id"], "workflow": "w", "workflow_status": "Failed"}

    first = await steps.client.post("/outcomes", json=exit_call)
    again = await steps.client.post("/outcomes", json=exit_call)

    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    outcome = first.json()
    assert outcome["status"] == "FAILED"
    assert outcome["reason"] == "the card was declined"
    assert outcome["failed_step"] == "charge-payment"
    assert outcome["compensations"] == ["release-inventory"]
    await wait_for(lambda: _events(sink, 1), "order.failed")
    await steps.fn.api.state.outcomes.relay.flush()
    assert sink.ids() == [f"{order['order_id']}-outcome"]
    event = sink.events[0]
    assert event.get_type() == "io.knative-playbook.order.failed.v1"
    assert event_data(event)["compensations"] == ["release-inventory"]


async def test_bad_bodies_get_422_before_anything_runs(steps: Steps) -> None:
    response = await steps.call("reserve-inventory", {"order_id": "x"})

    assert response.status_code == 422
    assert await steps.db["order_journal"].count_documents({}) == 0


async def _events(sink: EventSink, n: int) -> bool:
    return len(sink.events) >= n


@pytest.mark.parametrize(
    ("field", "value"),
    [("product_id", ""), ("product_id", "not-an-object-id"), ("unit_price_minor", False)],
)
async def test_a_priced_line_the_catalogue_cannot_have_written_is_a_422(
    steps: Steps, field: str, value: Any
) -> None:
    # Found by schemathesis: an empty product_id crashed reserve-inventory with a 500.
    await add_product(steps.db, "SHOE", stock=5)
    order = await validated(steps, ("SHOE", 2))
    order["lines"][0][field] = value

    response = await steps.call("reserve-inventory", order)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["loc"][-1] == field
    assert await steps.stock("SHOE") == 5


async def test_a_total_given_as_a_boolean_is_a_422(steps: Steps) -> None:
    await add_product(steps.db, "SHOE", stock=5)
    order = {**await validated(steps, ("SHOE", 1)), "total_minor": False}

    response = await steps.call("charge-payment", order)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["loc"][-1] == "total_minor"
