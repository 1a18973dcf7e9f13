"""The smallest function: replies to every event with its own data. For tests and benchmarks."""

from __future__ import annotations

from typing import Any

from fnkit import CloudEvent, Context, Function, event_data

ECHO_REPLY = "io.knative-playbook.echo.replied.v1"

app: Function[Any] = Function("echo", description="Replies to every CloudEvent with its data.")


@app.fallback()
async def echo(event: CloudEvent, ctx: Context[Any]) -> CloudEvent:
    return ctx.event(ECHO_REPLY, event_data(event), subject=event.get_id())
