"""`python -m warmer`: ping every target once, log each answer and one summary line.

Exit status: 0 when every target answered 2xx, 1 when any did not (Kubernetes records the
Job as failed, which kube-state-metrics exports and an alert can watch), 2 when there is
nothing to ping or the settings are invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Final

from fnkit.logs import configure_logging
from pydantic import ValidationError

from warmer.config import Settings
from warmer.pings import ping_all

NAME: Final = "warmer"

log = logging.getLogger("warmer")


async def run(settings: Settings) -> int:
    pings = await ping_all(
        settings.warmer_targets, settings.warmer_path, settings.warmer_timeout_seconds
    )
    for result in pings:
        log.log(logging.INFO if result.ok else logging.WARNING, "ping", extra=result.view())
    failed = [p.target for p in pings if not p.ok]
    latencies = [p.latency_ms for p in pings if p.ok]
    log.log(
        logging.ERROR if failed else logging.INFO,
        "warmer finished",
        extra={
            "targets": len(pings),
            "succeeded": len(pings) - len(failed),
            "failed": len(failed),
            "failed_targets": failed,
            "latency_ms_max": max(latencies, default=None),
            "latency_ms_by_target": {p.target: p.latency_ms for p in pings},
        },
    )
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m warmer",
        description="Ping WARMER_TARGETS concurrently (GET WARMER_PATH) and report each "
        "answer's outcome and latency.",
    )
    parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        configure_logging(NAME, "INFO")
        log.error("invalid settings", extra={"error": str(exc)})
        return 2
    configure_logging(NAME, settings.log_level)
    # httpx logs every request at INFO; the ping line already says all of it.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not settings.warmer_targets:
        log.error("WARMER_TARGETS is empty: nothing to ping")
        return 2
    return asyncio.run(run(settings))
