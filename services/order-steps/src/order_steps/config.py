"""order-steps settings: fnkit's, plus its locks' timing and the outbox's pace."""

from __future__ import annotations

from fnkit import FunctionSettings
from pydantic import Field


class Settings(FunctionSettings):
    """Environment variables have the same names, upper-cased (LOCK_LEASE_SECONDS, ...)."""

    max_body_bytes: int = Field(
        default=256 * 1024, gt=0, description="Request bodies larger than this get 413."
    )
    lock_lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long a step or a product's stock stays locked by a holder that died; "
        "longer than LOCK_WAIT_SECONDS, since a step holds its own lock while it waits for a "
        "product's.",
    )
    lock_wait_seconds: float = Field(
        default=20.0,
        gt=0,
        description="How long a step waits for a lock before answering 503 (the workflow "
        "retries); keep it below the workflow's HTTP timeout (30 s).",
    )
    outbox_sweep_interval_seconds: float = Field(
        default=30.0, gt=0, description="How often outcome events still pending are re-sent."
    )
    outbox_grace_seconds: float = Field(
        default=10.0,
        ge=0,
        description="The sweep leaves events younger than this to the request that wrote them.",
    )
