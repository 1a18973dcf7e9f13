"""REST routes beside the event handlers: a body size limit, and one error body for all.

fnkit maps its own errors to `{"error": {"code", "message", "details"}}`; FastAPI answers
request validation errors (422) and HTTP errors (404 for unknown paths, 405) with
`{"detail": ...}` of its own. `install` makes those use the contract's body as well, so that a
client handles a single shape, and limits request bodies; `error_responses` documents the
shape per route. `shortcut` answers a service's hottest route ahead of FastAPI's routing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fnkit.errors import ErrorResponse, PayloadTooLarge, error_response

__all__ = ["BodyLimit", "ErrorBody", "Shortcut", "error_responses", "install", "shortcut"]

log = logging.getLogger("fnkit")

_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable machine-readable reason.", examples=["not_found"])
    message: str = Field(description="What went wrong, for people.")
    details: Any = Field(
        default=None,
        description="For validation errors, one entry per problem: `loc` (the path of the "
        'offending field, such as `["body", "price"]`), `msg` and `type`.',
    )


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorInfo


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these statuses, each with the contract's error body."""
    return {
        status: {"model": ErrorBody, "description": HTTPStatus(status).phrase}
        for status in statuses
    }


def validation_problem(exc: RequestValidationError) -> ErrorResponse:
    """A 422 listing each problem's location, without echoing the input."""
    details = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    return ErrorResponse(422, "invalid_request", "the request failed validation", details)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problem = validation_problem(exc)
    return JSONResponse(problem.body(), status_code=problem.status)


def _allowed_methods(request: Request) -> str:
    # Starlette's 405 names the methods of the first route on the path only; a path served by
    # several routes (GET and POST /things) must list them all. Asking each route whether it
    # fully matches the path under each method works for included routers too.
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _CODES.get(exc.status_code, f"http_{exc.status_code}")
    problem = ErrorResponse(exc.status_code, code, str(exc.detail))
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return JSONResponse(problem.body(), status_code=problem.status, headers=headers)


