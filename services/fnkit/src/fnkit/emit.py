"""Posting events to the broker (`K_SINK`), with bounded retries."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING, Final

from fnkit.errors import EmitError
from fnkit.events import CloudEvent, encode_binary
from fnkit.metrics import EMITTED
from fnkit.tracing import outgoing_traceparent

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("fnkit.emit")

# The statuses Knative itself treats as "try again"; any other 4xx means the event is bad.
RETRYABLE_STATUS: Final = frozenset({404, 408, 409, 429})


class Emitter:
    """One pooled HTTP client per process, posting binary-mode events to K_SINK."""

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
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        """The pooled client, made on the first emit: a function that never emits never pays
        for importing httpx at start-up."""
        if self._client is None:
            import httpx

            limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
            self._client = httpx.AsyncClient(timeout=self._timeout, limits=limits)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
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
        headers = [(k.decode(), v.decode()) for k, v in header_pairs]
        import httpx

        client = self._http()
        problem = ""
        for attempt in range(1, self.attempts + 1):
            try:
                response = await client.post(self.sink, headers=headers, content=body)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if response.is_success:
                    EMITTED.labels(self.function, event_type, "ok").inc()
                    return
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code < 500 and response.status_code not in RETRYABLE_STATUS:
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
