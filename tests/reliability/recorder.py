"""A Mongo-backed idempotent subscriber for the reliability tests.

Each event's effect is one document whose `_id` is the event id: a redelivery (a retry after an
outage, a devplane duplicate) finds it there and changes nothing, which is the pattern every
service's handlers follow. `SLEEP_SECONDS` in the data stalls the handler, to play a slow one.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from fnkit import CloudEvent, Context, Function, FunctionSettings, event_data
from fnkit.mongo import insert_once

RECORDED = "io.knative-playbook.test.recorded.v1"

app: Function[FunctionSettings] = Function("recorder", mongo=True)


@app.on(RECORDED, idempotent=True)
async def record(event: CloudEvent, ctx: Context[FunctionSettings]) -> None:
    data = event_data(event)
    stall = data.get("sleep_seconds", 0) if isinstance(data, dict) else 0
    if stall:
        await asyncio.sleep(float(stall))
    await insert_once(
        ctx.db["effects"],
        {
            "_id": event.get_id(),
            "seq": data.get("seq") if isinstance(data, dict) else None,
            "at": datetime.now(UTC),
        },
    )
