"""warmer's settings: whom to ping, where, and how long to wait."""

from __future__ import annotations

from typing import Annotated

from fnkit import FunctionSettings
from fnkit.config import NoDecode
from pydantic import Field, field_validator


class Settings(FunctionSettings):
    """Environment variables have the same names, upper-cased."""

    warmer_targets: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="Comma-separated base URLs of the functions to ping (the chart renders "
        "them from cronJobs.warmer.targets).",
    )
    warmer_path: str = Field(
        default="/health/readiness",
        pattern=r"^/",
        description="Path pinged on each target: readiness answers 200 only once the "
        "function and its own dependencies are up, so a success means really warm.",
    )
    warmer_timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        description="Per ping; long enough for a cold start from zero.",
    )

    @field_validator("warmer_targets", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("warmer_targets")
    @classmethod
    def _urls(cls, targets: list[str]) -> list[str]:
        bad = [t for t in targets if not t.startswith(("http://", "https://"))]
        if bad:
            raise ValueError(f"targets must be http:// or https:// URLs: {bad}")
        return [t.rstrip("/") for t in targets]
