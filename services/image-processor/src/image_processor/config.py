"""image-processor's settings: buckets, renditions, encoding, watermark, limits, retention."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from fnkit import FunctionSettings
from PIL import Image
from pydantic import BaseModel, Field, field_validator

from image_processor.imaging import (
    DEFAULT_RENDITIONS,
    DEFAULT_WATERMARK_TEXT,
    Pipeline,
    Position,
    RenditionSpec,
    Watermark,
)


class Rendition(BaseModel):
    """One output: fits in `size` x `size` pixels (never upscaled)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    size: int = Field(ge=16, le=8192)
    watermark: bool | None = Field(
        default=None, description="Default: when the output's long side >= WATERMARK_MIN_SIZE."
    )


class Settings(FunctionSettings):
    """Environment variables have the same names, upper-cased (RENDITIONS is JSON)."""

    uploads_bucket: str = Field(default="uploads", description="The only bucket read from.")
    processed_bucket: str = Field(default="processed", description="Where renditions go.")
    processed_prefix: str = Field(
        default="processed",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)*$",
        description="Renditions are <prefix>/<key-stem>/<rendition>.<ext> in the bucket.",
    )
    renditions: list[Rendition] = Field(
        default=[Rendition(name=r.name, size=r.size) for r in DEFAULT_RENDITIONS],
        min_length=1,
        max_length=8,
    )
    output_format: Literal["webp", "jpeg"] = "webp"
    quality: int = Field(default=80, ge=1, le=100)
    webp_method: int = Field(
        default=2,
        ge=0,
        le=6,
        description="libwebp effort: 2 costs half of 4 for about 6% larger files.",
    )
    watermark_text: str = Field(
        default=DEFAULT_WATERMARK_TEXT, max_length=100, description="Empty: no watermark."
    )
    watermark_position: Position = "bottom-right"
    watermark_opacity: float = Field(default=0.5, ge=0.0, le=1.0)
    watermark_min_size: int = Field(default=512, ge=1)
    max_source_bytes: int = Field(default=50 << 20, gt=0, description="Larger uploads: rejected.")
    max_image_pixels: int = Field(
        default=50_000_000, gt=0, description="Decompression-bomb limit, from the header."
    )
    accepted_formats: list[str] = Field(
        default=["JPEG", "PNG", "GIF", "WEBP", "TIFF"],
        min_length=1,
        description="Pillow format names, detected from the content (JPEG includes MPO).",
    )
    retention_days: float = Field(
        default=30.0, gt=0, description="expires_at = processed_at + this; the cleanup job acts."
    )
    image_concurrency: int = Field(
        default=2, ge=1, description="Images decoded at once: bounds memory, not just CPU."
    )
    images_collection: str = "images"

    @field_validator("accepted_formats")
    @classmethod
    def _known_formats(cls, formats: list[str]) -> list[str]:
        Image.init()
        unknown = [f for f in formats if f.upper() not in Image.OPEN]
        if unknown:
            raise ValueError(f"Pillow cannot read {unknown}; it reads {sorted(Image.OPEN)}")
        return [f.upper() for f in formats]

    @field_validator("renditions")
    @classmethod
    def _unique_names(cls, renditions: list[Rendition]) -> list[Rendition]:
        names = [r.name for r in renditions]
        if len(set(names)) != len(names):
            raise ValueError(f"rendition names must be unique: {names}")
        return renditions

    @property
    def retention(self) -> timedelta:
        return timedelta(days=self.retention_days)

    def pipeline(self) -> Pipeline:
        mark = (
            Watermark(
                self.watermark_text,
                self.watermark_position,
                self.watermark_opacity,
                self.watermark_min_size,
            )
            if self.watermark_text
            else None
        )
        return Pipeline(
            renditions=tuple(RenditionSpec(r.name, r.size, r.watermark) for r in self.renditions),
            format=self.output_format,
            quality=self.quality,
            webp_method=self.webp_method,
            watermark=mark,
            max_pixels=self.max_image_pixels,
            accepted_formats=tuple(self.accepted_formats),
        )
