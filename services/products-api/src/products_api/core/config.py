"""products-api settings: fnkit's, plus the API's limits and the outbox's pace."""

from __future__ import annotations

from fnkit import FunctionSettings
from pydantic import Field


class Settings(FunctionSettings):
    """Environment variables have the same names, upper-cased (MAX_BODY_BYTES, ...)."""

    max_body_bytes: int = Field(
        default=64 * 1024, gt=0, description="Request bodies larger than this get 413."
    )
    page_size_max: int = Field(
        default=100, gt=0, description="`limit` above this is lowered to it."
    )
    outbox_sweep_interval_seconds: float = Field(
        default=30.0, gt=0, description="How often pending product events are re-sent."
    )
    outbox_grace_seconds: float = Field(
        default=10.0,
        ge=0,
        description=(
            "The sweep leaves events younger than this to the request that wrote them, so that "
            "a healthy broker does not get every event twice."
        ),
    )
    outbox_sweep_batch: int = Field(default=100, gt=0, description="Products read per sweep query.")
