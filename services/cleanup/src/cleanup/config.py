"""cleanup's settings: what to clean, the retention rules, and how much per batch and run."""

from __future__ import annotations

from datetime import datetime, timedelta

from fnkit import FunctionSettings
from pydantic import Field


class Settings(FunctionSettings):
    """Environment variables have the same names, upper-cased."""

    uploads_bucket: str = Field(
        default="uploads",
        description="Only records of uploads to this bucket are cleaned (image-processor's).",
    )
    processed_bucket: str = Field(
        default="processed", description="Where renditions are; swept for orphans."
    )
    processed_prefix: str = Field(
        default="processed",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)*$",
        description="image-processor's PROCESSED_PREFIX: renditions are <prefix>/... keys.",
    )
    images_collection: str = Field(default="images", description="image-processor's records.")
    state_collection: str = Field(
        default="cleanup_state", description="Where the orphan sweep keeps its position."
    )
    max_age_days: float | None = Field(
        default=None,
        gt=0,
        description="Retention rule: also expire records processed longer ago than this, "
        "whatever their expires_at (a shortened RETENTION_DAYS then applies to old records).",
    )
    keep_originals: bool = Field(
        default=False,
        description="Retention rule: delete renditions and records but keep the uploads "
        "(when the uploads bucket has a lifecycle policy of its own).",
    )
    sweep_orphans: bool = Field(
        default=True, description="Also delete renditions that no record refers to."
    )
    orphan_grace_hours: float = Field(
        default=24.0,
        gt=0,
        description="Only renditions older than this can be orphans: image-processor writes "
        "renditions before their record, and a retried event writes them again.",
    )
    orphan_scan_limit: int = Field(
        default=10_000,
        gt=0,
        description="Renditions examined per run; the sweep continues where the last run "
        "stopped and starts over once it reached the end.",
    )
    idempotency_retention_hours: float = Field(
        default=168.0,
        gt=0,
        description="fnkit's idempotency records finished (or abandoned) longer ago than this "
        "are deleted; a duplicate arriving later would run again, so keep it far beyond the "
        "broker's retry window and any dead-letter replay.",
    )
    batch_size: int = Field(
        default=1000,
        ge=1,
        le=1000,
        description="Expired records per page (and per batch delete of their objects).",
    )

    def max_age_cutoff(self, now: datetime) -> datetime | None:
        return None if self.max_age_days is None else now - timedelta(days=self.max_age_days)

    def idempotency_cutoff(self, now: datetime) -> datetime:
        return now - timedelta(hours=self.idempotency_retention_hours)

    def orphan_cutoff(self, now: datetime) -> datetime:
        return now - timedelta(hours=self.orphan_grace_hours)

    @property
    def rendition_prefix(self) -> str:
        return f"{self.processed_prefix}/"
