"""job-aggregator's settings (environment variables of the same names, upper-cased)."""

from __future__ import annotations

from fnkit import FunctionSettings
from pydantic import Field


class Settings(FunctionSettings):
    record_batch_max: int = Field(
        default=500, gt=0, description="Most results stored by one insert (group commit)."
    )
    check_interval_seconds: float = Field(
        default=0.2,
        gt=0,
        description="A job's completion is checked after new results, at most this often.",
    )
    check_interval_max_seconds: float = Field(
        default=2.0,
        gt=0,
        description="Longest pause between a job's completion checks, while many results are "
        "still missing (the pause shrinks to CHECK_INTERVAL_SECONDS towards the end).",
    )
    sweep_interval_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How often every running job is checked (and repaired if stuck).",
    )
    repair_after_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A running job without new results for this long is recounted from its "
        "results (a crash between a result and its tally); keep it well above the time one "
        "write of results takes.",
    )
    completion_sweep_seconds: float = Field(
        default=10.0, gt=0, description="How often unsent job.completed events are re-sent."
    )
    known_jobs: int = Field(
        default=10_000, gt=0, description="Jobs whose existence and total are kept in memory."
    )
