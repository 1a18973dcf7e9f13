"""A scriptable subscriber for devplane's end-to-end tests: records every attempt in MongoDB.

The event's data drives it: `script` lists the status of each attempt in turn (then 2xx),
`always` fails every attempt with that status, `sleep` lists seconds to stall each attempt
before answering, `reply` ({type, data, extensions}) answers
with a reply event. Each attempt is a document in `attempts` (subscriber, event id, attempt
number, status, time, attributes), so tests can count attempts and measure backoff.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fnkit import CloudEvent, Context, Function, FunctionError, FunctionSettings, event_data


class Settings(FunctionSettings):
    subscriber_name: str = "subscriber"
    follow_script: bool = True  # off for the recording dead-letter sink


class ScriptedFailure(FunctionError):
    code = "scripted_failure"


app: Function[Settings] = Function("test-subscriber", settings_class=Settings, mongo=True)


@app.fallback()
async def record(event: CloudEvent, ctx: Context[Settings]) -> CloudEvent | None:
    data = event_data(event)
    script: dict[str, Any] = data if isinstance(data, dict) and ctx.settings.follow_script else {}
    key = {"subscriber": ctx.settings.subscriber_name, "event_id": event.get_id()}
    attempt = await ctx.db["attempts"].count_documents(key) + 1
    statuses = script.get("script", [])
    status = statuses[attempt - 1] if attempt <= len(statuses) else script.get("always", 200)
    await ctx.db["attempts"].insert_one(
        {
            **key,
            "attempt": attempt,
            "status": status,
            "at": datetime.now(UTC),
            "type": event.get_type(),
            "attributes": {name: str(value) for name, value in event.get_attributes().items()},
        }
    )
    stalls = script.get("sleep", [])
    if attempt <= len(stalls):
        await asyncio.sleep(stalls[attempt - 1])
    if status >= 300:
        failure = ScriptedFailure(f"scripted failure {status} on attempt {attempt}")
        failure.status = status
        raise failure
    reply = script.get("reply")
    if reply:
        return ctx.event(reply["type"], reply.get("data", {}), **reply.get("extensions", {}))
    return None
