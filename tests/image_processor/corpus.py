"""The test corpus, generated here: every kind of upload and what must become of it.

Each sample is made with Pillow from nothing, so the tests need no binary fixtures and each
case says exactly what makes it special (an EXIF orientation, a palette, 16 bits, a bomb).
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass, field
from typing import Any

from PIL import ExifTags, Image, ImageDraw

GPS = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 0.0)}
RED, GREEN, BLUE = (255, 0, 0), (0, 160, 0), (0, 0, 255)


@dataclass(frozen=True)
class Sample:
    """An upload and its expected outcome: `reason` None means it must be processed."""

    name: str
    key: str
    data: bytes
    reason: str | None = None
    source_format: str | None = None
    # (width, height) the medium (1024 px) rendition must have once oriented
    medium: tuple[int, int] | None = None
    checks: dict[str, Any] = field(default_factory=dict)


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def marked(size: tuple[int, int] = (1600, 1200)) -> Image.Image:
    """A picture whose top-left quarter is red and the rest blue: orientation shows."""
    image = Image.new("RGB", size, BLUE)
    ImageDraw.Draw(image).rectangle((0, 0, size[0] // 2 - 1, size[1] // 2 - 1), fill=RED)
    return image


def exif_with(orientation: int | None = None, gps: bool = False) -> Image.Exif:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    if gps:
        exif[ExifTags.IFD.GPSInfo] = GPS
    exif[0x010F] = "Test Camera Maker"  # Make
    return exif


def bomb() -> bytes:
    """100 megapixels of 1-bit zeros: a few kilobytes on disk, 400 MB once decoded as RGBA."""
    return encode(Image.new("1", (10_000, 10_000)), "PNG", optimize=False)


def animated_gif() -> bytes:
    frames = [Image.new("P", (400, 300), 0) for _ in range(3)]
    palette = [*RED, *GREEN, *BLUE] + [0] * (256 * 3 - 9)
    for index, frame in enumerate(frames):
        frame.putpalette(palette)
        frame.paste(index, (0, 0, 400, 300))
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def sixteen_bit_png() -> bytes:
    gradient = Image.linear_gradient("L").resize((1200, 800)).convert("I")
    return encode(gradient.point(lambda v: v * 257).convert("I;16"), "PNG")


def alpha_png() -> bytes:
    image = Image.new("RGBA", (1200, 900), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((200, 150, 1000, 750), fill=(*GREEN, 255))
    return encode(image, "PNG")


def palette_png() -> bytes:
    return encode(marked((900, 600)).convert("P", palette=Image.Palette.ADAPTIVE, colors=8), "PNG")


def cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (1400, 1000), (255, 0, 0, 0)), "JPEG", quality=90)


@functools.cache
def samples() -> tuple[Sample, ...]:
    """Every case, with its expected outcome."""
    baseline = encode(marked(), "JPEG", quality=90)
    return (
        Sample(
            "baseline-jpeg",
            "photos/baseline.jpg",
            baseline,
            source_format="JPEG",
            medium=(1024, 768),
            checks={"top_left": RED},
        ),
        Sample(
            "progressive-jpeg",
            "photos/progressive.jpg",
            encode(marked(), "JPEG", quality=85, progressive=True),
            source_format="JPEG",
            medium=(1024, 768),
            checks={"top_left": RED},
        ),
        # Orientation 6: the camera was turned; viewers rotate 90 degrees clockwise, so the
        # red quarter ends up top-right and the picture becomes portrait.
        Sample(
            "exif-rotated-jpeg",
            "photos/rotated.jpg",
            encode(marked(), "JPEG", exif=exif_with(orientation=6, gps=True)),
            source_format="JPEG",
            medium=(768, 1024),
            checks={"top_right": RED, "top_left": BLUE, "orientation": 6},
        ),
        Sample(
            "cmyk-jpeg",
            "photos/cmyk.jpg",
            cmyk_jpeg(),
            source_format="JPEG",
            medium=(1024, 731),
            checks={"center": (0, 255, 255)},
        ),
        Sample(
            "png-with-alpha",
            "art/alpha.png",
            alpha_png(),
            source_format="PNG",
            medium=(1024, 768),
            checks={"alpha": True},
        ),
        Sample(
            "palette-png",
            "art/palette.png",
            palette_png(),
            source_format="PNG",
            medium=(900, 600),
            checks={"top_left": RED},
        ),
        Sample(
            "animated-gif",
            "art/animated.gif",
            animated_gif(),
            source_format="GIF",
            medium=(400, 300),
            checks={"center": RED, "animated": True},
        ),
        Sample(
            "sixteen-bit-png",
            "scans/deep.png",
            sixteen_bit_png(),
            source_format="PNG",
            medium=(1024, 683),
            checks={"mid_grey": True},
        ),
        Sample(
            "webp",
            "photos/web.webp",
            encode(marked(), "WEBP", quality=90),
            source_format="WEBP",
            medium=(1024, 768),
            checks={"top_left": RED},
        ),
        Sample(
            "tiff",
            "scans/page.tiff",
            encode(marked(), "TIFF", compression="tiff_lzw"),
            source_format="TIFF",
            medium=(1024, 768),
            checks={"top_left": RED},
        ),
        Sample("decompression-bomb", "evil/bomb.png", bomb(), reason="decompression_bomb"),
        Sample(
            "truncated-jpeg",
            "broken/truncated.jpg",
            baseline[: len(baseline) // 2],
            reason="truncated",
        ),
        Sample("zero-bytes", "broken/empty.jpg", b"", reason="empty"),
        Sample(
            "text-named-jpg",
            "broken/notes.jpg",
            b"these are my notes, not a photo\n" * 20,
            reason="not_an_image",
        ),
        Sample(
            "bmp", "legacy/old.bmp", encode(marked((300, 200)), "BMP"), reason="unsupported_format"
        ),
        Sample(
            "heic",
            "phone/IMG_0001.heic",
            b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 200,
            reason="unsupported_format",
        ),
    )


def by_name(name: str) -> Sample:
    return next(sample for sample in samples() if sample.name == name)
