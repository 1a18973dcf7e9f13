"""The shapes of the REST API: a job request, a job with its progress, a page of results."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from minio.helpers import check_bucket_name
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from bulk_jobs.store import Status

# S3 bucket names: 3-63 lower-case letters, digits, dots and hyphens.
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"


def _s3_bucket_name(name: str) -> str:
    """The rest of S3's rules (no `..`, `.-` or `-.`, not an IP address): a 422, not a 500."""
    check_bucket_name(name, strict=True)  # its ValueError becomes a validation error
    return name


class ObjectRef(BaseModel):
    """A JSON Lines object in MinIO: one JSON record per line."""

    model_config = ConfigDict(extra="forbid")

    bucket: Annotated[str, AfterValidator(_s3_bucket_name)] = Field(
        pattern=BUCKET_PATTERN, examples=["uploads"]
    )
    key: str = Field(min_length=1, max_length=1024, examples=["imports/products.jsonl"])


class JobRequest(BaseModel):
    """Items inline, or the object they are in: exactly one of the two."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"source": {"bucket": "uploads", "key": "imports/products.jsonl"}},
                {
                    "items": [
                        {
                            "sku": "SHOE-RED-42",
                            "name": "Red running shoe",
                            "price": "89.90",
                            "currency": "EUR",
                            "stock": 12,
                        }
                    ]
                },
            ]
        },
    )

    items: list[Any] | None = Field(
        default=None,
        min_length=1,
        description="The records themselves (at most MAX_INLINE_ITEMS); each becomes one item.",
    )
    source: ObjectRef | None = Field(
        default=None, description="A JSON Lines object to stream the records from."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> JobRequest:
        if (self.items is None) == (self.source is None):
            raise ValueError("send either `items` or `source`, not both or neither")
        return self


class SourceView(BaseModel):
    kind: Literal["inline", "object"]
    bucket: str | None = None
    key: str | None = None
    etag: str | None = Field(default=None, description="The object as the job reads it.")
    size: int | None = None


class JobView(BaseModel):
    """A job and how far it has got."""

    id: str
    status: Status = Field(description="RUNNING, then COMPLETED (or FAILED: source unreadable).")
    source: SourceView
    total: int | None = Field(
        description="Items in the job; null while a JSON Lines object is still being read."
    )
    emitted: int = Field(description="Items handed to the broker so far (as last checkpointed).")
    succeeded: int
    failed: int
    pending: int | None = Field(description="Items without a result yet; null while total is.")
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None
    error: str | None = Field(default=None, description="Why a FAILED job stopped.")


class ResultView(BaseModel):
    """One item's result."""

    index: int = Field(description="The item's place in the job, from 0.")
    outcome: Literal["succeeded", "failed"]
    reason: str | None = Field(default=None, description="Why the item failed.")
    detail: dict[str, Any] | None = Field(
        default=None,
        description="What the processor reported: the product's sku, id and change, or the "
        "validation errors, or the dead letter's id.",
    )


class ResultPage(BaseModel):
    items: list[ResultView]
    next_after: int | None = Field(
        description="Pass as `after` for the next page; null on the last page."
    )
