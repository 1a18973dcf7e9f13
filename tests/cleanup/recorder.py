"""A subscriber that stores every event it gets (type, source, data) in MongoDB's `received`."""

from __future__ import annotations

from typing import Any

from fnkit import CloudEvent, Context, Function, event_data

app: Function[Any] = Function("recorder", mongo=True)


@app.fallback()
async def record(event: CloudEvent, ctx: Context[Any]) -> None:
    await ctx.db["received"].insert_one(
        {"type": event.get_type(), "source": event.get_source(), "data": event_data(event)}
    )
