"""The rendition pipeline on the generated corpus: every sample gets its expected outcome."""

from __future__ import annotations

import io
from typing import Any

import pytest
from image_processor.config import Settings
from image_processor.imaging import (
    DEFAULT_RENDITIONS,
    DEFAULT_WATERMARK_TEXT,
    ImageRejected,
    Pipeline,
    Rendered,
    RenditionSpec,
    Watermark,
    render,
)
from PIL import Image, ImageFile, ImageStat

from tests.image_processor.corpus import BLUE, RED, Sample, by_name, encode, marked, samples

pytestmark = pytest.mark.unit

DEFAULT = Pipeline(
    renditions=(RenditionSpec("thumbnail", 256), RenditionSpec("medium", 1024)),
    watermark=Watermark("knative-playbook"),
)
GOOD = [s for s in samples() if s.reason is None]
BAD = [s for s in samples() if s.reason is not None]


def opened(rendition: Rendered) -> Image.Image:
    image = Image.open(io.BytesIO(rendition.data))
    image.load()
    return image


def close_to(pixel: Any, colour: tuple[int, ...], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=False))


def by_rendition(renditions: list[Rendered]) -> dict[str, Rendered]:
    return {r.name: r for r in renditions}


@pytest.mark.parametrize("sample", GOOD, ids=lambda s: s.name)
def test_images_become_every_rendition_at_its_size(sample: Sample) -> None:
    info, renditions = render(sample.data, DEFAULT)

    out = by_rendition(renditions)
    assert info.format == sample.source_format
    assert (out["medium"].width, out["medium"].height) == sample.medium
    assert max(out["thumbnail"].width, out["thumbnail"].height) == 256
    for rendition in renditions:
        image = opened(rendition)
        assert image.format == "WEBP"
        assert image.size == (rendition.width, rendition.height)


