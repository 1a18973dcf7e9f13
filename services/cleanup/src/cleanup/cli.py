"""`python -m cleanup`: one run, one JSON summary line, one cleanup.completed event.

Exit status: 0 when everything expired was cleaned; 1 when anything failed (an object MinIO
would not delete, MinIO or MongoDB gone mid-run, the event not accepted), so that Kubernetes
records the Job as failed; 2 for settings it cannot run with. A failed run is safe to repeat.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Final

from fnkit import Context, EmitError
from fnkit.clients import open_context, refuse_placeholder_secrets
from fnkit.logs import configure_logging
from pydantic import ValidationError

from cleanup.config import Settings
from cleanup.job import Cleanup, Summary

NAME: Final = "cleanup"
CLEANUP_COMPLETED: Final = "io.knative-playbook.cleanup.completed.v1"

log = logging.getLogger("cleanup")


async def _report(ctx: Context[Settings], summary: Summary) -> bool:
    """Emit the summary (not for a dry run), then log it; False when the event was refused."""
    emitted: str | None = None
    emit_error: str | None = None
    if not summary.dry_run:
        if ctx.settings.k_sink:
            event = ctx.event(CLEANUP_COMPLETED, summary.view())
            try:
                await ctx.emit(event)
                emitted = event.get_id()
            except EmitError as exc:
                emit_error = str(exc)
        else:
            log.info("K_SINK is not set: %s not emitted", CLEANUP_COMPLETED)
    level = logging.INFO if summary.succeeded and emit_error is None else logging.ERROR
    log.log(
        level,
        "cleanup finished",
        extra={**summary.view(), "event_id": emitted, "emit_error": emit_error},
    )
    return emit_error is None


async def run(settings: Settings, *, dry_run: bool) -> int:
    try:
        async with open_context(NAME, settings, mongo=True, minio=True) as ctx:
            summary = await Cleanup(ctx, dry_run=dry_run).run()
            reported = await _report(ctx, summary)
    except Exception:
        # A bug, not an outage (those end in the summary): a JSON line with the traceback
        # for the log shipper, and a failed Job.
        log.exception("cleanup crashed")
        return 1
    return 0 if summary.succeeded and reported else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cleanup",
        description="Delete expired image records with their originals and renditions, and "
        "renditions no record refers to. Settings come from the environment.",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="report what would be deleted; delete nothing, emit nothing",
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        configure_logging(NAME, "INFO")
        log.error("invalid settings", extra={"error": str(exc)})
        return 2
    configure_logging(NAME, settings.log_level)
    try:
        refuse_placeholder_secrets(NAME, settings, mongo=True, minio=True)
    except RuntimeError as exc:
        log.error("%s", exc)
        return 2
    return asyncio.run(run(settings, dry_run=args.dry_run))
