"""item-processor's settings (environment variables of the same names, upper-cased)."""

from __future__ import annotations

from fnkit import FunctionSettings
from pydantic import Field


class Settings(FunctionSettings):
    write_batch_max: int = Field(
        default=500, gt=0, description="Most products written by one insert (group commit)."
    )
    merge_concurrency: int = Field(
        default=8,
        gt=0,
        description="Products that exist already, compared and updated at once per batch.",
    )
    # Fault injection for tests and demos; both off unless set.
    fault_first_attempt_503_ratio: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Test knob: this share of items (chosen by event id) is answered 503 the "
        "first time this process sees them, as a passing outage would.",
    )
    fault_fail_sku_pattern: str = Field(
        default="",
        description="Test knob: records whose sku matches this regular expression are always "
        "answered 503, so the broker finally dead-letters them.",
    )
