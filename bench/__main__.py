"""`python -m bench` (`make bench`): run every benchmark, write bench/results/*.md and a chart.

Each benchmark is also a module of its own (`python -m bench.runtime --help`).
"""

from __future__ import annotations

import argparse

from bench import chart, coldstart, runtime
from bench.common import RESULTS

BENCHMARKS = ("runtime", "coldstart")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "benchmarks",
        nargs="*",
        metavar="benchmark",
        help=f"which to run: {', '.join(BENCHMARKS)} (default: all)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer, shorter runs: a smoke test, not figures to publish",
    )
    args = parser.parse_args(argv)
    selected = args.benchmarks or list(BENCHMARKS)
    unknown = set(selected) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    if "runtime" in selected:
        params = runtime.Params(rounds=1, seconds=3, warmup=1) if args.quick else runtime.Params()
        runtime.run(params)
    if "coldstart" in selected:
        coldstart.run(coldstart.Params(runs=2) if args.quick else coldstart.Params())
    path = chart.render()
    written = sorted(p.name for p in RESULTS.glob("*.md"))
    print(f"wrote bench/results/{{{','.join(written)}}}" + (f" and {path.name}" if path else ""))


if __name__ == "__main__":
    main()
