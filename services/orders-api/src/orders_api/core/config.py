"""orders-api settings: fnkit's, plus the API's limits and the outbox's pace."""

from __future__ import annotations

from fnkit import FunctionSettings
from pydantic import Field


class Settings(FunctionSettings):
    """Environment variables have the same names, upper-cased (MAX_BODY_BYTES, ...)."""

    max_body_bytes: int = Field(
        default=64 * 1024, gt=0, description="Request bodies larger than this get 413."
    )
    outbox_sweep_interval_seconds: float = Field(
        default=30.0, gt=0, description="How often order.placed events still pending are re-sent."
    )
    outbox_grace_seconds: float = Field(
        default=10.0,
        ge=0,
        description="The sweep leaves events younger than this to the request that wrote them.",
    )
