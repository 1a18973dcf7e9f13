"""A function whose REST route emits an event: does a client's trace reach the event?"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fnkit import ContextDep, Function

THING_CREATED = "io.knative-playbook.test.thing.created.v1"

app: Function[Any] = Function("rest-emitter")
router = APIRouter()


@router.post("/things", status_code=202)
async def create_thing(ctx: ContextDep) -> dict[str, str]:
    event = ctx.event(THING_CREATED, {"name": "thing"})
    await ctx.emit(event)
    return {"event_id": event.get_id()}


app.api.include_router(router)
