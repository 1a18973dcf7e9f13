"""Renditions of one image, with Pillow: decode once, largest first, derive the smaller ones.

Pure and synchronous (no I/O, no service imports), so the service runs it in its thread pool
and the benchmark runs exactly the same code. Where the time goes, and what saves it:

- a JPEG is decoded at reduced scale (libjpeg's DCT scaling through `Image.draft`), never
  larger than the largest rendition needs: a quarter or a sixteenth of the pixels;
- each rendition is resized from the previous, larger one, not from the original;
- `reducing_gap` makes every resize first shrink by a whole factor with `Image.reduce`
  (a cheap box filter) and only then resample the last step, bicubic as in Pillow's own
  `thumbnail` (as sharp as Lanczos at these factors: 46.8 against 47.7 dB PSNR to a full
  decode resized with Lanczos, at two thirds of the cost);
- EXIF orientation is applied to the first rendition, a small image, not to the original.

Bad input is refused with an `ImageRejected` that says why; nothing here retries.
"""

from __future__ import annotations

import functools
import io
import warnings
from dataclasses import dataclass
from typing import Final, Literal

from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

Format = Literal["webp", "jpeg"]
Position = Literal["bottom-right", "bottom-left", "top-right", "top-left", "center"]

CONTENT_TYPES: Final[dict[str, str]] = {"webp": "image/webp", "jpeg": "image/jpeg"}
EXTENSIONS: Final[dict[str, str]] = {"webp": "webp", "jpeg": "jpg"}

# Pillow's own bomb check (a warning, then an error at twice the limit) is replaced by the
# configured limit, checked against the header before anything is decoded.
Image.MAX_IMAGE_PIXELS = None

_ORIENTATION_TAG: Final = 0x0112
_TRANSPOSE: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIXTEEN_BIT: Final = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
# HEIF containers (iPhone photos) are common uploads that Pillow cannot read: name them.
_HEIF_BRANDS: Final = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
REDUCING_GAP: Final = 2.0
RESAMPLE: Final = Image.Resampling.BICUBIC


class ImageRejected(Exception):
    """The upload cannot become renditions, permanently: `reason` is a stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class RenditionSpec:
    """A rendition: fits in a `size` x `size` box, never upscaled.

    `watermark`: True always, False never, None when the output's long side reaches the
    watermark's `min_size`.
    """

    name: str
    size: int
    watermark: bool | None = None


DEFAULT_RENDITIONS: Final = (RenditionSpec("thumbnail", 256), RenditionSpec("medium", 1024))
DEFAULT_WATERMARK_TEXT: Final = "knative-playbook"


@dataclass(frozen=True, slots=True)
class Watermark:
    text: str
    position: Position = "bottom-right"
    opacity: float = 0.5
    min_size: int = 512


@dataclass(frozen=True, slots=True)
class Pipeline:
    """Everything that decides the output; built once from the service's settings."""

    renditions: tuple[RenditionSpec, ...]
    format: Format = "webp"
    quality: int = 80
    webp_method: int = 2
    watermark: Watermark | None = None
    max_pixels: int = 50_000_000
    accepted_formats: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "TIFF")


@dataclass(frozen=True, slots=True)
class SourceInfo:
    format: str
    width: int
    height: int
    mode: str
    orientation: int
    animated: bool


@dataclass(frozen=True, slots=True)
class Rendered:
    name: str
    data: bytes
    width: int
    height: int
    format: Format
    watermarked: bool

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


