"""Stock never oversold: concurrent reservations across two order-steps processes, and the
moves a crashed holder leaves behind (real MongoDB-protocol server, FerretDB in CI)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from devplane.servers import FunctionProcess

from tests.order_steps.conftest import Steps, add_product, placed

pytestmark = pytest.mark.integration


async def test_fifty_orders_for_the_last_ten_units_across_two_replicas(
    function_process: Callable[..., FunctionProcess],
    service_env: dict[str, str],
    mongo_db: Any,
) -> None:
    await add_product(mongo_db, "LAST-TEN", stock=10)
    replicas = [
        function_process("order_steps.main:app", env=service_env, name=f"order-steps-{n}")
        for n in (1, 2)
    ]
    async with httpx.AsyncClient(timeout=60) as client:
        orders = []
        for _ in range(50):
            response = await client.post(
                f"{replicas[0].url}/steps/validate", json=placed(("LAST-TEN", 1))
            )
            assert response.status_code == 200, response.text
            orders.append(response.json())

        answers = await asyncio.gather(
            *(
                client.post(f"{replicas[n % 2].url}/steps/reserve-inventory", json=order)
                for n, order in enumerate(orders)
            )
        )

    assert Counter(a.status_code for a in answers) == {200: 10, 422: 40}
    product = await mongo_db["products"].find_one({"sku": "LAST-TEN"})
    assert product["stock"] == 0
    assert product["version"] == 11  # one version per unit taken
    assert await mongo_db["inventory_moves"].count_documents({"state": "applied"}) == 10
    winners = {o["order_id"] for o, a in zip(orders, answers, strict=True) if a.status_code == 200}
    reserved = {m["order_id"] async for m in mongo_db["inventory_moves"].find({"state": "applied"})}
    assert reserved == winners


async def test_a_move_a_crashed_holder_applied_is_not_applied_twice(steps: Steps) -> None:
    product = await add_product(steps.db, "SHOE", stock=5)
    order = await steps.ok("validate", placed(("SHOE", 2)))
    move_id = f"{order['order_id']}/SHOE/reserve"
    # The holder died after writing the product and before marking its move applied.
    await steps.db["inventory_moves"].insert_one(
        {"_id": move_id, "state": "pending", "product_id": product["_id"], "committed_at": None}
    )
    await steps.db["products"].update_one(
        {"_id": product["_id"]}, {"$set": {"stock": 3, "version": 2, "inventory_move": move_id}}
    )

    await steps.ok("reserve-inventory", order)

    assert await steps.stock("SHOE") == 3
    assert (await steps.db["inventory_moves"].find_one({"_id": move_id}))["state"] == "applied"


async def test_a_move_a_crashed_holder_never_wrote_is_applied_when_the_step_runs_again(
    steps: Steps,
) -> None:
    product = await add_product(steps.db, "SHOE", stock=5)
    order = await steps.ok("validate", placed(("SHOE", 2)))
    move_id = f"{order['order_id']}/SHOE/reserve"
    # The holder died after recording its move and before writing the product.
    await steps.db["inventory_moves"].insert_one(
        {"_id": move_id, "state": "pending", "product_id": product["_id"], "committed_at": None}
    )

    await steps.ok("reserve-inventory", order)

    assert await steps.stock("SHOE") == 3
    assert (await steps.db["inventory_moves"].find_one({"_id": move_id}))["state"] == "applied"
