"""The REST floor: products-api's GET-by-id and POST as a bare ASGI app on one PyMongo client.

The same database calls as products-api (`find_one` by `_id` without the outbox; `insert_one`
of the same document, outbox entry included) and the same JSON answers, with none of
products-api's framework: no FastAPI routing or dependency injection, no pydantic validation,
no outbox relay (the event is stored, never sent), no traceparent. Served by
`uvicorn bench.baselines.bare_rest:app --loop uvloop --http httptools --lifespan on`, with
MONGO_URL and MONGO_DB from the environment. Products priced in currencies with two decimal
places only (the benchmark's products are in EUR).

With BARE_EMIT=1 a create also posts its event to K_SINK (structured JSON, on fnkit's small
HTTP client, the lightest in the project) after the insert and before answering, with no
outbox: the floor of storing a product and announcing it, without the guarantee (an event is
lost if the process dies in between; a refused event answers 503 with the product stored).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from bson import ObjectId
from bson.errors import InvalidId
from fnkit.httpclient import HttpClient, header_lines
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

PREFIX: Final = "/products"
CREATED: Final = "io.knative-playbook.product.created.v1"
SOURCE: Final = "/knative-playbook/products-api"
_JSON: Final = (b"content-type", b"application/json")
_EVENT_HEAD: Final = header_lines([(b"content-type", b"application/cloudevents+json")])

_state: dict[str, Any] = {}


def _now() -> datetime:
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _time(moment: datetime) -> str:
    # pydantic's form: microseconds unless there are none, "Z" for UTC.
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if moment.microsecond else "%Y-%m-%dT%H:%M:%SZ")


def _price(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def _minor(price: str | float | int) -> int:
    whole, _, cents = str(price).partition(".")
    return int(whole) * 100 + int((cents + "00")[:2])


def _product(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(doc["_id"]),
        "sku": doc["sku"],
        "name": doc["name"],
        "description": doc["description"],
        "currency": doc["currency"],
        "price": _price(doc["price_minor"]),
        "stock": doc["stock"],
        "tags": doc["tags"],
        "version": doc["version"],
        "created_at": _time(doc["created_at"]),
        "updated_at": _time(doc["updated_at"]),
    }


async def _respond(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [_JSON, (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _error(code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message, "details": None}})


async def _get(send: Send, products: AsyncCollection[dict[str, Any]], raw_id: str) -> None:
    try:
        product_id = ObjectId(raw_id)
    except InvalidId:
        await _respond(send, 422, _error("invalid_request", "not a product id"))
        return
    doc = await products.find_one({"_id": product_id}, {"outbox": 0})
    if doc is None or "deleted_at" in doc:
        await _respond(send, 404, _error("not_found", f"product {raw_id} does not exist"))
        return
    etag = f'"{doc["version"]}"'.encode()
    await _respond(send, 200, orjson.dumps(_product(doc)), [(b"etag", etag)])


async def _post(send: Send, products: AsyncCollection[dict[str, Any]], body: bytes) -> None:
    fields = orjson.loads(body)
    product_id, now = ObjectId(), _now()
    doc = {
        "_id": product_id,
        "sku": fields["sku"],
        "name": fields["name"],
        "description": fields.get("description", ""),
        "price_minor": _minor(fields["price"]),
        "currency": fields["currency"],
        "stock": fields.get("stock", 0),
        "tags": fields.get("tags", []),
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    product = _product(doc)
    event = {
        "specversion": "1.0",
        "id": f"{product_id}-v1",
        "source": SOURCE,
        "type": CREATED,
        "time": now.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "subject": str(product_id),
        "data": product,
    }
    doc["outbox"] = [{"id": event["id"], "type": CREATED, "at": now, "event": orjson.dumps(event)}]
    try:
        await products.insert_one(doc)
    except DuplicateKeyError:
        await _respond(send, 409, _error("conflict", f"sku {fields['sku']!r} is taken"))
        return
    sink: str | None = _state.get("sink")
    if sink is not None:
        answer = await _state["http"].post(sink, _EVENT_HEAD, orjson.dumps(event))
        if not 200 <= answer.status < 300:
            await _respond(send, 503, _error("unavailable", "the broker refused the event"))
            return
    headers = [(b"location", f"{PREFIX}/{product_id}".encode()), (b"etag", b'"1"')]
    await _respond(send, 201, orjson.dumps(product), headers)


async def _lifespan(receive: Receive, send: Send) -> None:
    await receive()  # lifespan.startup
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        os.environ["MONGO_URL"], appname="bare-rest", tz_aware=True
    )
    _state["products"] = client[os.environ["MONGO_DB"]]["products"]
    http = HttpClient()
    if os.environ.get("BARE_EMIT") == "1":
        _state["sink"], _state["http"] = os.environ["K_SINK"], http
    await send({"type": "lifespan.startup.complete"})
    await receive()  # lifespan.shutdown
    await http.aclose()
    await client.close()
    await send({"type": "lifespan.shutdown.complete"})


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    path: str = scope["path"]
    products = _state["products"]
    if scope["method"] == "GET" and path.startswith(PREFIX + "/"):
        await _get(send, products, path[len(PREFIX) + 1 :])
    elif scope["method"] == "POST" and path == PREFIX:
        await _post(send, products, body)
    else:
        await _respond(send, 404, _error("not_found", "Not Found"))
