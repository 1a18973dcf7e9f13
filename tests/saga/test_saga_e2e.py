"""The order saga end to end: place orders over HTTP, watch them through the workflow, check
stock, payments, invoices and the events announced (real processes, real MongoDB protocol)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections import Counter
from datetime import datetime
from typing import Any

import pytest
from devplane.servers import find_binary

from tests.saga.conftest import Platform, root_dir
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

COMPLETED = "io.knative-playbook.order.completed.v1"
FAILED = "io.knative-playbook.order.failed.v1"
PLACED = "io.knative-playbook.order.placed.v1"


def steps(order: dict[str, Any]) -> list[tuple[str, str]]:
    return [(h["step"], h["outcome"]) for h in order["history"]]


def when(order: dict[str, Any], step: str, outcome: str) -> list[datetime]:
    return [
        datetime.fromisoformat(h["at"].replace("Z", "+00:00"))
        for h in order["history"]
        if (h["step"], h["outcome"]) == (step, outcome)
    ]


async def test_happy_path_completes_takes_stock_once_and_invoices_once(
    platform: Platform,
) -> None:
    product = await platform.product(stock=5, price="25.00")

    order_id = await platform.place(product["sku"], 2)
    order = await platform.finished(order_id)

    assert order["status"] == "COMPLETED"
    assert order["total"] == {"amount": "50.00", "currency": "EUR"}
    assert order["reason"] is None and order["compensations"] == []
    done = [step for step, outcome in steps(order) if outcome == "succeeded"]
    assert done[:4] == ["validate", "reserve-inventory", "charge-payment", "commit-inventory"]
    assert sorted(done[4:]) == ["create-invoice", "notify-customer"]
    after = await platform.get_product(product["id"])
    assert after["stock"] == 3
    assert after["version"] == product["version"] + 1  # one stock move, one new ETag
    assert await platform.db["invoices"].count_documents({"_id": order_id}) == 1
    assert await platform.db["payments"].count_documents({"order_id": order_id}) == 1
    workflow = await platform.workflow(order_id)
    assert workflow is not None and workflow["phase"] == "Succeeded"
    assert workflow["exit_handler"]["phase"] == "Succeeded"
    completed = await wait_for(
        lambda: platform.events(COMPLETED, order_id),
        "order.completed in the broker's log",
        within=120,
    )
    assert len(completed) == 1


async def test_out_of_stock_fails_and_charges_nothing(platform: Platform) -> None:
    product = await platform.product(stock=1)

    order_id = await platform.place(product["sku"], 2)
    order = await platform.finished(order_id)

    assert order["status"] == "FAILED"
    assert order["failed_step"] == "reserve-inventory"
    assert "not enough" in order["reason"]
    assert ("charge-payment", "succeeded") not in steps(order)
    assert await platform.db["payments"].count_documents({"order_id": order_id}) == 0
    assert (await platform.get_product(product["id"]))["stock"] == 1
    workflow = await platform.workflow(order_id)
    assert workflow is not None
    reserve = next(n for n in workflow["nodes"] if n["name"] == "reserve-inventory")
    assert len(reserve["attempts"]) == 1  # a 422 is final: never retried
    failed = await wait_for(lambda: platform.events(FAILED, order_id), "order.failed", within=120)
    assert len(failed) == 1


async def test_a_declined_payment_fails_and_releases_the_reservation(platform: Platform) -> None:
    product = await platform.product(stock=4)

    order_id = await platform.place(product["sku"], 3, "tok_decline")
    order = await platform.finished(order_id)

    assert order["status"] == "FAILED"
    assert order["failed_step"] == "charge-payment"
    assert order["reason"] == "the card was declined"
    assert order["compensations"] == ["release-inventory"]
    assert ("reserve-inventory", "succeeded") in steps(order)
    assert ("release-inventory", "succeeded") in steps(order)
    assert (await platform.get_product(product["id"]))["stock"] == 4
    assert await platform.db["payments"].count_documents({"order_id": order_id}) == 0


async def test_a_commit_failing_after_payment_refunds_and_releases(platform: Platform) -> None:
    product = await platform.product(stock=4)

    order_id = await platform.place(product["sku"], 1, "tok_commit_fail")
    order = await platform.finished(order_id)

    assert order["status"] == "FAILED"
    assert order["failed_step"] == "commit-inventory"
    assert order["compensations"] == ["refund-payment", "release-inventory"]
    done = [step for step, outcome in steps(order) if outcome == "succeeded"]
    assert done.index("refund-payment") < done.index("release-inventory")  # in reverse order
    payments = await platform.db["payments"].find({"order_id": order_id}).to_list()
    assert sorted(p["kind"] for p in payments) == ["charge", "refund"]
    assert (await platform.get_product(product["id"]))["stock"] == 4


async def test_a_transient_payment_failure_is_retried_with_backoff_then_completes(
    platform: Platform,
) -> None:
    product = await platform.product(stock=2)

    order_id = await platform.place(product["sku"], 1, "tok_fail_2")
    order = await platform.finished(order_id)

    assert order["status"] == "COMPLETED"
    failures = when(order, "charge-payment", "failed")
    success = when(order, "charge-payment", "succeeded")
    assert len(failures) == 2 and len(success) == 1
    # The template's backoff: 1 s, then 2 s (duration "1s", factor "2"); loosely.
    assert (failures[1] - failures[0]).total_seconds() >= 0.9
    assert (success[0] - failures[1]).total_seconds() >= 1.9
    assert await platform.db["payments"].count_documents({"order_id": order_id}) == 1
    assert (await platform.get_product(product["id"]))["stock"] == 1


async def test_the_same_order_placed_twice_starts_one_workflow_and_charges_once(
    platform: Platform,
) -> None:
    product = await platform.product(stock=5)
    order_id = await platform.place(product["sku"], 1)
    await platform.finished(order_id)
    placed = await platform.events(PLACED, order_id)
    assert len(placed) == 1

    # The broker delivers it again (same id), and a duplicate with a new id arrives too.
    data = json.loads(
        (await platform.workflow(order_id) or {})["parameters"]["order"]  # the event's data
    )
    for event_id in (placed[0]["id"], uuid.uuid4().hex):
        response = await platform.client.post(
            platform.devplane + "/",
            headers={
                "ce-specversion": "1.0",
                "ce-id": event_id,
                "ce-type": PLACED,
                "ce-source": "/knative-playbook/orders-api",
                "ce-subject": order_id,
                "content-type": "application/json",
            },
            content=json.dumps(data),
        )
        assert response.status_code == 202

    async def delivered() -> bool:
        events = await platform.events(PLACED, order_id)
        deliveries = [d for e in events for d in e["deliveries"]]
        return len(deliveries) == 3 and all(d["outcome"] == "delivered" for d in deliveries)

    await wait_for(delivered, "the duplicates to reach workflow-launcher", within=120)
    runs = (await platform.client.get(platform.devplane + "/workflows")).json()["workflows"]
    assert [r["name"] for r in runs].count(f"order-saga-{order_id}") == 1
    assert await platform.db["payments"].count_documents({"order_id": order_id}) == 1
    assert (await platform.get_product(product["id"]))["stock"] == 4


async def test_fifty_orders_for_the_last_ten_units(platform: Platform) -> None:
    product = await platform.product(stock=10)
    lowest = [10]
    watching = True

    async def watch_stock() -> None:
        while watching:
            lowest[0] = min(lowest[0], (await platform.get_product(product["id"]))["stock"])
            await asyncio.sleep(0.2)

    watcher = asyncio.create_task(watch_stock())
    try:
        order_ids = await asyncio.gather(*(platform.place(product["sku"], 1) for _ in range(50)))
        orders = await platform.all_finished(list(order_ids), within=600)
    finally:
        watching = False
        await watcher

    outcomes = Counter(order["status"] for order in orders)
    reasons = Counter((o["failed_step"], o["reason"]) for o in orders if o["status"] == "FAILED")
    assert outcomes == {"COMPLETED": 10, "FAILED": 40}, reasons
    assert {o["failed_step"] for o in orders if o["status"] == "FAILED"} == {"reserve-inventory"}
    assert (await platform.get_product(product["id"]))["stock"] == 0
    assert lowest[0] >= 0
    winners = [o["id"] for o in orders if o["status"] == "COMPLETED"]
    assert await platform.db["payments"].count_documents({"order_id": {"$in": winners}}) == 10
    assert await platform.db["invoices"].count_documents({"_id": {"$in": list(order_ids)}}) == 10


def test_argo_lints_the_workflows_offline() -> None:
    argo = find_binary("argo")
    assert argo is not None, "argo is missing: run scripts/install-test-servers"

    result = subprocess.run(
        [argo, "lint", "--offline", "--output", "simple", "workflows/"],
        cwd=root_dir(),
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no linting errors found" in result.stdout
