"""Event runtime: requests/s and p50/p99 latency of an echo CloudEvent function, one core each.

Each target serves one echo CloudEvent function in one process (tree) pinned to one core;
`wrk` (one thread, fixed connections) runs pinned to the other core and POSTs a binary-mode
CloudEvent. Rounds are interleaved (every target once per round, order rotated) so that a
burst of load from elsewhere on the machine hits all targets alike; ratios are the median of
per-round ratios.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from typing import Any

from bench.common import (
    BENCH,
    EVENT_BODY,
    RESULTS,
    Cores,
    Server,
    Target,
    ensure_ff_env,
    event_targets,
    header,
    load_average,
    median,
    pin_self,
    post_event,
    run_wrk,
    running,
    versions,
    write_json,
    wrk_summary,
)

LUA = BENCH / "wrk" / "cloudevent.lua"
BASELINES = ("bare", "ff", "ff-asgi")


@dataclass(frozen=True)
class Params:
    rounds: int = 5
    seconds: int = 10
    warmup: int = 2
    connections: int = 64


@dataclass(frozen=True)
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float
    server_cpu: float  # share of one core the server used
    wrk_cpu: float  # share of one core wrk used: far below 1 means wrk was not the bottleneck
    requests: int  # answers wrk counted
    timeouts: int  # requests without an answer within wrk's 5 s timeout
    log_lines: int  # lines the server wrote meanwhile (with those in flight when wrk stopped)


def _wrk(port: int, cores: Cores, seconds: int, connections: int) -> tuple[dict[str, Any], float]:
    return run_wrk(cores, f"http://127.0.0.1:{port}/", LUA, connections, seconds)


def check_answer(server: Server) -> None:
    """The echo really echoes (fnkit and the floor reply with an event; ff answers 200)."""
    status, headers, body = post_event(server.port)
    if status != 200:
        raise RuntimeError(f"{server.target.label} answered {status}: {body[:200]!r}")
    echoes = server.target.key in ("fnkit", "bare")
    if echoes and (not headers.get("ce-type") or json.loads(body) != json.loads(EVENT_BODY)):
        raise RuntimeError(f"{server.target.label} did not echo: {headers} {body!r}")


def measure(target: Target, cores: Cores, params: Params) -> Sample:
    env = {"LOG_LEVEL": "INFO"}
    with running(target, cores, env) as server:
        check_answer(server)
        _wrk(server.port, cores, params.warmup, params.connections)
        lines_before = server.settled_lines()
        cpu_before = server.cpu_seconds()
        result, wrk_cpu = _wrk(server.port, cores, params.seconds, params.connections)
        cpu_after = server.cpu_seconds()
        lines_after = server.settled_lines()
    seconds = result["duration_us"] / 1e6
    return Sample(
        rps=result["requests"] / seconds,
        p50_ms=result["p50_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        server_cpu=(cpu_after - cpu_before) / seconds,
        wrk_cpu=wrk_cpu / seconds,
        requests=result["requests"],
        timeouts=result["timeouts"],
        log_lines=lines_after - lines_before,
    )


def run(params: Params, only: list[str] | None = None) -> dict[str, Any]:
    cores = Cores.pick()
    pin_self(cores)
    ensure_ff_env()
    targets = [t for t in event_targets() if not only or t.key in only]
    load_before = load_average()
    samples: dict[str, list[Sample]] = {t.key: [] for t in targets}
    for round_no in range(params.rounds):
        shift = round_no % len(targets)
        for target in targets[shift:] + targets[:shift]:
            sample = measure(target, cores, params)
            samples[target.key].append(sample)
            print(
                f"round {round_no + 1}/{params.rounds} {target.label:<30} "
                f"{sample.rps:8.0f} req/s  p50 {sample.p50_ms:6.2f} ms  "
                f"p99 {sample.p99_ms:6.2f} ms  server cpu {sample.server_cpu:4.2f}  "
                f"wrk cpu {sample.wrk_cpu:4.2f}  load {load_average()}",
                flush=True,
            )
    payload = {
        "params": asdict(params),
        "cores": asdict(cores),
        "load_before": load_before,
        "load_after": load_average(),
        "versions": versions(),
        "targets": {
            t.key: {
                "label": t.label,
                "note": t.note,
                "samples": [asdict(s) for s in samples[t.key]],
            }
            for t in targets
        },
    }
    write_json("runtime", payload)
    write_markdown(payload)
    return payload


def _per_cpu(sample: dict[str, Any]) -> float:
    return float(sample["rps"] / sample["server_cpu"]) if sample["server_cpu"] else 0.0


def paired_ratio(
    payload: dict[str, Any], key: str, baseline: str, per_cpu: bool = False
) -> float | None:
    """Median over rounds of key's req/s (or req per CPU-second) over the baseline's."""
    targets = payload["targets"]
    if key not in targets or baseline not in targets:
        return None
    pairs = zip(targets[key]["samples"], targets[baseline]["samples"], strict=True)
    if per_cpu:
        return median([_per_cpu(a) / _per_cpu(b) for a, b in pairs if _per_cpu(b)])
    return median([a["rps"] / b["rps"] for a, b in pairs])


def summary(payload: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {k: wrk_summary(e["samples"], _per_cpu) for k, e in payload["targets"].items()}


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


GOALS = {"bare": 0.7, "ff": 4.0}  # issue 11: fnkit's echo against these baselines


def write_markdown(payload: dict[str, Any]) -> None:
    cores = Cores(**payload["cores"])
    params = Params(**payload["params"])
    stats = summary(payload)
    targets = payload["targets"]
    lines = header(
        "Event runtime: echo CloudEvent function, one core",
        cores,
        payload["load_before"],
        payload["load_after"],
        payload["versions"],
    )
    lines += [
        f"- Parameters: wrk, 1 thread, {params.connections} connections, "
        f"{params.seconds} s per run after a {params.warmup} s warm-up, {params.rounds} "
        "rounds interleaved; each run on a freshly started server; a binary-mode CloudEvent "
        "with time, traceparent and knativearrivaltime and 60 bytes of JSON data "
        "(bench/wrk/cloudevent.lua)",
        "",
        "| target | req/s (median) | min - max | p50 ms | p99 ms | server CPU "
        "| req per CPU-second |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, entry in targets.items():
        s = stats[key]
        lines.append(
            f"| {entry['label']} | {s['rps']:,.0f} | {s['rps_min']:,.0f} - {s['rps_max']:,.0f} "
            f"| {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['server_cpu']:.0%} "
            f"| {s['per_cpu']:,.0f} |"
        )
    if "fnkit" in targets:
        lines += [
            "",
            "| fnkit echo against | by req/s | by req per CPU-second | goal |",
            "|---|---:|---:|---|",
        ]
        for baseline in BASELINES:
            if baseline not in targets:
                continue
            by_rps = paired_ratio(payload, "fnkit", baseline)
            by_cpu = paired_ratio(payload, "fnkit", baseline, per_cpu=True)
            goal = GOALS.get(baseline)
            verdict = ""
            if goal is not None and by_rps is not None and by_cpu is not None:
                verdict = f">= {goal:.2f}x: " + ("met" if min(by_rps, by_cpu) >= goal else "missed")
            lines.append(
                f"| {targets[baseline]['label']} | {_ratio(by_rps)} | {_ratio(by_cpu)} "
                f"| {verdict} |"
            )
    wrk_cpu = max(s["wrk_cpu"] for s in stats.values())
    lines += [
        "",
        "Ratios are medians of per-round ratios (targets measured next to each other in time). "
        f"wrk used at most {wrk_cpu:.0%} of its core, so the servers, not the load generator, "
        "set these figures. Server CPU is the share of its core the server's process tree "
        "used; below 100% the machine's other work took the rest, and req per CPU-second "
        "(req/s divided by that share) is the figure least disturbed by it.",
        "",
        "Targets:",
        "",
    ]
    lines += [f"- **{e['label']}**: {e['note']}" for e in targets.values()]
    late = {e["label"]: sum(x.get("timeouts", 0) for x in e["samples"]) for e in targets.values()}
    if any(late.values()):
        lines += [
            "",
            "Requests without an answer within wrk's 5 s timeout (all runs): "
            + ", ".join(f"{label} {count}" for label, count in late.items())
            + ".",
        ]
    if "fnkit" in targets:
        samples = targets["fnkit"]["samples"]
        written = sum(x["log_lines"] for x in samples)
        answered = sum(x["requests"] for x in samples)
        lines += [
            "",
            f"fnkit wrote {written:,} JSON log lines while wrk counted {answered:,} answers: one "
            "line per invocation, as the contract says (the difference, at most one request per "
            "connection per run, is the requests in flight when wrk stopped counting). Metrics "
            "and traceparent handling stayed on.",
        ]
    (RESULTS / "runtime.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.runtime", description=__doc__)
    parser.add_argument("--rounds", type=int, default=Params.rounds)
    parser.add_argument("--seconds", type=int, default=Params.seconds)
    parser.add_argument("--warmup", type=int, default=Params.warmup)
    parser.add_argument("--connections", type=int, default=Params.connections)
    parser.add_argument("--only", nargs="*", help="target keys: fnkit ff ff-asgi bare")
    args = parser.parse_args(argv)
    run(Params(args.rounds, args.seconds, args.warmup, args.connections), args.only)


if __name__ == "__main__":
    main()