def render(data: bytes, pipeline: Pipeline) -> tuple[SourceInfo, list[Rendered]]:
    """Decode `data` once and encode every rendition of `pipeline`, largest first."""
    if not data:
        raise ImageRejected("empty", "the object has zero bytes")
    image = _open(data, pipeline)
    source_format, (width, height) = str(image.format), image.size
    if width < 1 or height < 1:
        raise ImageRejected("corrupt", f"invalid dimensions {width}x{height}")
    if width * height > pipeline.max_pixels:
        raise ImageRejected(
            "decompression_bomb",
            f"{width}x{height} = {width * height} pixels exceeds the limit of "
            f"{pipeline.max_pixels}",
        )
    animated = _animated(image)
    specs = sorted(pipeline.renditions, key=lambda s: s.size, reverse=True)
    first = _fit((width, height), specs[0].size)
    if source_format in ("JPEG", "MPO"):  # MPO: phone cameras' JPEGs, opened by "JPEG"
        image.draft(None, first)  # shrink-on-load: decode at 1/2, 1/4 or 1/8 scale
    try:
        image.load()
    except MemoryError:
        raise
    except Exception as exc:  # whatever a decoder raises on malformed data, it stays malformed
        message = str(exc)
        truncated = "truncated" in message.lower() or isinstance(exc, EOFError)
        raise ImageRejected(
            _malformed(message, "truncated" if truncated else "corrupt"),
            f"cannot decode the {source_format} data: {message or type(exc).__name__}",
        ) from None
    orientation = _orientation(image)
    info = SourceInfo(source_format, width, height, image.mode, orientation, animated)
    icc = image.info.get("icc_profile") if image.mode in ("RGB", "RGBA") else None
    current, alpha = _normalised(image)
    del image  # the full-size decode goes as soon as the first resize no longer needs it
    oriented = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    results = []
    for index, spec in enumerate(specs):
        target = first if index == 0 else _fit(oriented, spec.size)
        if current.size != target:
            current = current.resize(target, RESAMPLE, reducing_gap=REDUCING_GAP)
        if index == 0 and orientation in _TRANSPOSE:
            current = current.transpose(_TRANSPOSE[orientation])
        results.append(_encode(spec, current, alpha, icc, pipeline))
    return info, results


def _open(data: bytes, pipeline: Pipeline) -> Image.Image:
    """Identify the format from the content (never the name) and read only the header."""
    try:
        return Image.open(io.BytesIO(data), formats=list(pipeline.accepted_formats))
    except UnidentifiedImageError:
        pass
    except MemoryError:
        raise
    except Exception as exc:  # a recognised but malformed header
        detail = str(exc) or type(exc).__name__
        raise ImageRejected(
            _malformed(detail, "corrupt"), f"cannot read the image header: {detail}"
        ) from None
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        raise ImageRejected("unsupported_format", "HEIF/HEIC images are not supported")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            other = Image.open(io.BytesIO(data))
    except Exception:
        raise ImageRejected("not_an_image", "the content is not a known image format") from None
    accepted = ", ".join(pipeline.accepted_formats)
    raise ImageRejected(
        "unsupported_format", f"{other.format} images are not accepted (accepted: {accepted})"
    )


def _malformed(message: str, reason: str) -> str:
    """`reason`, unless Pillow refused metadata (zTXt, iCCP) that inflates past its limit."""
    return "decompression_bomb" if "decompressed data too large" in message.lower() else reason


def _animated(image: Image.Image) -> bool:
    try:
        return bool(getattr(image, "is_animated", False))
    except (OSError, SyntaxError, ValueError, EOFError):
        return False  # a broken later frame does not matter: only the first is used


