"""One PNG of the results in bench/results/*.json: throughput and cold start side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import RESULTS, median

CHART = RESULTS / "benchmarks.png"
_FNKIT = "#2f6db5"
_OTHER = "#9aa5b1"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def render() -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runtime, coldstart = _load("runtime"), _load("coldstart")
    panels = [p for p in (runtime, coldstart) if p]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.6), squeeze=False)
    column = 0
    if runtime:
        ax = axes[0][column]
        column += 1
        entries = runtime["targets"]
        labels = [e["label"] for e in entries.values()]
        rps = [median([s["rps"] for s in e["samples"]]) for e in entries.values()]
        per_cpu = [
            median([s["rps"] / s["server_cpu"] for s in e["samples"] if s["server_cpu"]])
            for e in entries.values()
        ]
        rows = range(len(labels))
        colors = [_FNKIT if k == "fnkit" else _OTHER for k in entries]
        ax.barh(
            [r - 0.2 for r in rows],
            rps,
            height=0.38,
            color=colors,
            alpha=0.55,
            label="req/s (median)",
        )
        bars = ax.barh(
            [r + 0.2 for r in rows], per_cpu, height=0.38, color=colors, label="req per CPU-second"
        )
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in per_cpu], padding=6, fontsize=8)
        ax.set_yticks(list(rows), labels)
        ax.invert_yaxis()
        ax.legend(loc="upper right", fontsize=8)
        ax.set_xlabel("one server core (light: req/s; dark: req per CPU-second)")
        ax.set_title(f"Echo CloudEvent throughput, {runtime['params']['connections']} connections")
        ax.set_xlim(0, max(per_cpu + rps) * 1.25)
    if coldstart:
        ax = axes[0][column]
        entries = coldstart["targets"]
        labels = [e["label"] for e in entries.values()]
        mids = [median(e["ms"]) for e in entries.values()]
        errors = [
            [m - min(e["ms"]) for m, e in zip(mids, entries.values(), strict=True)],
            [max(e["ms"]) - m for m, e in zip(mids, entries.values(), strict=True)],
        ]
        colors = [_FNKIT if k == "fnkit" or e["service"] else _OTHER for k, e in entries.items()]
        bars = ax.barh(labels, mids, xerr=errors, color=colors, capsize=3)
        ax.bar_label(bars, labels=[f"{m:.0f} ms" for m in mids], padding=6, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(
            "ms from spawn to first answer: an event, or a GET where REST only (median, min-max)"
        )
        ax.set_title("Cold start")
        ax.set_xlim(0, max(max(e["ms"]) for e in entries.values()) * 1.3)
    fig.tight_layout()
    fig.savefig(CHART, dpi=110)
    plt.close(fig)
    return CHART


if __name__ == "__main__":
    print(render())
