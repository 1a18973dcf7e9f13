"""The dead-letter function: `fnkit-serve dead_letter.main:app`."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from fnkit import CloudEvent, Context, Function
from fnkit.events import received_message

from dead_letter.config import Settings
from dead_letter.service import DeadLetters
from dead_letter.wire import read_message

if TYPE_CHECKING:
    from fastapi import FastAPI

DESCRIPTION = """\
The dead-letter sink of every Trigger. Knative (or `devplane` locally) posts an event here
once its retries are exhausted, with the extension attributes `knativeerrordest`,
`knativeerrorcode` and `knativeerrordata` (base64 of the failed response body). Each one is
stored once per (source, id, destination), with the original event kept exactly, so that it
can be inspected, replayed to the broker or purged. A dead-lettered
`io.knative-playbook.item.requested.v1` also sends `io.knative-playbook.item.failed.v1`, so
that its bulk job still finishes.
"""


def create_app(settings: Settings | None = None) -> Function[Settings]:
    fn = Function(
        "dead-letter",
        settings_class=Settings,
        settings=settings,
        mongo=True,
        description=DESCRIPTION,
        # Knative does not retry a 400, so a dead letter refused here would be lost; the
        # wire reader decodes such headers as UTF-8 with replacement characters instead.
        raw_header_bytes=True,
    )
    background: list[asyncio.Task[None]] = []

    @fn.fallback()
    async def store_dead_letter(event: CloudEvent, ctx: Context[Settings]) -> None:
        """Any event type: whatever Knative dead-letters arrives here."""
        message = received_message()
        original, error = read_message(message.headers, message.body)
        service: DeadLetters = fn.state.dead_letters
        await service.receive(original, error)

    @fn.on_startup
    async def create_indexes(ctx: Context[Settings]) -> None:
        await DeadLetters.store_of(ctx).create_indexes()

    @fn.on_startup
    async def start(ctx: Context[Settings]) -> None:
        service = DeadLetters(ctx)
        fn.state.dead_letters = service
        background.append(asyncio.create_task(service.sweep_forever(), name="dead-letter-sweep"))

    @fn.on_shutdown
    async def stop(ctx: Context[Settings]) -> None:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        service: DeadLetters | None = getattr(fn.state, "dead_letters", None)
        if service is not None:
            await service.aclose()

    @fn.rest
    def routes(api: FastAPI) -> None:
        from fnkit.rest import install

        from dead_letter.api import router

        install(api, max_body_bytes=lambda: fn.settings.max_event_bytes)
        api.include_router(router)

    return fn


app = create_app()
