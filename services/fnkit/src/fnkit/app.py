"""The function app: a CloudEvent fast path in front of a FastAPI app.

CloudEvents arrive as `POST /` (where Knative delivers). That path is handled here in plain
ASGI, without FastAPI's routing and request objects, because it is what every invocation
pays. Everything else (REST routes, health, metrics, `/docs`) is FastAPI's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fnkit.config import FunctionSettings
from fnkit.context import Context
from fnkit.emit import Emitter
from fnkit.errors import BadEvent, ErrorResponse, FunctionError, PayloadTooLarge, error_response
from fnkit.events import (
    CloudEvent,
    ReceivedMessage,
    current_message,
    encode_binary,
    parse_event,
)
from fnkit.logs import configure_logging
from fnkit.metrics import InvocationMetrics
from fnkit.tracing import TraceContext, current_trace

if TYPE_CHECKING:
    from minio import Minio
    from pymongo import AsyncMongoClient

S = TypeVar("S", bound=FunctionSettings)
Handler = Callable[[CloudEvent, Context[Any]], Awaitable[CloudEvent | None]]
Hook = Callable[[Context[Any]], Awaitable[None]]
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

log = logging.getLogger("fnkit")

_JSON = [(b"content-type", b"application/json")]
_UNHANDLED = "unhandled"  # metric label for types with no handler: keeps label cardinality bounded
_FALLBACK = "fallback"  # metric label for types served by the fallback handler
_INVALID = "invalid"  # metric label for requests that are not valid CloudEvents


class _ClientGone(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Route:
    handler: Handler
    idempotent: bool


class Function(Generic[S]):
    """One function: CloudEvent handlers by type, FastAPI routes, clients, health and metrics.

    `app = Function("name", ...)` is an ASGI application; serve it with `fnkit-serve module:app`.
    """

    def __init__(
        self,
        name: str,
        *,
        settings_class: type[S] = FunctionSettings,  # type: ignore[assignment]
        settings: S | None = None,
        mongo: bool = False,
        minio: bool = False,
        description: str = "",
        version: str = "0.1.0",
    ) -> None:
        self.name = name
        self.settings_class = settings_class
        self._settings = settings
        self.uses_mongo = mongo
        self.uses_minio = minio
        self._routes: dict[str, _Route] = {}
        self._fallback: _Route | None = None
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []
        self._setup_done = asyncio.Event()
        self._setup_error = "starting"
        self.metrics = InvocationMetrics(name)
        self.context: Context[S] | None = None
        self.api = FastAPI(
            title=name, description=description, version=version, lifespan=self._lifespan
        )
        self._install_routes()

    # -- registration ---------------------------------------------------------------------

    @property
    def settings(self) -> S:
        """Read from the environment on first use, so that importing a service is cheap."""
        if self._settings is None:
            self._settings = self.settings_class()
        return self._settings

    def on(self, *event_types: str, idempotent: bool = False) -> Callable[[Handler], Handler]:
        """Register a handler for exact event types.

        With `idempotent=True` the handler runs once per (source, id): a redelivery gets the
        first delivery's reply without running it again (needs mongo=True).
        """
        if idempotent and not self.uses_mongo:
            raise ValueError(f"{self.name}: idempotent handlers need mongo=True")

        def register(handler: Handler) -> Handler:
            for event_type in event_types:
                if event_type in self._routes:
                    raise ValueError(f"{self.name}: {event_type!r} already has a handler")
                self._routes[event_type] = _Route(handler, idempotent)
            return handler

        return register

    def fallback(self, *, idempotent: bool = False) -> Callable[[Handler], Handler]:
        """Register the handler for every type without a handler of its own."""

        def register(handler: Handler) -> Handler:
            self._fallback = _Route(handler, idempotent)
            return handler

        return register

    def on_startup(self, hook: Hook) -> Hook:
        """Run at start-up (index creation, sweeps); retried until it succeeds, readiness waits."""
        self._startup.append(hook)
        return hook

    def on_shutdown(self, hook: Hook) -> Hook:
        self._shutdown.append(hook)
        return hook

    @property
    def handled_types(self) -> list[str]:
        return sorted(self._routes)

    # -- ASGI -----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/":
            await self._invoke(scope, receive, send)
        else:
            await self.api(scope, receive, send)

    async def _invoke(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = await _read_body(receive, headers, self.settings.max_event_bytes)
            event = parse_event(headers, body)
        except _ClientGone:
            return
        except FunctionError as exc:
            problem = error_response(exc)
            await _send(send, problem.status, _JSON, orjson.dumps(problem.body()))
            self.metrics.observe(_INVALID, "rejected", time.perf_counter() - started)
            log.warning(
                "invalid event",
                extra={"outcome": "rejected", "status": problem.status, "error": problem.message},
            )
            return
        trace = TraceContext.parse(
            event.get_extension("traceparent") or headers.get("traceparent")
        ) or TraceContext.new_root()
        trace_token = current_trace.set(trace)
        message_token = current_message.set(ReceivedMessage(headers, body))
        event_type = event.get_type()
        route = self._routes.get(event_type) or self._fallback
        label = event_type if event_type in self._routes else (
            _FALLBACK if self._fallback else _UNHANDLED)
        cold_start = self.metrics.first_invocation()
        self.metrics.in_flight.inc()
        outcome, status, problem_message = "ok", 204, None
        try:
            reply = await self._dispatch(route, event)
        except Exception as exc:
            problem = error_response(exc)
            status, problem_message = problem.status, problem.message
            outcome = "rejected" if problem.status < 500 else "failed"
            if problem.status == 500:
                log.error("handler crashed", exc_info=exc, extra={"event_id": event.get_id()})
            elif problem.status >= 500:
                problem_message = f"{problem.message} ({type(exc).__name__}: {exc})"
            await _send(send, problem.status, _JSON, orjson.dumps(problem.body()))
        else:
            if isinstance(reply, _Duplicate):
                outcome, reply = "duplicate", reply.reply
            if reply is None:
                await _send(send, 204, [], b"")
            else:
                status = 200
                reply_headers, reply_body = encode_binary(reply)
                await _send(send, 200, reply_headers, reply_body)
        finally:
            self.metrics.in_flight.dec()
            elapsed = time.perf_counter() - started
            self.metrics.observe(label, outcome, elapsed)
            fields: dict[str, Any] = {
                "event_id": event.get_id(), "type": event_type, "source": event.get_source(),
                "outcome": outcome, "status": status, "duration_ms": round(elapsed * 1000, 3),
            }
            if cold_start:
                fields["cold_start"] = True
            if problem_message:
                fields["error"] = problem_message
            log.log(logging.WARNING if status >= 500 else logging.INFO, "invocation", extra=fields)
            current_trace.reset(trace_token)
            current_message.reset(message_token)

    async def _dispatch(self, route: _Route | None, event: CloudEvent) -> CloudEvent | _Duplicate | None:
        if not self._setup_done.is_set():
            raise _Starting(f"{self.name} is starting: {self._setup_error}")
        if route is None:
            raise BadEvent(
                f"no handler for event type {event.get_type()!r}; "
                f"{self.name} handles: {', '.join(self.handled_types) or 'nothing'}"
            )
        ctx = self.context
        assert ctx is not None
        if not route.idempotent:
            return await route.handler(event, ctx)
        from fnkit.idempotency import event_key

        reply, ran = await ctx.guard.run(event_key(event), lambda: route.handler(event, ctx))
        return reply if ran else _Duplicate(reply)

    # -- lifespan -------------------------------------------------------------------------

    @asynccontextmanager
    async def _lifespan(self, api: FastAPI) -> AsyncIterator[None]:
        settings = self.settings
        configure_logging(self.name, settings.log_level)
        if settings.environment != "dev":
            placeholders = settings.placeholder_secrets(mongo=self.uses_mongo, minio=self.uses_minio)
            if placeholders:
                raise RuntimeError(
                    f"{self.name}: refusing to start with development placeholder secrets in "
                    f"{', '.join(placeholders)} (ENVIRONMENT={settings.environment}); "
                    "set real secrets, or ENVIRONMENT=dev on a laptop"
                )
        executor = ThreadPoolExecutor(settings.blocking_workers, thread_name_prefix=self.name)
        emitter = Emitter(
            settings.k_sink, function=self.name, timeout=settings.emit_timeout_seconds,
            attempts=settings.emit_attempts, backoff=settings.emit_backoff_seconds,
        )
        ctx = Context(
            self.name, settings, emitter, executor,
            mongo=_mongo_client(self.name, settings) if self.uses_mongo else None,
            minio=_minio_client(settings) if self.uses_minio else None,
        )
        self.context = ctx
        api.state.ctx = ctx
        setup = asyncio.create_task(self._run_startup_hooks(ctx), name=f"{self.name}-setup")
        startup_seconds = self.metrics.ready()
        log.info("ready", extra={"startup_seconds": round(startup_seconds, 3),
                                 "handles": self.handled_types})
        try:
            yield
        finally:
            # uvicorn has drained in-flight requests by now (SIGTERM -> stop accepting -> wait).
            setup.cancel()
            for hook in self._shutdown:
                try:
                    await hook(ctx)
                except Exception:
                    log.exception("shutdown hook failed", extra={"hook": hook.__name__})
            await emitter.aclose()
            if ctx.mongo is not None:
                await ctx.mongo.close()
            executor.shutdown(wait=True)
            log.info("stopped")

    async def _run_startup_hooks(self, ctx: Context[S]) -> None:
        """Start-up work that needs dependencies; retried, so a function can start before them."""
        delay = 0.2
        pending = list(self._startup)
        while pending:
            hook = pending[0]
            try:
                await hook(ctx)
            except Exception as exc:
                self._setup_error = f"start-up hook {hook.__name__} failed: {exc}"
                log.warning("start-up hook failed; retrying", extra={
                    "hook": hook.__name__, "error": str(exc), "retry_in_s": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            else:
                pending.pop(0)
        self._setup_done.set()

    # -- health and metrics ---------------------------------------------------------------

    async def readiness(self) -> dict[str, str]:
        """Each dependency's state: 'ok' or what is wrong. Ready when all are 'ok'."""
        checks: dict[str, str] = {
            "setup": "ok" if self._setup_done.is_set() else self._setup_error
        }
        ctx = self.context
        if ctx is None:
            return {"setup": "not started"}
        timeout = ctx.settings.readiness_timeout_seconds
        if ctx.mongo is not None:
            checks["mongodb"] = await _check(ctx.mongo.admin.command("ping"), timeout)
        if self.uses_minio:
            checks["minio"] = await _check(ctx.run_blocking(ctx.minio.list_buckets), timeout)
        return checks

    def _install_routes(self) -> None:
        api = self.api

        @api.get("/health/liveness", tags=["health"], summary="The process is alive.")
        async def liveness() -> dict[str, str]:
            return {"status": "ok"}

        @api.get("/health/readiness", tags=["health"],
                 summary="The function and its own dependencies are ready.",
                 responses={503: {"description": "A dependency is unreachable."}})
        async def readiness() -> JSONResponse:
            checks = await self.readiness()
            ready = all(v == "ok" for v in checks.values())
            return JSONResponse(
                {"status": "ready" if ready else "unavailable", "checks": checks},
                status_code=200 if ready else 503,
            )

        @api.get("/metrics", tags=["health"], summary="Prometheus metrics.",
                 response_class=Response)
        async def metrics() -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

        @api.exception_handler(Exception)
        async def contract_error(request: Request, exc: Exception) -> JSONResponse:
            problem = error_response(exc)
            if problem.status == 500:
                log.error("route crashed", exc_info=exc, extra={"path": request.url.path})
            else:
                log.warning("request failed", extra={
                    "path": request.url.path, "status": problem.status, "error": problem.message})
            return JSONResponse(problem.body(), status_code=problem.status)

        api.add_exception_handler(FunctionError, contract_error)  # type: ignore[arg-type]


