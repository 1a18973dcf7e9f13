"""The floor: a bare ASGI app on uvicorn that answers a CloudEvent with a reply event.

No validation, no metrics, no logs: what Python, uvicorn, uvloop and httptools cost alone.
Served by `uvicorn bench.baselines.bare_asgi:app --loop uvloop --http httptools`.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_REPLY_HEADERS = [
    (b"ce-specversion", b"1.0"),
    (b"ce-type", b"io.knative-playbook.echo.replied.v1"),
    (b"ce-source", b"/bench/bare-asgi"),
    (b"content-type", b"application/json"),
]


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return  # lifespan: nothing to set up
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    headers = [
        *_REPLY_HEADERS,
        (b"ce-id", os.urandom(16).hex().encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