@pytest.mark.parametrize("sample", GOOD, ids=lambda s: s.name)
def test_content_survives_conversion(sample: Sample) -> None:
    _, renditions = render(sample.data, DEFAULT)

    medium = opened(by_rendition(renditions)["medium"]).convert("RGBA")
    w, h = medium.size
    probes = {
        "top_left": (w // 8, h // 8),
        "top_right": (w - w // 8, h // 8),
        "center": (w // 2, h // 2),
    }
    for where, point in probes.items():
        if where in sample.checks:
            assert close_to(medium.getpixel(point), sample.checks[where]), (where, point)
    if sample.checks.get("alpha"):
        assert medium.getchannel("A").getpixel((2, 2)) == 0  # transparent stays transparent
        assert medium.getchannel("A").getpixel((w // 2, h // 2)) == 255
    if sample.checks.get("mid_grey"):
        # Pillow's plain conversion would clip 16-bit values to white: the mean would be 255.
        mean = ImageStat.Stat(medium.convert("L")).mean[0]
        assert 100 < mean < 155


def test_exif_orientation_is_applied_and_reported() -> None:
    info, renditions = render(by_name("exif-rotated-jpeg").data, DEFAULT)

    thumbnail = opened(by_rendition(renditions)["thumbnail"]).convert("RGB")
    assert info.orientation == 6
    assert thumbnail.size == (192, 256)
    assert close_to(thumbnail.getpixel((170, 20)), RED)
    assert close_to(thumbnail.getpixel((20, 20)), BLUE)


@pytest.mark.parametrize("fmt", ["webp", "jpeg"])
def test_outputs_carry_no_metadata(fmt: str) -> None:
    pipeline = Pipeline(DEFAULT.renditions, format=fmt)  # type: ignore[arg-type]

    _, renditions = render(by_name("exif-rotated-jpeg").data, pipeline)

    for rendition in renditions:
        image = opened(rendition)
        assert len(image.getexif()) == 0
        assert not {"exif", "xmp", "XML:com.adobe.xmp", "comment"} & set(image.info)
        assert b"Test Camera Maker" not in rendition.data


def test_first_frame_of_an_animation_is_used() -> None:
    info, renditions = render(by_name("animated-gif").data, DEFAULT)

    assert info.animated
    assert close_to(opened(renditions[0]).convert("RGB").getpixel((200, 150)), RED)


@pytest.mark.parametrize("sample", BAD, ids=lambda s: s.name)
def test_bad_input_is_rejected_with_its_reason(sample: Sample) -> None:
    with pytest.raises(ImageRejected) as rejected:
        render(sample.data, DEFAULT)

    assert rejected.value.reason == sample.reason
    assert rejected.value.detail


def test_the_format_comes_from_the_content_not_the_name() -> None:
    png_bytes = encode(marked((640, 480)), "PNG")

    info, _ = render(png_bytes, DEFAULT)

    assert info.format == "PNG"


def test_formats_outside_the_accepted_list_are_unsupported() -> None:
    only_jpeg = Pipeline(DEFAULT.renditions, accepted_formats=("JPEG",))

    with pytest.raises(ImageRejected) as rejected:
        render(by_name("webp").data, only_jpeg)

    assert rejected.value.reason == "unsupported_format"
    assert "WEBP" in rejected.value.detail


def test_pixel_limit_is_configurable() -> None:
    small_limit = Pipeline(DEFAULT.renditions, max_pixels=1600 * 1200 - 1)

    with pytest.raises(ImageRejected) as rejected:
        render(by_name("baseline-jpeg").data, small_limit)

    assert rejected.value.reason == "decompression_bomb"
    assert "1600x1200" in rejected.value.detail


def test_small_images_are_not_upscaled() -> None:
    _, renditions = render(encode(marked((200, 100)), "JPEG"), DEFAULT)

    assert {(r.name, r.width, r.height) for r in renditions} == {
        ("thumbnail", 200, 100),
        ("medium", 200, 100),
    }


def test_watermark_goes_on_large_renditions_only() -> None:
    plain = Pipeline(DEFAULT.renditions, watermark=None)
    blank = encode(Image.new("RGB", (1600, 1200), (90, 90, 90)), "PNG")

    _, marked_out = render(blank, DEFAULT)
    _, plain_out = render(blank, plain)

    marked_by_name, plain_by_name = by_rendition(marked_out), by_rendition(plain_out)
    assert marked_by_name["medium"].watermarked
    assert not marked_by_name["thumbnail"].watermarked
    corner = (880, 700, 1010, 760)  # bottom-right, where the text goes by default
    with_text = opened(marked_by_name["medium"]).convert("L").crop(corner)
    without = opened(plain_by_name["medium"]).convert("L").crop(corner)
    assert ImageStat.Stat(with_text).extrema[0][1] > ImageStat.Stat(without).extrema[0][1] + 60


def test_watermark_position_and_opacity_follow_the_configuration() -> None:
    blank = encode(Image.new("RGB", (1600, 1200), (0, 0, 0)), "PNG")
    renditions = (RenditionSpec("medium", 1024, watermark=True),)

    def brightest(position: str, opacity: float, box: tuple[int, int, int, int]) -> float:
        mark = Watermark("PLAYBOOK", position, opacity)  # type: ignore[arg-type]
        _, out = render(blank, Pipeline(renditions, format="jpeg", quality=95, watermark=mark))
        return float(ImageStat.Stat(opened(out[0]).convert("L").crop(box)).extrema[0][1])

    top_left = (0, 0, 300, 120)
    assert brightest("top-left", 1.0, top_left) > 200
    assert brightest("top-left", 0.3, top_left) < 120
    assert brightest("bottom-right", 1.0, top_left) < 20


def test_jpeg_output_flattens_transparency_onto_white() -> None:
    pipeline = Pipeline(DEFAULT.renditions, format="jpeg", watermark=None)

    _, renditions = render(by_name("png-with-alpha").data, pipeline)

    medium = opened(by_rendition(renditions)["medium"])
    assert medium.format == "JPEG" and medium.mode == "RGB"
    assert close_to(medium.getpixel((2, 2)), (255, 255, 255), 10)
    assert by_rendition(renditions)["medium"].content_type == "image/jpeg"


def test_large_jpegs_are_decoded_at_reduced_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrink-on-load: a 12 MP JPEG is never decoded at full size for a 1024 px rendition."""
    big = encode(marked((4000, 3000)), "JPEG", quality=90)
    decoded: list[tuple[int, int]] = []
    load = ImageFile.ImageFile.load

    def recording_load(self: ImageFile.ImageFile) -> Any:
        decoded.append(self.size)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)

    _, renditions = render(big, DEFAULT)

    assert set(decoded) == {(2000, 1500)}
    medium = by_rendition(renditions)["medium"]
    assert (medium.width, medium.height) == (1024, 768)


def test_the_service_defaults_are_the_pipeline_defaults() -> None:
    """bench/images.py measures this default pipeline without importing the service."""
    assert Settings(environment="dev").pipeline() == Pipeline(
        DEFAULT_RENDITIONS, watermark=Watermark(DEFAULT_WATERMARK_TEXT)
    )
