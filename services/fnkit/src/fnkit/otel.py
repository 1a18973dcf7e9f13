"""OpenTelemetry spans of invocations, exported by OTLP (the optional `fnkit[otel]` extra).

Imported only when an OTLP endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT): a function without tracing never imports OpenTelemetry,
so neither its cold start nor its invocations pay for it.

Each invocation is one span named by the event's type, a child of the incoming event's
`traceparent`, with the CloudEvents semantic-convention attributes. While it runs the span is
fnkit's current trace, so that log lines carry its trace id and every event emitted or replied
carries its context: the next function's span becomes its child.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from fnkit.tracing import TraceContext

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from fnkit.events import CloudEvent

log = logging.getLogger("fnkit.otel")


class InvocationTracer:
    """Starts and ends the span of each invocation; one per function process."""

    def __init__(self, provider: TracerProvider, tracer: Tracer) -> None:
        self.provider = provider
        self.tracer = tracer

    def start(self, event: CloudEvent, parent: TraceContext | None) -> tuple[Span, TraceContext]:
        """The invocation's span, and its context as fnkit's current trace."""
        from opentelemetry import trace

        context = None
        if parent is not None:
            remote = trace.SpanContext(
                trace_id=int(parent.trace_id, 16),
                span_id=int(parent.span_id, 16),
                is_remote=True,
                trace_flags=trace.TraceFlags(int(parent.flags, 16)),
            )
            context = trace.set_span_in_context(trace.NonRecordingSpan(remote))
        attributes: dict[str, Any] = {
            "cloudevents.event_id": event.get_id(),
            "cloudevents.event_type": event.get_type(),
            "cloudevents.event_source": event.get_source(),
            "cloudevents.event_spec_version": "1.0",
        }
        subject = event.get_subject()
        if subject is not None:
            attributes["cloudevents.event_subject"] = subject
        span = self.tracer.start_span(
            event.get_type(), context=context, kind=trace.SpanKind.CONSUMER, attributes=attributes
        )
        own = span.get_span_context()
        current = TraceContext(
            trace.format_trace_id(own.trace_id),
            trace.format_span_id(own.span_id),
            f"{int(own.trace_flags):02x}",
            local=True,
        )
        return span, current

    def end(self, span: Span, outcome: str, status: int, error: str | None) -> None:
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("fnkit.outcome", outcome)
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    def shutdown(self) -> None:
        """Export what is buffered, then stop (blocks: call it off the event loop)."""
        self.provider.shutdown()


def setup(function: str, version: str) -> InvocationTracer | None:
    """A tracer exporting by OTLP/HTTP as the OTEL_* variables say; None without the extra."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        log.warning(
            "an OTLP endpoint is configured but OpenTelemetry is not installed: install "
            "fnkit[otel] to export traces; continuing without",
            extra={"error": str(exc)},
        )
        return None
    # OTEL_RESOURCE_ATTRIBUTES adds to these; OTEL_SERVICE_NAME renames the function.
    name = os.environ.get("OTEL_SERVICE_NAME") or function
    resource = Resource.create({"service.name": name, "service.version": version})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return InvocationTracer(provider, provider.get_tracer("fnkit", version))
