"""The test corpus, generated here: every kind of upload and what must become of it.

Each sample is made with Pillow from nothing, so the tests need no binary fixtures and each
case says exactly what makes it special (an EXIF orientation, a palette, 16 bits, a bomb).
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
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


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_by_hand(width: int, height: int, *, before: bytes = b"") -> bytes:
    """An 8-bit greyscale PNG whose header says `width` x `height`; its pixels are 8x8 at most."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x80" * min(width, 8) for _ in range(min(height, 8)))
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + before
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def zeros_deflated(size: int) -> bytes:
    """`size` zero bytes, deflated (about a thousandth of it), without holding them in memory."""
    packer = zlib.compressobj(9)
    block = b"\x00" * (1 << 20)
    return b"".join(packer.compress(block) for _ in range(size >> 20)) + packer.flush()


def text_bomb(kind: bytes) -> bytes:
    """A zTXt or iCCP chunk that inflates to 64 MiB, before the pixels (8x8, valid)."""
    chunk = png_chunk(kind, b"Comment\x00\x00" + zeros_deflated(64 << 20))
    return png_by_hand(8, 8, before=chunk)


def gif_with_screen(width: int, height: int) -> bytes:
    """A 4x4 GIF whose logical screen (the size Pillow reports) is `width` x `height`."""
    data = bytearray(encode(Image.new("P", (4, 4)), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A 16x16 JPEG whose frame header (SOF) says `width` x `height`."""
    data = bytearray(encode(Image.new("RGB", (16, 16), RED), "JPEG"))
    at = 2
    while data[at + 1] not in (0xC0, 0xC1, 0xC2):  # walk the segments to the frame header
        at += 2 + struct.unpack(">H", data[at + 2 : at + 4])[0]
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def webp_canvas(width: int, height: int) -> bytes:
    """A three-frame 16x16 animated WebP whose canvas (VP8X) says `width` x `height`."""
    frames = [Image.new("RGB", (16, 16), (n * 80, 0, 0)) for n in range(3)]
    data = bytearray(encode(frames[0], "WEBP", save_all=True, append_images=frames[1:]))
    assert data[12:16] == b"VP8X"
    data[24:27] = (width - 1).to_bytes(3, "little")
    data[27:30] = (height - 1).to_bytes(3, "little")
    return bytes(data)


def tiff_claiming(width: int, height: int) -> bytes:
    """An 8x8 TIFF whose ImageWidth and ImageLength tags say `width` x `height`."""
    data = bytearray(encode(Image.new("L", (8, 8)), "TIFF"))
    ifd = struct.unpack("<I", data[4:8])[0]
    for n in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
        entry = ifd + 2 + 12 * n
        tag, kind = struct.unpack("<HH", data[entry : entry + 4])
        if tag in (256, 257):
            value = width if tag == 256 else height
            packed = struct.pack("<H", value) if kind == 3 else struct.pack("<I", value)
            data[entry + 8 : entry + 8 + len(packed)] = packed
    return bytes(data)


def many_frames(fmt: str, count: int) -> bytes:
    """`count` distinct 300x300 frames (one pixel moves), so none is merged away."""
    frames = []
    for n in range(count):
        frame = Image.new("L", (300, 300))
        frame.putpixel((n % 300, n // 300 % 300), 255)
        frames.append(frame)
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=10)


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
        # Bombs that are all header: each says it is billions of pixels in a few hundred bytes.
        Sample(
            "png-60000-square",
            "evil/huge.png",
            png_by_hand(60_000, 60_000),
            reason="decompression_bomb",
        ),
        Sample(
            "gif-huge-screen",
            "evil/screen.gif",
            gif_with_screen(65_535, 65_535),
            reason="decompression_bomb",
        ),
        Sample(
            "jpeg-huge-frame-header",
            "evil/huge.jpg",
            jpeg_claiming(65_500, 65_500),
            reason="decompression_bomb",
        ),
        Sample(
            "webp-huge-canvas",
            "evil/canvas.webp",
            webp_canvas(16_383, 16_383),
            reason="decompression_bomb",
        ),
        Sample(
            "tiff-huge-tags",
            "evil/huge.tiff",
            tiff_claiming(65_000, 65_000),
            reason="decompression_bomb",
        ),
        # Metadata that inflates to 64 MiB from a few tens of kilobytes.
        Sample("png-ztxt-bomb", "evil/ztxt.png", text_bomb(b"zTXt"), reason="decompression_bomb"),
        Sample("png-iccp-bomb", "evil/iccp.png", text_bomb(b"iCCP"), reason="decompression_bomb"),
        # Hundreds of frames: only the first is ever decoded.
        Sample(
            "gif-many-frames",
            "evil/frames.gif",
            many_frames("GIF", 500),
            source_format="GIF",
            medium=(300, 300),
        ),
        Sample(
            "webp-many-frames",
            "evil/frames.webp",
            many_frames("WEBP", 500),
            source_format="WEBP",
            medium=(300, 300),
        ),
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
