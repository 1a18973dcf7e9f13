"""W3C trace context carried through events.

An incoming event's `traceparent` (the CloudEvents distributed-tracing extension, or the
HTTP header) becomes the current trace; events emitted or replied while handling it carry
the same trace id with a new span id, so one id follows a request across every function.
With OpenTelemetry on (fnkit.otel), the current trace is the invocation's own span: emitted
events carry exactly its context, so that the next function's span is its child.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from random import getrandbits
from typing import Final, NamedTuple

_TRACEPARENT: Final = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_INVALID_TRACE: Final = "0" * 32
_INVALID_SPAN: Final = "0" * 16


class TraceContext(NamedTuple):
    """One span's W3C context. A named tuple: one is made per invocation and per emitted event.

    Ids come from `random`, as OpenTelemetry's own id generator takes them: unique, not secret
    (and reseeded in a forked child).
    """

    trace_id: str
    span_id: str
    flags: str = "01"
    local: bool = False  # this process's own span (OpenTelemetry's), not the caller's

    @classmethod
    def parse(cls, traceparent: str | None) -> TraceContext | None:
        if not traceparent:
            return None
        match = _TRACEPARENT.match(traceparent.strip().lower())
        if not match or match[1] == _INVALID_TRACE or match[2] == _INVALID_SPAN:
            return None
        return cls(match[1], match[2], match[3])

    @classmethod
    def new_root(cls) -> TraceContext:
        return cls(f"{getrandbits(128) or 1:032x}", _span_id())

    def child(self) -> TraceContext:
        return TraceContext(self.trace_id, _span_id(), self.flags)

    def outgoing(self) -> TraceContext:
        """The context an event leaving this span carries: the span itself, if it is ours."""
        return self if self.local else self.child()

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def _span_id() -> str:
    """A random non-zero 64-bit span id (all zeros is the invalid span, as for trace ids)."""
    return f"{getrandbits(64) or 1:016x}"


current_trace: ContextVar[TraceContext | None] = ContextVar("fnkit_current_trace", default=None)


def outgoing_traceparent() -> str:
    """The traceparent for an event leaving this invocation (a new root outside one)."""
    parent = current_trace.get()
    return (parent.outgoing() if parent else TraceContext.new_root()).traceparent