def _orientation(image: Image.Image) -> int:
    try:
        orientation = int(image.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # malformed EXIF only loses the orientation, not the image
        return 1
    return orientation if orientation in _TRANSPOSE else 1


def _fit(size: tuple[int, int], box: int) -> tuple[int, int]:
    width, height = size
    scale = min(1.0, box / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _normalised(image: Image.Image) -> tuple[Image.Image, bool]:
    """8-bit RGB, L or premultiplied RGBa (so resizing does not darken edges); and alpha."""
    mode = image.mode
    if mode in _SIXTEEN_BIT:
        # Pillow's own conversion clips 16-bit values to 255 (white): scale them instead.
        image = image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
        mode = "L"
    elif mode == "1":
        image = image.convert("L")
        mode = "L"
    if mode in ("RGB", "L"):
        return image, False
    if mode in ("RGBA", "RGBa"):
        return image.convert("RGBa"), True
    if mode in ("LA", "PA", "La") or (mode == "P" and image.has_transparency_data):
        return image.convert("RGBA").convert("RGBa"), True
    try:
        return image.convert("RGB"), False
    except ValueError as exc:
        raise ImageRejected("unsupported_format", f"cannot convert mode {mode}: {exc}") from None


def _encode(
    spec: RenditionSpec, image: Image.Image, alpha: bool, icc: bytes | None, pipeline: Pipeline
) -> Rendered:
    """Encode one rendition; `image` stays as it is, for the next, smaller one."""
    out = image.convert("RGBA") if alpha else image
    if alpha and pipeline.format == "jpeg":
        flat = Image.new("RGB", out.size, (255, 255, 255))
        flat.paste(out, mask=out.getchannel("A"))
        out = flat
    mark = pipeline.watermark
    wanted = bool(
        mark
        and mark.text
        and (spec.watermark if spec.watermark is not None else max(out.size) >= mark.min_size)
    )
    watermarked = False
    if wanted and mark is not None and _fits(out, mark):
        out = _watermarked(out.copy() if out is image else out, mark)
        watermarked = True
    out.info.clear()  # nothing of the original's metadata (EXIF, GPS, XMP, comments) survives
    buffer = io.BytesIO()
    options: dict[str, object] = {"quality": pipeline.quality}
    if icc:
        options["icc_profile"] = icc
    if pipeline.format == "webp":
        out.save(buffer, "WEBP", method=pipeline.webp_method, exif=b"", xmp=b"", **options)
    else:
        out.save(buffer, "JPEG", exif=b"", **options)
    return Rendered(
        spec.name, buffer.getvalue(), out.width, out.height, pipeline.format, watermarked
    )


@functools.lru_cache(maxsize=32)
def _text_layer(text: str, size: int, opacity: float) -> Image.Image:
    """The watermark as an RGBA tile, rendered once per size (renditions repeat sizes)."""
    font = ImageFont.load_default(size)
    stroke = max(1, round(size / 16))
    left, top, right, bottom = (round(v) for v in font.getbbox(text, stroke_width=stroke))
    alpha = round(255 * opacity)
    layer = Image.new("RGBA", (right - left, bottom - top), (0, 0, 0, 0))
    ImageDraw.Draw(layer).text(
        (-left, -top),
        text,
        font=font,
        fill=(255, 255, 255, alpha),
        stroke_width=stroke,
        stroke_fill=(0, 0, 0, alpha),
    )
    return layer


def _layout(image: Image.Image) -> tuple[int, int]:
    """Font size and margin of the watermark, relative to the image's long side."""
    long_side = max(image.size)
    return max(10, round(long_side * 0.035)), max(4, round(long_side * 0.02))


def _fits(image: Image.Image, mark: Watermark) -> bool:
    """Whether the text fits legibly; small images go without."""
    size, margin = _layout(image)
    width, height = _text_layer(mark.text, size, mark.opacity).size
    return width + 2 * margin <= image.width and height + 2 * margin <= image.height


def _watermarked(image: Image.Image, mark: Watermark) -> Image.Image:
    """Blend the text in, in the configured corner (or the center)."""
    size, margin = _layout(image)
    layer = _text_layer(mark.text, size, mark.opacity)
    width, height = layer.size
    if mark.position == "center":
        at = ((image.width - width) // 2, (image.height - height) // 2)
    else:
        vertical, horizontal = mark.position.split("-")
        x = margin if horizontal == "left" else image.width - width - margin
        y = margin if vertical == "top" else image.height - height - margin
        at = (x, y)
    if image.mode == "RGBA":
        image.alpha_composite(layer, at)
    else:
        image.paste(layer, at, layer)
    return image
