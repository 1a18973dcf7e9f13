"""Posting events to the broker (`K_SINK`), with bounded retries."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Final

from fnkit.errors import EmitError
from fnkit.events import CloudEvent, encode_binary
from fnkit.httpclient import HttpClient, HttpError, header_lines
from fnkit.metrics import EMITTED
from fnkit.tracing import outgoing_traceparent

log = logging.getLogger("fnkit.emit")

# The statuses Knative itself treats as "try again"; any other 4xx means the event is bad.
RETRYABLE_STATUS: Final = frozenset({404, 408, 409, 429})


class Emitter:
    """One pooled HTTP client per process, posting binary-mode events to K_SINK.

    It uses fnkit's own keep-alive client rather than httpx: an emit is on the hot path of
    every fan-out, and httpx costs about ten times the CPU per request.
    """

    def __init__(
        self,
        sink: str | None,
        *,
        function: str,
        timeout: float,
        attempts: int,
        backoff: float,
    ) -> None:
        self.sink = sink
        self.function = function
        self.attempts = attempts
        self.backoff = backoff
        self._timeout = timeout
        self._client = HttpClient()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def emit(self, event: CloudEvent) -> None:
        """Post `event`; raise EmitError once every attempt has failed or the sink refused it."""
        event_type = event.get_type()
        if not self.sink:
            EMITTED.labels(self.function, event_type, "failed").inc()
            raise EmitError(f"cannot emit {event_type}: K_SINK is not set")
        attributes = event.get_attributes()
        if "traceparent" not in attributes:
            attributes["traceparent"] = outgoing_traceparent()
        header_pairs, body = encode_binary(event)
        head = header_lines(header_pairs)
        problem = ""
        for attempt in range(1, self.attempts + 1):
            try:
                async with asyncio.timeout(self._timeout):
                    response = await self._client.post(self.sink, head, body)
            except (HttpError, TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if 200 <= response.status < 300:
                    EMITTED.labels(self.function, event_type, "ok").inc()
                    return
                text = response.body[:200].decode("utf-8", "replace")
                problem = f"HTTP {response.status}: {text}"
                if response.status < 500 and response.status not in RETRYABLE_STATUS:
                    break
            if attempt < self.attempts:
                delay = self.backoff * 2 ** (attempt - 1)
                log.warning(
                    "emit attempt failed; retrying",
                    extra={
                        "event_type": event_type,
                        "event_id": event.get_id(),
                        "attempt": attempt,
                        "problem": problem,
                        "retry_in_s": delay,
                    },
                )
                await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter
        EMITTED.labels(self.function, event_type, "failed").inc()
        raise EmitError(
            f"broker did not accept {event_type} (id {event.get_id()}) after "
            f"{attempt} attempt(s): {problem}"
        )
