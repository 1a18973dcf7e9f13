"""The dead-letter service's settings (environment variables of the same names, upper-cased)."""

from __future__ import annotations

from fnkit import FunctionSettings
from pydantic import Field


class Settings(FunctionSettings):
    max_page_size: int = Field(500, gt=0, description="Largest `limit` GET /dead-letters accepts.")
    replay_timeout_seconds: float = Field(
        10.0, gt=0, description="How long a replay waits for its target to answer."
    )
    sweep_interval_seconds: float = Field(
        10.0, gt=0, description="How often pending item.failed emissions are retried."
    )
    fanin_retry_seconds: float = Field(
        5.0, gt=0, description="First delay before a failed item.failed emission is retried."
    )
    fanin_lease_seconds: float = Field(
        120.0,
        gt=0,
        description="An item.failed attempt without an outcome after this long is taken for "
        "crashed and made again; keep it above EMIT_ATTEMPTS x EMIT_TIMEOUT_SECONDS.",
    )
