"""bulk-jobs' settings (environment variables of the same names, upper-cased)."""

from __future__ import annotations

from fnkit import FunctionSettings
from pydantic import Field


class Settings(FunctionSettings):
    max_body_bytes: int = Field(
        default=2 << 20, gt=0, description="Request bodies larger than this get 413."
    )
    max_inline_items: int = Field(
        default=1000,
        gt=0,
        description="Most items POST /jobs takes inline; larger jobs name a JSON Lines object.",
    )
    max_line_bytes: int = Field(
        default=256 << 10,
        gt=0,
        description="Longest JSON Lines record; a longer line is a failed item. Keep it well "
        "below the broker's largest event (MAX_EVENT_BYTES, 1 MiB).",
    )
    read_chunk_bytes: int = Field(
        default=256 << 10, gt=0, description="Bytes read from MinIO at a time."
    )
    emit_concurrency: int = Field(
        default=32, gt=0, description="item.requested events posted to the broker at once."
    )
    emit_window: int = Field(
        default=1024,
        gt=0,
        description="Most items emitted beyond the oldest one still unconfirmed: bounds what a "
        "crash can make the resume emit again.",
    )
    checkpoint_every: int = Field(
        default=200, gt=0, description="Items between two writes of the emission checkpoint."
    )
    emission_slice_seconds: float = Field(
        default=10.0,
        gt=0,
        description="A replica emits a job for this long under its lease, then checkpoints and "
        "lets go (and takes the lease again at once if nobody else has).",
    )
    emission_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long a crashed replica's hold on a job's emission lasts; keep it well "
        "above EMISSION_SLICE_SECONDS.",
    )
    resume_interval_seconds: float = Field(
        default=10.0, gt=0, description="How often unfinished emissions are looked for."
    )
    completion_sweep_seconds: float = Field(
        default=10.0, gt=0, description="How often unsent job.completed events are re-sent."
    )
    max_page_size: int = Field(default=500, gt=0, description="Largest `limit` of /results.")
    progress_cache_seconds: float = Field(
        default=1.0,
        ge=0,
        description="GET /jobs/{id} of a running job reads its counts at most this often "
        "(per process); 0 reads them every time.",
    )
