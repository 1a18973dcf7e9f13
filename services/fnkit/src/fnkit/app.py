"""The function app: a CloudEvent fast path in front of a FastAPI app.

CloudEvents arrive as `POST /` (where Knative delivers). That path is handled here in plain
ASGI, without FastAPI's routing and request objects, because it is what every invocation
pays; so are the health probes and /metrics, and the lifespan. Everything else (REST routes,
`/docs`) is FastAPI's, and FastAPI is imported only when the app is first asked for it: a
function without REST routes starts, gets ready and answers events without it, and one with
REST routes declares them with `rest()`, so that they are built on the first REST request
rather than before the first event (FastAPI's import and route analysis cost a service more
start-up CPU than everything else it does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import Receive, Scope, Send

from fnkit.clients import open_context
from fnkit.config import FunctionSettings
from fnkit.context import Context
from fnkit.errors import BadEvent, ErrorResponse, FunctionError, PayloadTooLarge, error_response
from fnkit.events import (
    CloudEvent,
    ReceivedMessage,
    current_message,
    encode_binary,
    parse_event,
)
from fnkit.logs import configure_logging, log_fields
from fnkit.metrics import InvocationMetrics
from fnkit.tracing import TraceContext, current_trace

if TYPE_CHECKING:
    from fastapi import FastAPI
    from minio import Minio

    from fnkit.otel import InvocationTracer

S = TypeVar("S", bound=FunctionSettings)
Handler = Callable[[CloudEvent, Context[Any]], Awaitable[CloudEvent | None]]
Hook = Callable[[Context[Any]], Awaitable[None]]

log = logging.getLogger("fnkit")

_JSON = [(b"content-type", b"application/json")]
_UNHANDLED = "unhandled"  # metric label for types with no handler: keeps label cardinality bounded
_FALLBACK = "fallback"  # metric label for types served by the fallback handler
_INVALID = "invalid"  # metric label for requests that are not valid CloudEvents
_CANCELLED = ErrorResponse(503, "cancelled", "the function stopped before it finished; retry")


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
        raw_header_bytes: bool = False,
    ) -> None:
        """`raw_header_bytes=True` accepts ce- headers holding raw non-ASCII bytes instead of
        answering 400 (see `parse_event`): for a sink that must not lose what it is sent."""
        self.name = name
        self.raw_header_bytes = raw_header_bytes
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
        self._tracer: InvocationTracer | None = None  # set in the lifespan when tracing is on
        self._api: FastAPI | None = None
        self._rest: list[Callable[[FastAPI], None]] = []
        # What start-up hooks make for routes and handlers: FastAPI's `app.state` once the API
        # is built (the same dict underneath), but usable before, without importing FastAPI.
        self.state = SimpleNamespace()
        self._description = description
        self._version = version
        self._probes = {
            "/health/liveness": self._liveness,
            "/health/readiness": self._readiness,
            "/metrics": self._metrics,
        }

    # -- registration ---------------------------------------------------------------------

    @property
    def api(self) -> FastAPI:
        """The FastAPI app for REST routes and /docs, built on first use."""
        if self._api is None:
            from fastapi import FastAPI
            from starlette.datastructures import State

            api = FastAPI(
                title=self.name,
                description=self._description,
                version=self._version,
                lifespan=self._lifespan,
            )
            api.state = State(vars(self.state))
            self._api = api
            self._install_routes()
            for setup in self._rest:
                setup(api)
        return self._api

    def rest(self, setup: Callable[[FastAPI], None]) -> Callable[[FastAPI], None]:
        """Register `setup(api)`, which adds REST routes (and imports what they need) to the
        FastAPI app when it is built: on the first REST request, not before the first event."""
        self._rest.append(setup)
        if self._api is not None:
            setup(self._api)
        return setup

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
        if scope["type"] == "http":
            if scope["method"] == "POST" and scope["path"] == "/":
                await self._invoke(scope, receive, send)
                return
            probe = self._probes.get(scope["path"])
            if probe is not None and scope["method"] in ("GET", "HEAD"):
                status, content_type, body = await probe()
                await send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [
                            (b"content-type", content_type),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"" if scope["method"] == "HEAD" else body,
                    }
                )
                return
        elif scope["type"] == "lifespan" and self._api is None:
            await self._serve_lifespan(receive, send)
            return
        # A REST request's traceparent (a client's, or another function's) becomes the current
        # trace, so that events its route emits continue it.
        trace_token = None
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"traceparent":
                    incoming = TraceContext.parse(value.decode("latin-1"))
                    if incoming is not None:
                        trace_token = current_trace.set(incoming)
                    break
        try:
            await self.api(scope, receive, send)
        except Exception as exc:
            if scope["type"] != "http":
                raise
            # Already answered by contract_error (or the response had begun): log a crash
            # here, once; an expected one (a database outage's 503) was logged as a warning.
            if error_response(exc).status == 500:
                log.error("route crashed", exc_info=exc, extra={"path": scope["path"]})
        finally:
            if trace_token is not None:
                current_trace.reset(trace_token)

    async def _invoke(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = await _read_body(receive, headers, self.settings.max_event_bytes)
            event = parse_event(headers, body, raw_header_bytes=self.raw_header_bytes)
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
        incoming = TraceContext.parse(
            event.get_extension("traceparent") or headers.get("traceparent")
        )
        tracer, span = self._tracer, None
        if tracer is None:
            trace = incoming or TraceContext.new_root()
        else:
            span, trace = tracer.start(event, incoming)
        trace_token = current_trace.set(trace)
        message_token = current_message.set(ReceivedMessage(headers, body))
        event_type = event.get_type()
        label: str = event_type
        route = self._routes.get(event_type)
        if route is None:
            route = self._fallback
            label = _FALLBACK if route else _UNHANDLED
        metrics = self.metrics
        cold_start = metrics.first_invocation()
        metrics.in_flight += 1
        outcome, status, problem_message = "cancelled", 503, None
        try:
            ctx = self.context
            reply: CloudEvent | _Duplicate | None
            if route and not route.idempotent and ctx and self._setup_done.is_set():
                reply = await route.handler(event, ctx)  # _dispatch's usual case, inlined
            else:
                reply = await self._dispatch(route, event)
        except asyncio.CancelledError:
            # The server cut the handler off (shutdown grace over): answer 503, so the broker
            # delivers the event again, to a process that will finish it.
            problem_message = _CANCELLED.message
            with contextlib.suppress(Exception):
                await _send(send, 503, _JSON, orjson.dumps(_CANCELLED.body()))
            raise
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
            outcome = "ok"
            if isinstance(reply, _Duplicate):
                outcome, reply = "duplicate", reply.reply
            if reply is None:
                status = 204
                await _send(send, 204, [], b"")
            else:
                status = 200
                reply_headers, reply_body = encode_binary(reply)
                await _send(send, 200, reply_headers, reply_body)
        finally:
            metrics.in_flight -= 1
            elapsed = time.perf_counter() - started
            metrics.observe(label, outcome, elapsed)
            fields: dict[str, Any] = {
                "event_id": event.get_id(),
                "type": event_type,
                "source": event.get_source(),
                "outcome": outcome,
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
            }
            if cold_start:
                fields["cold_start"] = True
            if problem_message:
                fields["error"] = problem_message
            level = logging.WARNING if status >= 500 else logging.INFO
            log_fields(log, level, "invocation", fields)
            if span is not None:
                assert tracer is not None
                tracer.end(span, outcome, status, problem_message)
            current_trace.reset(trace_token)
            current_message.reset(message_token)

    async def _dispatch(
        self, route: _Route | None, event: CloudEvent
    ) -> CloudEvent | _Duplicate | None:
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

    async def _serve_lifespan(self, receive: Receive, send: Send) -> None:
        """The ASGI lifespan protocol, for an app whose FastAPI part was never asked for."""
        started = False
        try:
            await receive()  # lifespan.startup
            async with self._lifespan(None):
                await send({"type": "lifespan.startup.complete"})
                started = True
                await receive()  # lifespan.shutdown
        except BaseException as exc:
            phase = "shutdown" if started else "startup"
            await send({"type": f"lifespan.{phase}.failed", "message": f"{exc!r}"})
            raise
        await send({"type": "lifespan.shutdown.complete"})

    @asynccontextmanager
    async def _lifespan(self, api: FastAPI | None) -> AsyncIterator[None]:
        settings = self.settings
        configure_logging(self.name, settings.log_level)
        async with open_context(
            self.name, settings, mongo=self.uses_mongo, minio=self.uses_minio
        ) as ctx:
            self.context = ctx
            self.state.ctx = ctx
            if settings.tracing:
                from fnkit import otel

                self._tracer = otel.setup(self.name, self._version)
            # Fresh per lifespan: an app served again in the same process starts over.
            self._setup_done = asyncio.Event()
            self._setup_error = "starting"
            setup = asyncio.create_task(self._run_startup_hooks(ctx), name=f"{self.name}-setup")
            try:
                yield
            finally:
                # uvicorn has drained in-flight requests by now (SIGTERM -> stop accepting ->
                # wait); the hooks run before open_context closes the clients.
                setup.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await setup
                for hook in self._shutdown:
                    try:
                        await hook(ctx)
                    except Exception:
                        log.exception("shutdown hook failed", extra={"hook": hook.__name__})
        if self._tracer is not None:
            await asyncio.to_thread(self._tracer.shutdown)
            self._tracer = None
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
                log.warning(
                    "start-up hook failed; retrying",
                    extra={"hook": hook.__name__, "error": str(exc), "retry_in_s": delay},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            else:
                pending.pop(0)
        self._setup_done.set()
        startup_seconds = self.metrics.ready()
        log.info(
            "ready",
            extra={"startup_seconds": round(startup_seconds, 3), "handles": self.handled_types},
        )

    # -- health and metrics ---------------------------------------------------------------

    async def readiness(self) -> dict[str, str]:
        """Each dependency's state: 'ok' or what is wrong. Ready when all are 'ok'."""
        checks: dict[str, str] = {"setup": "ok" if self._setup_done.is_set() else self._setup_error}
        ctx = self.context
        if ctx is None:
            return {"setup": "not started"}
        timeout = ctx.settings.readiness_timeout_seconds
        if ctx.mongo is not None:
            checks["mongodb"] = await _check(ctx.mongo.admin.command("ping"), timeout)
        if self.uses_minio:
            checks["minio"] = await _check(ctx.run_blocking(_minio_ping, ctx.minio), timeout)
        return checks

    # Served in plain ASGI by __call__, without FastAPI: a probe must not wait for it to be
    # imported. The FastAPI routes below answer the same way, and document them in /docs.

    async def _liveness(self) -> tuple[int, bytes, bytes]:
        return 200, b"application/json", b'{"status":"ok"}'

    async def _readiness(self) -> tuple[int, bytes, bytes]:
        checks = await self.readiness()
        ready = all(v == "ok" for v in checks.values())
        body = {"status": "ready" if ready else "unavailable", "checks": checks}
        return 200 if ready else 503, b"application/json", orjson.dumps(body)

    async def _metrics(self) -> tuple[int, bytes, bytes]:
        return 200, CONTENT_TYPE_LATEST.encode(), generate_latest()

    def _install_routes(self) -> None:
        from fastapi import Request
        from fastapi.responses import JSONResponse, Response

        api = self.api

        def probe_route(
            path: str,
            probe: Callable[[], Awaitable[tuple[int, bytes, bytes]]],
            summary: str,
            responses: dict[int | str, dict[str, Any]] | None = None,
        ) -> None:
            # response_model=None: the return annotation is a string here, and Response is
            # imported locally, out of FastAPI's reach.
            @api.get(
                path,
                tags=["health"],
                summary=summary,
                response_class=Response,
                response_model=None,
                responses=responses,
            )
            async def route() -> Response:
                status, content_type, body = await probe()
                return Response(body, status_code=status, media_type=content_type.decode())

        probe_route("/health/liveness", self._liveness, "The process is alive.")
        probe_route(
            "/health/readiness",
            self._readiness,
            "The function and its own dependencies are ready.",
            {503: {"description": "A dependency is unreachable."}},
        )
        probe_route("/metrics", self._metrics, "Prometheus metrics.")

        async def contract_error(request: Request, exc: Exception) -> JSONResponse:
            problem = error_response(exc)
            if problem.status != 500:  # a crash is logged once, with its traceback, in __call__
                log.warning(
                    "request failed",
                    extra={
                        "path": request.url.path,
                        "status": problem.status,
                        "error": problem.message,
                    },
                )
            return JSONResponse(problem.body(), status_code=problem.status)

        api.add_exception_handler(FunctionError, contract_error)
        # Exception's handler runs in Starlette's ServerErrorMiddleware, which answers with it
        # and then re-raises for the server to log: see __call__.
        api.add_exception_handler(Exception, contract_error)


class _Starting(FunctionError):
    status = 503
    code = "starting"


@dataclass(frozen=True, slots=True)
class _Duplicate:
    reply: CloudEvent | None


async def _check(operation: Awaitable[Any], seconds: float) -> str:
    try:
        async with asyncio.timeout(seconds):
            await operation
    except TimeoutError:
        return f"no answer within {seconds:g}s"
    except Exception as exc:
        return (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)[:300]
    return "ok"


def _minio_ping(client: Minio) -> None:
    """Raises unless MinIO answers and accepts the credentials.

    A key scoped to its own buckets may not list them all: AccessDenied proves both anyway.
    """
    from minio.error import S3Error

    try:
        client.list_buckets()
    except S3Error as exc:
        if exc.code != "AccessDenied":
            raise


async def _read_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"event body of {declared} bytes exceeds the limit of {limit}")
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        if message["type"] == "http.disconnect":
            raise _ClientGone
        if len(body) > limit:  # chunked requests declare no length
            raise PayloadTooLarge(f"event body exceeds the limit of {limit} bytes")
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
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


__all__ = ["ErrorResponse", "Function"]
