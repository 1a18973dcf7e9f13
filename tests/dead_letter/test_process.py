"""dead-letter as it runs: `fnkit-serve dead_letter.main:app` in a process of its own."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import orjson
import pytest
from devplane.servers import FunctionProcess

from tests.dead_letter.helpers import (
    ITEM_FAILED,
    ITEM_REQUESTED,
    Broker,
    binary_dead_letter,
    eventually,
)

pytestmark = pytest.mark.integration


async def test_served_process_stores_replays_fans_in_and_counts(
    function_process: Callable[..., FunctionProcess], mongo_env: dict[str, str], broker: Broker
) -> None:
    proc = function_process(
        "dead_letter.main:app", env={**mongo_env, "K_SINK": broker.url}, name="dead-letter"
    )
    product = binary_dead_letter(b'{"sku": "p-1"}')
    item = binary_dead_letter(
        orjson.dumps({"job_id": "job-1", "item_id": "i-1"}), type=ITEM_REQUESTED
    )

    async with httpx.AsyncClient(base_url=proc.url) as client:
        for message in (product, item, item):
            response = await client.post("/", headers=message[0], content=message[1])
            assert response.status_code == 204, response.text
        await eventually(lambda: broker.accepted_of_type(ITEM_FAILED))
        page = (await client.get("/dead-letters", params={"type": product[0]["ce-type"]})).json()
        [letter] = page["items"]
        replay = await client.post(f"/dead-letters/{letter['id']}/replay")
        metrics = (await client.get("/metrics")).text

    assert replay.status_code == 200
    assert [r.body for r in broker.accepted if r.headers["ce-id"] == product[0]["ce-id"]] == [
        b'{"sku": "p-1"}'
    ]
    assert len(broker.accepted_of_type(ITEM_FAILED)) == 1
    assert f'dead_letter_stored_total{{type="{ITEM_REQUESTED}"}} 1.0' in metrics
    assert 'dead_letter_replays_total{outcome="delivered"} 1.0' in metrics
    assert "dead_letter_redelivered_total 1.0" in metrics
