"""`python -m bench` (`make bench`): run every benchmark, write bench/results/*.md and a chart.

A benchmark is any module of bench/ with a `main(argv)` (each also runs alone:
`python -m bench.runtime --help`); the event runtime and cold start go first, the rest in
name order. Modules that serve the others (common, chart, hotpath) are not benchmarks.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable
from pathlib import Path

from bench import chart
from bench.common import RESULTS

FIRST = ("runtime", "coldstart")
NOT_BENCHMARKS = frozenset({"common", "chart", "hotpath", "__main__"})
# Short runs of the benchmarks that have them: a smoke test, not figures to publish.
QUICK = {
    "runtime": ["--rounds", "1", "--seconds", "3", "--warmup", "1"],
    "coldstart": ["--runs", "2"],
    "rest": ["--rounds", "1", "--seconds", "3", "--warmup", "1", "--products", "200"],
}


def benchmarks() -> list[str]:
    names = [
        m.name
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if not m.ispkg and m.name not in NOT_BENCHMARKS
    ]
    return [n for n in FIRST if n in names] + sorted(n for n in names if n not in FIRST)


def load(name: str) -> Callable[[list[str]], None] | None:
    main = getattr(importlib.import_module(f"bench.{name}"), "main", None)
    return main if callable(main) else None


def main(argv: list[str] | None = None) -> None:
    available = benchmarks()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        metavar="benchmark",
        help=f"which to run: {', '.join(available)} (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help=f"short runs of {', '.join(QUICK)}")
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(available)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    failed = []
    for name in args.names or available:
        # One broken benchmark must not cost the others' figures: report it at the end.
        try:
            run = load(name)
        except Exception as exc:
            failed.append(f"bench.{name}: {type(exc).__name__}: {exc}")
            continue
        if run is None:
            continue
        print(f"== bench.{name}", flush=True)
        run(QUICK.get(name, []) if args.quick else [])
    path = chart.render()
    written = sorted(p.name for p in RESULTS.glob("*.md"))
    print(f"results: {', '.join(written)}" + (f"; chart: {path.name}" if path else ""))
    if failed:
        sys.exit("could not load:\n" + "\n".join(failed))


if __name__ == "__main__":
    main()
