"""Images: renditions per second and peak memory, this pipeline against two baselines.

`python -m bench.images` renders the same generated 12-megapixel JPEGs into the service's
default renditions (a 256 px thumbnail and a 1024 px medium) with:

- **image-processor**: `image_processor.imaging.render`, exactly what the service runs, with
  its default settings (decode once at reduced scale, largest first, watermark on);
- **naive Pillow**: per rendition, a full decode, `exif_transpose`, `convert("RGB")` and a
  Lanczos resize of the full image, as most examples do it;
- **pyvips**: `thumbnail_buffer` per rendition, libvips' own fast path (shrink-on-load);
- **pyvips, one decode**: the medium decoded once and the thumbnail derived from it, the
  same strategy as this pipeline, for reference.

Every pipeline encodes with the same format and quality (WebP at the service's default
effort, and JPEG), and each runs in a process of its own (peak RSS is then its own), pinned
to one core, one image at a time, libvips with one thread: the figures are per core, which
is what a function's throughput is made of. Rates are computed from CPU time, which a busy
shared machine disturbs far less than wall time (shown too).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import RESULTS, ROOT, WORK, Cores, header, load_average, median, write_json

IMAGES = WORK / "images"
SIZES = (1024, 256)
QUALITY = 80
WEBP_EFFORT = 2  # the service's default WEBP_METHOD
PIPELINES = {
    "ours": "image-processor",
    "naive": "naive Pillow",
    "vips": "pyvips thumbnails",
    "vips-once": "pyvips, one decode",
}
FORMATS = ("webp", "jpeg")


@dataclass(frozen=True)
class Params:
    images: int = 3
    rounds: int = 5
    passes: int = 2  # passes over every image per worker process


def generate(index: int, width: int = 4000, height: int = 3000) -> bytes:
    """A photo-like 12 MP JPEG: gradients, soft shapes, sensor-like noise, camera EXIF."""
    from PIL import Image, ImageDraw, ImageFilter

    rnd = random.Random(index)
    base = Image.linear_gradient("L").resize((width, height))
    image = Image.merge(
        "RGB",
        (
            base,
            base.transpose(Image.Transpose.ROTATE_180),
            base.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        ),
    )
    draw = ImageDraw.Draw(image)
    for _ in range(400):
        x, y = rnd.randrange(width), rnd.randrange(height)
        box = (x, y, x + rnd.randrange(20, 500), y + rnd.randrange(20, 500))
        draw.ellipse(box, fill=tuple(rnd.randrange(256) for _ in range(3)))
    image = image.filter(ImageFilter.GaussianBlur(3))
    image = Image.blend(image, Image.effect_noise((width, height), 30).convert("RGB"), 0.12)
    exif = Image.Exif()
    exif[0x010F] = "Bench Camera"
    exif[0x0112] = 1
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, exif=exif)
    return buffer.getvalue()


def corpus(count: int) -> list[Path]:
    IMAGES.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = IMAGES / f"photo-{index}.jpg"
        if not path.exists():
            path.write_bytes(generate(index))
        paths.append(path)
    return paths


# -- the pipelines (imported in the worker only, so each process holds only its own) -------


def ours(fmt: str) -> Callable[[bytes], list[bytes]]:
    # The service's defaults (tests/image_processor asserts they are what Settings builds),
    # without importing the web stack: the RSS measured is the pipeline's.
    from image_processor.imaging import (
        DEFAULT_RENDITIONS,
        DEFAULT_WATERMARK_TEXT,
        Pipeline,
        Watermark,
        render,
    )

    pipeline = Pipeline(
        DEFAULT_RENDITIONS,
        format=fmt,  # type: ignore[arg-type]
        watermark=Watermark(DEFAULT_WATERMARK_TEXT),
    )

    def run(data: bytes) -> list[bytes]:
        return [r.data for r in render(data, pipeline)[1]]

    return run


def naive(fmt: str) -> Callable[[bytes], list[bytes]]:
    from PIL import Image, ImageOps

    options: dict[str, Any] = {"quality": QUALITY}
    if fmt == "webp":
        options["method"] = WEBP_EFFORT

    def run(data: bytes) -> list[bytes]:
        out = []
        for size in SIZES:
            image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
            scale = min(1.0, size / max(image.size))
            image = image.resize(
                (round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS
            )
            buffer = io.BytesIO()
            image.save(buffer, fmt.upper(), **options)
            out.append(buffer.getvalue())
        return out

    return run


def _vips_writer(fmt: str) -> Callable[[Any], bytes]:
    suffix, options = (
        (".webp", {"Q": QUALITY, "effort": WEBP_EFFORT})
        if fmt == "webp"
        else (".jpg", {"Q": QUALITY})
    )

    def write(image: Any) -> bytes:
        return bytes(image.write_to_buffer(suffix, keep="none", **options))

    return write


def vips(fmt: str) -> Callable[[bytes], list[bytes]]:
    import pyvips

    write = _vips_writer(fmt)

    def run(data: bytes) -> list[bytes]:
        return [write(pyvips.Image.thumbnail_buffer(data, size)) for size in SIZES]

    return run


def vips_once(fmt: str) -> Callable[[bytes], list[bytes]]:
    import pyvips

    write = _vips_writer(fmt)

    def run(data: bytes) -> list[bytes]:
        medium = pyvips.Image.thumbnail_buffer(data, SIZES[0]).copy_memory()
        return [write(medium), write(medium.thumbnail_image(SIZES[1]))]

    return run


FACTORIES = {"ours": ours, "naive": naive, "vips": vips, "vips-once": vips_once}


def memory(field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process, in bytes.

    Not getrusage's ru_maxrss: Linux carries it over from the parent across fork and exec,
    so a child would report the harness's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def worker(pipeline: str, fmt: str, files: list[str], passes: int) -> dict[str, Any]:
    """One measurement in this process: warm up, then `passes` over every image."""
    inputs = [Path(f).read_bytes() for f in files]
    run = FACTORIES[pipeline](fmt)
    idle_rss = memory("VmRSS")  # interpreter, the pipeline's imports and the input files
    run(inputs[0])  # warm-up: lazy imports, font, codec tables
    renditions = output_bytes = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(passes):
        for data in inputs:
            outputs = run(data)
            renditions += len(outputs)
            output_bytes += sum(len(o) for o in outputs)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    peak = memory("VmHWM")
    return {
        "pipeline": pipeline,
        "format": fmt,
        "renditions": renditions,
        "cpu_s": cpu,
        "wall_s": wall,
        "peak_rss": peak,
        "idle_rss": idle_rss,
        "output_bytes": output_bytes,
    }


def measure(
    pipeline: str, fmt: str, files: list[Path], passes: int, cores: Cores
) -> dict[str, Any]:
    argv = cores.pin(
        cores.server,
        [
            sys.executable,
            "-m",
            "bench.images",
            "--worker",
            pipeline,
            fmt,
            "--passes",
            str(passes),
            *map(str, files),
        ],
    )
    env = {**os.environ, "VIPS_CONCURRENCY": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{pipeline}/{fmt} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def versions() -> dict[str, str]:
    import platform

    import pyvips
    from PIL import __version__ as pillow
    from PIL import features

    return {
        "python": platform.python_version(),
        "Pillow": pillow,
        "libjpeg-turbo": str(features.version("libjpeg_turbo")),
        "libwebp": str(features.version("webp")),
        "pyvips": pyvips.__version__,
        "libvips": ".".join(str(pyvips.version(i)) for i in range(3)),
    }


def run(params: Params = Params()) -> Path:
    """Measure every pipeline and format in interleaved rounds; write bench/results/images.md."""
    cores = Cores.pick()
    files = corpus(params.images)
    load_before = load_average()
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for round_number in range(params.rounds):
        for fmt in FORMATS:
            for pipeline in PIPELINES:
                result = measure(pipeline, fmt, files, params.passes, cores)
                runs.setdefault((pipeline, fmt), []).append(result)
                rate = result["renditions"] / result["cpu_s"]
                print(
                    f"round {round_number + 1}/{params.rounds} {fmt:4s} {pipeline:9s} "
                    f"{rate:6.1f} renditions/CPU-s, peak RSS "
                    f"{result['peak_rss'] / 2**20:.0f} MiB",
                    flush=True,
                )
    load_after = load_average()
    summary = {f"{p}/{f}": summarise(r) for (p, f), r in runs.items()}
    write_json(
        "images",
        {
            "params": params.__dict__,
            "summary": summary,
            "runs": {f"{p}/{f}": r for (p, f), r in runs.items()},
        },
    )
    lines = header(
        "Images: renditions per second and peak memory", cores, load_before, load_after, versions()
    )
    megabytes = sum(f.stat().st_size for f in files) / len(files) / 1e6
    lines += [
        f"- Parameters: {params.images} generated 4000x3000 JPEGs (quality 90, {megabytes:.1f} MB "
        "each on average), "
        f"renditions {' + '.join(f'{s} px' for s in SIZES)}, quality {QUALITY}, WebP effort "
        f"{WEBP_EFFORT}; each pipeline in a process of its own, pinned to "
        f"{'core ' + str(cores.server) if cores.server is not None else 'any core'} (the "
        '"server" core above), '
        f"{params.passes} passes over the images after a warm-up; {params.rounds} rounds, "
        "interleaved; medians. Rates are renditions per CPU-second (one core); wall-clock "
        "rates are in the last column. Working memory is peak RSS less the RSS before the "
        "first image (interpreter, imports, the input files).",
        "",
    ]
    for fmt in FORMATS:
        lines += table(fmt, summary)
    lines += [
        "Pipelines:",
        "",
        "- **image-processor**: `image_processor.imaging.render` with the service's defaults: "
        "decode once with JPEG shrink-on-load (`draft`), the largest rendition first and "
        "the smaller from it, `reduce` for whole factors, EXIF orientation, metadata "
        "stripped, watermark on the medium.",
        "- **naive Pillow**: per rendition: full decode, `ImageOps.exif_transpose`, "
        "`convert('RGB')`, Lanczos resize of the full image, encode (no watermark).",
        "- **pyvips thumbnails**: `pyvips.Image.thumbnail_buffer(data, size)` per rendition "
        "(shrink-on-load, auto-rotate), `keep=none` (no watermark).",
        "- **pyvips, one decode**: `thumbnail_buffer` for the medium, `copy_memory()`, then "
        "`thumbnail_image` for the thumbnail: this pipeline's strategy in libvips.",
        "",
        "Reproduce: `uv sync --all-packages --group bench && uv run python -m bench.images` "
        "(`--quick` for a smoke run).",
        "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "images.md"
    path.write_text("\n".join(lines))
    return path


def summarise(results: list[dict[str, Any]]) -> dict[str, float]:
    cpu_rates = [r["renditions"] / r["cpu_s"] for r in results]
    wall_rates = [r["renditions"] / r["wall_s"] for r in results]
    return {
        "cpu_rate": median(cpu_rates),
        "cpu_rate_min": min(cpu_rates),
        "cpu_rate_max": max(cpu_rates),
        "wall_rate": median(wall_rates),
        "peak_rss": median([r["peak_rss"] for r in results]),
        "idle_rss": median([r["idle_rss"] for r in results]),
        "bytes_per_rendition": median([r["output_bytes"] / r["renditions"] for r in results]),
    }


def table(fmt: str, summary: dict[str, dict[str, float]]) -> list[str]:
    ours_, naive_, vips_ = (summary[f"{p}/{fmt}"] for p in ("ours", "naive", "vips"))
    lines = [
        f"### {fmt.upper()} output",
        "",
        "| pipeline | renditions/s (CPU) | min - max | vs naive | vs pyvips | peak RSS MiB "
        "| working MiB | RSS vs naive | KiB/rendition | renditions/s (wall) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for pipeline, label in PIPELINES.items():
        s = summary[f"{pipeline}/{fmt}"]
        rate, low, high = s["cpu_rate"], s["cpu_rate_min"], s["cpu_rate_max"]
        lines.append(
            f"| {label} | {rate:.1f} | {low:.1f} - {high:.1f} "
            f"| {rate / naive_['cpu_rate']:.2f}x | {rate / vips_['cpu_rate']:.2f}x "
            f"| {s['peak_rss'] / 2**20:.0f} | {(s['peak_rss'] - s['idle_rss']) / 2**20:.0f} "
            f"| {s['peak_rss'] / naive_['peak_rss']:.2f} "
            f"| {s['bytes_per_rendition'] / 1024:.0f} | {s['wall_rate']:.1f} |"
        )
    speed = ours_["cpu_rate"] / naive_["cpu_rate"]
    versus_vips = ours_["cpu_rate"] / vips_["cpu_rate"]
    memory = ours_["peak_rss"] / naive_["peak_rss"]
    lines += [
        "",
        f"Goals: >= 4x naive: **{speed:.2f}x** ({'met' if speed >= 4 else 'missed'}); "
        f"no slower than pyvips: **{versus_vips:.2f}x** "
        f"({'met' if versus_vips >= 1 else 'missed'}); peak RSS <= half of naive: "
        f"**{memory:.2f}** ({'met' if memory <= 0.5 else 'missed'}).",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="one image, two rounds")
    parser.add_argument("--worker", nargs=2, metavar=("PIPELINE", "FORMAT"), help=argparse.SUPPRESS)
    parser.add_argument("--passes", type=int, default=Params.passes, help=argparse.SUPPRESS)
    parser.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        pipeline, fmt = args.worker
        print(json.dumps(worker(pipeline, fmt, args.files, args.passes)))
        return
    params = Params(images=1, rounds=2, passes=1) if args.quick else Params()
    print(f"wrote {run(params).relative_to(ROOT)}")


if __name__ == "__main__":
    main()