class BodyLimit:
    """413 for request bodies over `max_bytes`, whether declared (Content-Length) or streamed.

    A declared size is refused before a byte is read. A streamed body is counted as the route
    reads it, and the excess raised as an HTTPException: FastAPI turns any other exception
    while reading a body into a 400.
    """

    def __init__(self, app: ASGIApp, max_bytes: int | Callable[[], int]) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes() if callable(self.max_bytes) else self.max_bytes
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"")
        if declared.isdigit() and int(declared) > limit:
            problem = error_response(
                PayloadTooLarge(
                    f"request body of {int(declared)} bytes exceeds the limit of {limit}"
                )
            )
            body = orjson.dumps(problem.body())
            await send(
                {
                    "type": "http.response.start",
                    "status": problem.status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"request body exceeds the limit of {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)


def _documented(api: FastAPI) -> Callable[[], dict[str, Any]]:
    """`api.openapi` that also documents what `install` answers on every route.

    A route taking a body can get 400 (not JSON) and 413 (over the limit) without naming them,
    and FastAPI documents its own validation body for 422, which `install` replaces: the
    document must say what clients really get.
    """
    build = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is not None:
            return api.openapi_schema
        schema = build()
        error = {"$ref": "#/components/schemas/ErrorBody"}
        for methods in schema.get("paths", {}).values():
            for operation in methods.values():
                responses = operation.get("responses", {})
                if "requestBody" in operation:
                    for status in (400, 413):
                        responses.setdefault(
                            str(status),
                            {
                                "description": HTTPStatus(status).phrase,
                                "content": {"application/json": {"schema": error}},
                            },
                        )
                invalid = responses.get("422", {}).get("content", {}).get("application/json", {})
                if invalid.get("schema") == {"$ref": "#/components/schemas/HTTPValidationError"}:
                    invalid["schema"] = error
                operation["responses"] = dict(sorted(responses.items()))
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in {**body.pop("$defs", {}), "ErrorBody": body}.items():
            components.setdefault(name, definition)
        api.openapi_schema = schema
        return schema

    return openapi


def install(api: FastAPI, *, max_body_bytes: int | Callable[[], int]) -> None:
    """Limit request bodies, and answer validation and HTTP errors with the contract's body.

    `max_body_bytes` may be a callable, read per request: an app built at import time need
    not read its settings (and refuse placeholder secrets) before it serves.
    """
    api.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    api.add_exception_handler(RequestValidationError, _validation_error)
    api.add_exception_handler(HTTPException, _http_error)
    api.openapi = _documented(api)  # type: ignore[method-assign]


ShortcutHandler = Callable[[Mapping[str, str]], Awaitable[Response]]
# Takes the request's scope, the path's parameters and the JSON body; None hands the request
# on to FastAPI.
BodyShortcutHandler = Callable[[Scope, Mapping[str, str], bytes], Awaitable[Response | None]]


class Shortcut:
    """One route answered in plain ASGI, ahead of FastAPI's routing and dependency injection.

    For the route every client calls most (a read by id): FastAPI's routing, dependency
    solving and request objects cost more CPU than the database call behind them. The
    shortcut takes exactly the requests its pattern matches, with the path's named groups as
    parameters; everything else goes on to FastAPI, whose route for the same path documents
    it and answers what the pattern leaves out (a malformed id gets FastAPI's 422). Errors
    get the contract's body and are logged as a FastAPI route's are.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        method: str,
        pattern: re.Pattern[str],
        handler: ShortcutHandler | None = None,
        body_handler: BodyShortcutHandler | None = None,
    ) -> None:
        self.app = app
        self.method = method
        self.pattern = pattern
        self.handler = handler
        self.body_handler = body_handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = None
        if scope["type"] == "http" and scope["method"] == self.method:
            # Matched as FastAPI's routes are: on the path below the app's root path.
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            match = self.pattern.fullmatch(path[len(root) :] if path.startswith(root) else path)
        if match is not None and self.body_handler is not None and not _json_body(scope):
            match = None  # FastAPI says what it makes of a body that is not declared JSON
        if match is None:
            await self.app(scope, receive, send)
            return
        try:
            if self.body_handler is None:
                assert self.handler is not None
                response = await self.handler(match.groupdict())
            else:
                try:
                    body = await _read_body(receive)
                except HTTPException as exc:  # over the limit: FastAPI answers it as usual
                    await self.app(scope, _replay(receive, error=exc), send)
                    return
                answer = await self.body_handler(scope, match.groupdict(), body)
                if answer is None:
                    await self.app(scope, _replay(receive, body=body), send)
                    return
                response = answer
        except Exception as exc:
            problem = error_response(exc)
            if problem.status != 500:
                log.warning(
                    "request failed",
                    extra={
                        "path": scope["path"],
                        "status": problem.status,
                        "error": problem.message,
                    },
                )
            answer = JSONResponse(problem.body(), status_code=problem.status)
            await answer(scope, receive, send)
            if problem.status == 500:
                raise  # answered; the function logs the crash with its traceback
            return
        await response(scope, receive, send)


def shortcut(api: FastAPI, method: str, path: str, handler: ShortcutHandler) -> None:
    """Answer `method` on paths fully matching the regex `path` with `handler` (see Shortcut)."""
    api.add_middleware(Shortcut, method=method, pattern=re.compile(path), handler=handler)


def body_shortcut(api: FastAPI, method: str, path: str, handler: BodyShortcutHandler) -> None:
    """As `shortcut`, for a route taking a JSON body: `handler(scope, params, body)` answers, or
    returns None (a body it does not accept) and FastAPI's route answers instead, with the
    same body, so that what a client is told about a bad body is FastAPI's answer."""
    api.add_middleware(Shortcut, method=method, pattern=re.compile(path), body_handler=handler)


def _json_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media_type: bytes = value.split(b";", 1)[0].strip().lower()
            return media_type == b"application/json"
    return False


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)  # disconnected: whatever the handler makes of it
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(receive: Receive, *, body: bytes = b"", error: Exception | None = None) -> Receive:
    """The request's receive, for FastAPI, after the shortcut has read the body."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        if error is not None:
            raise error
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
