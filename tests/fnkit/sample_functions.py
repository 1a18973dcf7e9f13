"""Functions the fnkit tests serve, in-process and as real processes (`module:app`)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from fastapi import APIRouter
from fnkit import (
    CloudEvent,
    Conflict,
    Context,
    ContextDep,
    Function,
    FunctionSettings,
    NotFound,
    Rejected,
    Unavailable,
    event_data,
)
from fnkit.events import received_message
from pydantic import BaseModel
from pymongo.errors import DuplicateKeyError

PINGED = "io.knative-playbook.test.pinged.v1"
PONGED = "io.knative-playbook.test.ponged.v1"
NOTED = "io.knative-playbook.test.noted.v1"
REFUSED = "io.knative-playbook.test.refused.v1"
CRASHED = "io.knative-playbook.test.crashed.v1"
VALIDATED = "io.knative-playbook.test.validated.v1"
FORWARDED = "io.knative-playbook.test.forwarded.v1"
RELAYED = "io.knative-playbook.test.relayed.v1"
SLEPT = "io.knative-playbook.test.slept.v1"
WOKE = "io.knative-playbook.test.woke.v1"
MIRRORED = "io.knative-playbook.test.mirrored.v1"
RECORDED = "io.knative-playbook.test.recorded.v1"
RECEIPTED = "io.knative-playbook.test.receipted.v1"
COUNTED = "io.knative-playbook.test.counted.v1"

RECORDS = "records"
ATTEMPTS = "attempts"

log = logging.getLogger("tests.fnkit.sample")


class SampleSettings(FunctionSettings):
    greeting: str = "hello"


class Order(BaseModel):
    sku: str
    quantity: int


class NewRecord(BaseModel):
    key: str
    note: str = ""


async def ping(event: CloudEvent, ctx: Context[SampleSettings]) -> CloudEvent:
    data = {"echo": event_data(event), "greeting": ctx.settings.greeting}
    return ctx.event(PONGED, data, subject=event.get_id())


async def note(event: CloudEvent, ctx: Context[SampleSettings]) -> None:
    return None


async def refuse(event: CloudEvent, ctx: Context[SampleSettings]) -> None:
    raise Rejected("this event can never be accepted", details={"id": event.get_id()})


async def crash(event: CloudEvent, ctx: Context[SampleSettings]) -> None:
    raise RuntimeError("the handler has a bug")


async def validate(event: CloudEvent, ctx: Context[SampleSettings]) -> CloudEvent:
    order = Order.model_validate(event_data(event))
    return ctx.event(PONGED, order.model_dump())


async def forward(event: CloudEvent, ctx: Context[SampleSettings]) -> None:
    await ctx.emit(ctx.event(RELAYED, event_data(event), subject=event.get_id()))


async def sleep(event: CloudEvent, ctx: Context[SampleSettings]) -> CloudEvent:
    seconds = float(event_data(event)["seconds"])
    log.info("slow handler started", extra={"event_id": event.get_id()})
    await asyncio.sleep(seconds)
    return ctx.event(WOKE, {"slept": seconds}, subject=event.get_id())


async def mirror(event: CloudEvent, ctx: Context[SampleSettings]) -> CloudEvent:
    message = received_message()
    return ctx.event(
        PONGED, {"body": message.body.decode(), "content_type": message.headers["content-type"]}
    )


async def record(event: CloudEvent, ctx: Context[SampleSettings]) -> CloudEvent:
    """The side effect under test: one document per delivery that runs, and a receipt."""
    data = event_data(event)
    counted = await ctx.db[ATTEMPTS].find_one_and_update(
        {"_id": data["key"]}, {"$inc": {"n": 1}}, upsert=True, return_document=True
    )
    attempt = counted["n"] if counted else 0
    if attempt <= data.get("fail_times", 0):
        raise Unavailable(f"attempt {attempt} fails on purpose")
    receipt = uuid.uuid4().hex
    await ctx.db[RECORDS].insert_one({"_id": data["key"], "receipt": receipt})
    return ctx.event(RECEIPTED, {"key": data["key"], "receipt": receipt})


async def count(event: CloudEvent, ctx: Context[SampleSettings]) -> CloudEvent | None:
    """Idempotent by a business key (the order id), whatever the event id."""
    order_id = event_data(event)["order_id"]

    async def work() -> CloudEvent:
        await ctx.db[RECORDS].insert_one({"_id": order_id, "event_id": event.get_id()})
        return ctx.event(RECEIPTED, {"order_id": order_id, "first_event": event.get_id()})

    reply, _ = await ctx.once(f"order:{order_id}", work)
    return reply


async def create_indexes(ctx: Context[SampleSettings]) -> None:
    await ctx.db[RECORDS].create_index("receipt")


def _router() -> APIRouter:
    router = APIRouter()

    @router.post("/records", status_code=201)
    async def create_record(body: NewRecord, ctx: ContextDep) -> dict[str, str]:
        try:
            await ctx.db[RECORDS].insert_one({"_id": body.key, "note": body.note})
        except DuplicateKeyError:
            raise Conflict(f"record {body.key!r} exists") from None
        return {"key": body.key}

    @router.get("/records/{key}")
    async def get_record(key: str, ctx: ContextDep) -> dict[str, Any]:
        found = await ctx.db[RECORDS].find_one({"_id": key})
        if found is None:
            raise NotFound(f"no record {key!r}")
        return found

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("the route has a bug")

    @router.get("/orders/parse")
    async def parse_order() -> Order:
        return Order.model_validate({"sku": "A-1", "quantity": "many"})

    @router.get("/maintenance")
    async def maintenance() -> None:
        raise Unavailable("down for maintenance")

    @router.get("/settings/greeting")
    async def greeting(ctx: ContextDep) -> dict[str, str]:
        return {"greeting": ctx.settings.greeting}

    return router


def create_app(
    name: str = "fnkit-sample",
    settings: SampleSettings | None = None,
    *,
    mongo: bool = False,
    minio: bool = False,
    fallback: bool = False,
) -> Function[SampleSettings]:
    fn = Function(name, settings_class=SampleSettings, settings=settings, mongo=mongo, minio=minio)
    fn.on(PINGED)(ping)
    fn.on(NOTED)(note)
    fn.on(REFUSED)(refuse)
    fn.on(CRASHED)(crash)
    fn.on(VALIDATED)(validate)
    fn.on(FORWARDED)(forward)
    fn.on(SLEPT)(sleep)
    fn.on(MIRRORED)(mirror)
    if mongo:
        fn.on(RECORDED, idempotent=True)(record)
        fn.on(COUNTED)(count)
        fn.on_startup(create_indexes)
        fn.api.include_router(_router())
    if fallback:
        fn.fallback()(ping)
    return fn


app = create_app()
minio_app = create_app("fnkit-sample-minio", minio=True)
routes_app = create_app("fnkit-sample-routes", mongo=True)
