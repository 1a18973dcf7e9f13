"""The devplane app: broker ingress on `POST /`, and its REST API, health and metrics.

Serve with `fnkit-serve devplane.main:app --port 8100`. `POST /` is the broker's ingress,
handled here in plain ASGI on fnkit's CloudEvent parsing (as every function's `POST /` is):
202 once every matching Trigger has its copy queued, 4xx for what is not a CloudEvent, 503
when a subscriber's queue is full. Everything else is the fnkit Function: `/events`,
`/triggers`, `/cron`, `/knobs`, `/workflows`, health, `/metrics` and `/docs`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from fnkit import Context, Function, PayloadTooLarge, Unavailable
from fnkit.errors import error_response
from fnkit.events import parse_event
from fnkit.rest import install as install_rest

from devplane.api import router
from devplane.broker import Broker, binary_message
from devplane.config import PlaneConfig, load_config, load_values
from devplane.eventlog import EventLog
from devplane.knobs import Knobs
from devplane.scheduler import CronRunner
from devplane.settings import DevplaneSettings
from devplane.workflow_api import router as workflow_router
from devplane.workflow_spec import load_templates
from devplane.workflows import WorkflowRunner, function_urls

log = logging.getLogger("devplane")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_JSON = [(b"content-type", b"application/json")]


@dataclass
class Plane:
    """Everything the event plane runs, built once per process."""

    settings: DevplaneSettings
    config: PlaneConfig
    knobs: Knobs
    events: EventLog
    broker: Broker
    cron: CronRunner
    workflows: WorkflowRunner
    ready: asyncio.Event = field(default_factory=asyncio.Event)


def build_plane(settings: DevplaneSettings) -> Plane:
    """Read and validate the routing; a mistake raises ConfigError before anything starts."""
    config = load_config(settings.values_files(), settings.devplane_subscriber_url)
    knobs = Knobs(settings.devplane_duplicate_ratio, settings.devplane_delay_seconds)
    events = EventLog(settings.devplane_event_log_size)
    broker = Broker(
        config.triggers,
        knobs=knobs,
        event_log=events,
        reply_url=settings.devplane_url,
        capacity=settings.devplane_queue_capacity,
        workers=settings.devplane_workers,
        default_timeout=settings.devplane_default_timeout_seconds,
    )
    # The same WorkflowTemplates the chart installs; a template using an Argo feature
    # devplane does not run fails here (WorkflowError), like a routing mistake.
    workflows = WorkflowRunner(
        load_templates(settings.workflows_folder()),
        function_urls(load_values(settings.values_files()), settings.devplane_subscriber_url),
        history=settings.devplane_workflow_history,
    )
    return Plane(
        settings,
        config,
        knobs,
        events,
        broker,
        CronRunner(config.cron_jobs, settings.job_env()),
        workflows,
    )


class DevplaneApp:
    """ASGI: the ingress fast path in front of the fnkit Function."""

    def __init__(self, settings: DevplaneSettings | None = None) -> None:
        settings = settings or DevplaneSettings()
        self.plane = plane = build_plane(settings)
        self.function: Function[DevplaneSettings] = Function(
            "devplane",
            settings_class=DevplaneSettings,
            settings=settings,
            description="Local Knative Broker, Triggers, CronJobs and Argo workflow runner "
            "for make dev, compose and tests.",
        )
        install_rest(self.function.api, max_body_bytes=settings.max_event_bytes)
        self.function.api.include_router(router(plane))
        self.function.api.include_router(workflow_router(plane.workflows))

        @self.function.on_startup
        async def start_plane(ctx: Context[DevplaneSettings]) -> None:
            await plane.broker.start()
            await plane.workflows.start()
            if settings.devplane_cron:
                plane.cron.start()
            plane.ready.set()
            log.info(
                "routing",
                extra={
                    "triggers": [f"{t.name} -> {t.url}" for t in plane.broker.triggers],
                    "cron_jobs": sorted(
                        j.name for j in plane.config.cron_jobs.values() if j.enabled
                    ),
                    "workflow_templates": sorted(plane.workflows.templates),
                },
            )

        @self.function.on_shutdown
        async def stop_plane(ctx: Context[DevplaneSettings]) -> None:
            await plane.cron.stop()
            await plane.workflows.stop()
            await plane.broker.stop(settings.devplane_drain_seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/":
            await self._ingress(scope, receive, send)
        else:
            await self.function(scope, receive, send)

    async def _ingress(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = await _read_body(receive, headers, self.plane.settings.max_event_bytes)
            if body is None:
                return  # the client went away
            if not self.plane.ready.is_set():
                raise Unavailable("devplane is starting; retry shortly")
            event = parse_event(headers, body)
            record = self.plane.broker.ingest(event, binary=binary_message(scope["headers"], body))
        except Exception as exc:
            problem = error_response(exc)
            if problem.status >= 500 and problem.code != "queue_full":
                log.warning("ingress failed", extra={"error": problem.message})
            await _send(send, problem.status, orjson.dumps(problem.body()))
            return
        await _send(
            send, 202, orjson.dumps({"id": record.id, "deliveries": len(record.deliveries)})
        )


async def _read_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes | None:
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"event body of {declared} bytes exceeds the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"event body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*_JSON, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app(settings: DevplaneSettings | None = None) -> DevplaneApp:
    return DevplaneApp(settings)


app = create_app()