class _Starting(FunctionError):
    status = 503
    code = "starting"


@dataclass(frozen=True, slots=True)
class _Duplicate:
    reply: CloudEvent | None


async def _check(operation: Awaitable[Any], timeout: float) -> str:
    try:
        await asyncio.wait_for(operation, timeout)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:300] or type(exc).__name__
    return "ok"


async def _read_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"event body of {declared} bytes exceeds the limit of {limit}")
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        if message["type"] == "http.disconnect":
            raise _ClientGone
        return body
    chunks = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"event body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})


def _mongo_client(name: str, settings: FunctionSettings) -> AsyncMongoClient[dict[str, Any]]:
    from pymongo import AsyncMongoClient

    timeout_ms = int(settings.mongo_timeout_seconds * 1000)
    return AsyncMongoClient(
        settings.mongo_url.get_secret_value(), appname=name, tz_aware=True,
        serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=min(timeout_ms, 2000),
    )


def _minio_client(settings: FunctionSettings) -> Minio:
    import urllib3
    from minio import Minio

    # Short connect timeout and few retries: a dead MinIO must become a 503 quickly, and the
    # broker retries the event anyway. Pool size matches the threads that use it.
    http = urllib3.PoolManager(
        maxsize=settings.blocking_workers,
        timeout=urllib3.Timeout(connect=2.0, read=30.0),
        retries=urllib3.Retry(total=2, backoff_factor=0.2,
                              status_forcelist=(500, 502, 503, 504)),
    )
    return Minio(
        settings.minio_endpoint, access_key=settings.minio_access_key,
        secret_key=settings.minio_secret_key.get_secret_value(), secure=settings.minio_secure,
        region=settings.minio_region, http_client=http,
    )


__all__ = ["ErrorResponse", "Function"]
