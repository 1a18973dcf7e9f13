"""Fan-out/fan-in: items per second end to end, and the aggregator's result-recording rate.

`python -m bench.fanout [--items 10000] [--rounds 3] [--big 100000] [--quick]`

Everything runs as it does under `make dev`, as processes on this machine: the MongoDB-protocol
server (mongod if installed, else FerretDB) and MinIO, devplane as the broker, and bulk-jobs,
item-processor, job-aggregator and dead-letter as `fnkit-serve` processes. Nothing is pinned:
seven processes share the machine's cores, as they would on a one-node cluster.

- **End to end**: a JSON Lines object of `--items` product records (5% invalid) is uploaded
  to MinIO and submitted to `POST /jobs`; the rate is items over the time from the job's
  `created_at` to its `completed_at` (both stamped by the services), so it covers the
  streaming read, the fan-out through devplane, every item's validation and upsert, every
  result's recording, and the completion. Baselines, in the same run against the same server:
  the same storage work without any event plane, (a) one write per item, as a function that
  writes once per event would (validate, `insert_one` the product, `insert_one` the result;
  64 at a time), and (b) the floor: everything with `insert_many` in batches of 500.
- **Aggregator alone**: `item.processed` events for a job posted straight to job-aggregator
  (64 at a time, fnkit's HTTP client); the rate is results over the time until every event
  was answered (a 2xx means stored and counted). Baselines: a bare loop inserting the same
  result documents with PyMongo, `insert_one` 64 at a time, and `insert_many` in batches of 500.

CPU seconds per process during the end-to-end job say what the time is made of.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
from bulk_jobs.store import COMPLETIONS, ItemResult, JobStore, result_document
from devplane.servers import (
    FunctionProcess,
    MinioServer,
    MongoServer,
    free_port,
    minio_server,
    mongo_server,
)
from fnkit import CloudEvent, new_event
from fnkit.httpclient import HttpClient, header_lines
from fnkit.mongo import now
from fnkit.outbox import OutboxRelay
from item_processor.products import product_document, product_id
from item_processor.records import InvalidRecord, to_product
from minio import Minio
from pymongo import AsyncMongoClient

from bench.common import RESULTS, Cores, header, load_average, median, write_json

BUCKET = "bench-imports"
DB = "bench_fanout"
PROCESSED = "io.knative-playbook.item.processed.v1"
SERVER = "MongoDB server"
FUNCTIONS = {
    "dead-letter": "dead_letter.main:app",
    "bulk-jobs": "bulk_jobs.main:app",
    "item-processor": "item_processor.main:app",
    "job-aggregator": "job_aggregator.main:app",
}


@dataclass
class Params:
    items: int = 10_000
    rounds: int = 3
    baseline_items: int = 2_000  # the per-item baselines are slow: a smaller job, same rate
    concurrency: int = 64
    devplane_workers: int = 32
    big: int = 0


def products(prefix: str, count: int) -> list[dict[str, Any]]:
    """Product records, every 20th with a price finer than cents (invalid)."""
    return [
        {
            "sku": f"{prefix}-{n:07d}",
            "name": f"Imported product {n}",
            "price": "1.234" if n % 20 == 3 else f"{n % 500}.99",
            "currency": "EUR",
            "stock": n % 17,
            "tags": ["import"],
        }
        for n in range(count)
    ]


class Stack:
    """The servers, devplane and the functions of pattern 5, as processes."""

    def __init__(self, root: Path, params: Params) -> None:
        self.root = root
        self.params = params
        self.mongo: MongoServer = mongo_server(root)
        self.minio: MinioServer = minio_server(root)
        self.devplane_port = free_port()
        self.devplane_url = f"http://127.0.0.1:{self.devplane_port}"
        self.functions: dict[str, FunctionProcess] = {}
        self.devplane: FunctionProcess | None = None

    def env(self) -> dict[str, str]:
        return {
            "ENVIRONMENT": "dev",
            "LOG_LEVEL": "WARNING",
            "MONGO_URL": self.mongo.url,
            "MONGO_DB": DB,
            "MONGO_TIMEOUT_SECONDS": "10",
            "MINIO_ENDPOINT": self.minio.endpoint,
            "MINIO_ACCESS_KEY": self.minio.access_key,
            "MINIO_SECRET_KEY": self.minio.secret_key,
            "K_SINK": self.devplane_url,
        }

    def start(self) -> None:
        self.mongo.start()
        self.minio.start()
        for name, module in FUNCTIONS.items():
            self.functions[name] = FunctionProcess(
                name,
                free_port(),
                self.root / "fn",
                module=module,
                env=self.env(),
                log_path=self.root / f"{name}.log",
            )
        values = self.root / "bench-values.yaml"
        values.write_text(
            json.dumps(
                {
                    "functions": {n: {"url": p.url} for n, p in self.functions.items()},
                    "eventing": {"delivery": {"retry": 3, "backoffDelay": "PT0.2S"}},
                }
            )
        )
        self.devplane = FunctionProcess(
            "devplane",
            self.devplane_port,
            self.root / "fn",
            module="devplane.main:app",
            env={
                **self.env(),
                "DEVPLANE_EXTRA_VALUES": str(values),
                "DEVPLANE_URL": self.devplane_url,
                "DEVPLANE_CRON": "false",
                "DEVPLANE_WORKERS": str(self.params.devplane_workers),
                "DEVPLANE_QUEUE_CAPACITY": "20000",
            },
            log_path=self.root / "devplane.log",
        )
        processes = [self.devplane, *self.functions.values()]
        for process in processes:
            process.start()
        for process in processes:
            process.wait_ready(120)
        client = self.minio_client()
        if not client.bucket_exists(BUCKET):
            client.make_bucket(BUCKET)

    def stop(self) -> None:
        for process in [*self.functions.values(), self.devplane]:
            if process is not None:
                process.stop()
        self.minio.stop()
        self.mongo.stop()

    def minio_client(self) -> Minio:
        return Minio(
            self.minio.endpoint,
            access_key=self.minio.access_key,
            secret_key=self.minio.secret_key,
            secure=False,
        )

    def pids(self) -> dict[str, int]:
        found = {
            SERVER: self.mongo.process.pid if self.mongo.process else 0,
            "MinIO": self.minio.process.pid if self.minio.process else 0,
        }
        if self.devplane is not None and self.devplane.process is not None:
            found["devplane"] = self.devplane.process.pid
        for name, process in self.functions.items():
            if process.process is not None:
                found[name] = process.process.pid
        return found

    def cpu(self) -> dict[str, float]:
        """User + system CPU seconds of each process so far."""
        used = {}
        for name, pid in self.pids().items():
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(pid).cpu_times()
                used[name] = times.user + times.system
        return used

    def peak_rss(self, name: str) -> int:
        process = self.functions[name].process
        assert process is not None
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def upload(self, records: list[dict[str, Any]]) -> dict[str, str]:
        data = b"".join(orjson.dumps(r) + b"\n" for r in records)
        key = f"imports/{uuid.uuid4().hex}.jsonl"
        self.minio_client().put_object(BUCKET, key, io.BytesIO(data), len(data))
        return {"bucket": BUCKET, "key": key}


@contextlib.contextmanager
def stack(params: Params) -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as root:
        running = Stack(Path(root), params)
        try:
            running.start()
            yield running
        finally:
            running.stop()


# -- end to end ---------------------------------------------------------------------------


async def end_to_end(running: Stack, items: int) -> dict[str, Any]:
    records = products(f"E{uuid.uuid4().hex[:8]}", items)
    source = running.upload(records)
    jobs = running.functions["bulk-jobs"].url
    cpu_before = running.cpu()
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"{jobs}/jobs", json={"source": source})
        response.raise_for_status()
        job_id = response.json()["id"]
        while True:
            job = (await client.get(f"{jobs}/jobs/{job_id}")).json()
            if job["status"] != "RUNNING":
                break
            await asyncio.sleep(0.5)  # the rate is from the job's own timestamps
    wall = time.perf_counter() - started
    cpu_after = running.cpu()
    invalid = sum(1 for n in range(items) if n % 20 == 3)
    if (job["status"], job["succeeded"], job["failed"]) != ("COMPLETED", items - invalid, invalid):
        raise RuntimeError(f"wrong outcome: {job}")
    seconds = (
        datetime.fromisoformat(job["completed_at"]) - datetime.fromisoformat(job["created_at"])
    ).total_seconds()
    return {
        "items": items,
        "job_s": seconds,
        "wall_s": wall,
        "cpu_s": {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after},
    }


async def per_item_writes(db: Any, items: int, concurrency: int) -> dict[str, Any]:
    """Validate, insert the product, insert the result: one write each, `concurrency` at once."""
    job_id = uuid.uuid4().hex
    records = products(f"N{uuid.uuid4().hex[:8]}", items)
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int, record: dict[str, Any]) -> None:
        async with gate:
            try:
                product = to_product(record)
            except InvalidRecord as bad:
                result = ItemResult(job_id, index, False, bad.reason)
            else:
                doc = product_document(product, product_id(product.sku), now())
                await db["products"].insert_one(doc)
                result = ItemResult(job_id, index, True, detail={"sku": product.sku})
            await db["bulk_job_results"].insert_one(result_document(result, "x", now()))

    started = time.perf_counter()
    await asyncio.gather(*(one(i, r) for i, r in enumerate(records)))
    return {"items": items, "job_s": time.perf_counter() - started}


async def batched_writes(db: Any, items: int, batch: int = 500) -> dict[str, Any]:
    """The same documents, `insert_many` in batches: the storage floor of any design."""
    job_id = uuid.uuid4().hex
    records = products(f"B{uuid.uuid4().hex[:8]}", items)
    started = time.perf_counter()
    for start in range(0, items, batch):
        at = now()
        docs, results = [], []
        for index, record in enumerate(records[start : start + batch], start):
            try:
                product = to_product(record)
            except InvalidRecord as bad:
                results.append(
                    result_document(ItemResult(job_id, index, False, bad.reason), "x", at)
                )
                continue
            docs.append(product_document(product, product_id(product.sku), at))
            results.append(
                result_document(
                    ItemResult(job_id, index, True, detail={"sku": product.sku}), "x", at
                )
            )
        await db["products"].insert_many(docs, ordered=False)
        await db["bulk_job_results"].insert_many(results, ordered=False)
    return {"items": items, "job_s": time.perf_counter() - started}


# -- the aggregator alone -----------------------------------------------------------------


async def _job(db: Any, total: int) -> str:
    async def no_emit(event: CloudEvent) -> None:
        return None

    store = JobStore(
        db,
        lambda type, data=None, **kw: new_event(type, "/bench", data, **kw),
        OutboxRelay(db[COMPLETIONS], no_emit, grace_seconds=3600, interval_seconds=3600),
    )
    job_id = uuid.uuid4().hex
    await store.create(job_id, {"kind": "inline"}, total=total, items=b"[]")
    await store.checkpoint(job_id, total, total, done=True)  # nothing for bulk-jobs to emit
    return job_id


async def aggregator_alone(running: Stack, db: Any, items: int, concurrency: int) -> dict[str, Any]:
    job_id = await _job(db, items)
    url = running.functions["job-aggregator"].url + "/"
    client = HttpClient()
    pending = iter(range(items))

    async def sender() -> None:
        for index in pending:
            head = header_lines(
                [
                    (b"ce-specversion", b"1.0"),
                    (b"ce-id", f"{job_id}:{index}:result".encode()),
                    (b"ce-type", PROCESSED.encode()),
                    (b"ce-source", b"/knative-playbook/item-processor"),
                    (b"content-type", b"application/json"),
                ]
            )
            body = orjson.dumps(
                {"job_id": job_id, "index": index, "sku": f"S{index}", "change": "created"}
            )
            response = await client.post(url, head, body)
            if response.status >= 300:
                raise RuntimeError(f"job-aggregator answered {response.status}: {response.body!r}")

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    await client.aclose()
    return {"items": items, "job_s": seconds}


async def results_insert_one(db: Any, items: int, concurrency: int) -> dict[str, Any]:
    job_id = uuid.uuid4().hex
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> None:
        async with gate:
            result = ItemResult(job_id, index, True, detail={"sku": f"S{index}"})
            await db["bulk_job_results"].insert_one(result_document(result, "x", now()))

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(items)))
    return {"items": items, "job_s": time.perf_counter() - started}


async def results_insert_many(db: Any, items: int, batch: int = 500) -> dict[str, Any]:
    job_id = uuid.uuid4().hex
    started = time.perf_counter()
    for start in range(0, items, batch):
        at = now()
        await db["bulk_job_results"].insert_many(
            [
                result_document(ItemResult(job_id, i, True, detail={"sku": f"S{i}"}), "x", at)
                for i in range(start, min(start + batch, items))
            ],
            ordered=False,
        )
    return {"items": items, "job_s": time.perf_counter() - started}


# -- the run ------------------------------------------------------------------------------

E2E = {
    "pipeline": "bulk-jobs -> devplane -> item-processor -> devplane -> job-aggregator",
    "per-item": "storage only, one write per item (insert_one x2, 64 at a time)",
    "batched": "storage only, insert_many in batches of 500 (the floor)",
}
AGGREGATOR = {
    "aggregator": "job-aggregator over HTTP (group commit: results + tallies)",
    "insert_one": "bare PyMongo loop, insert_one per result, 64 at a time",
    "insert_many": "bare PyMongo loop, insert_many in batches of 500",
}


async def measure(params: Params) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in [*E2E, *AGGREGATOR]}
    with stack(params) as running:
        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(running.mongo.url, tz_aware=True)
        db = mongo[DB]
        try:
            # A warm-up job: first imports, connection pools, FerretDB's tables.
            await end_to_end(running, min(500, params.items))
            for round_number in range(params.rounds):
                steps = [
                    ("pipeline", lambda: end_to_end(running, params.items)),
                    (
                        "per-item",
                        lambda: per_item_writes(db, params.baseline_items, params.concurrency),
                    ),
                    ("batched", lambda: batched_writes(db, params.items)),
                    (
                        "aggregator",
                        lambda: aggregator_alone(running, db, params.items, params.concurrency),
                    ),
                    (
                        "insert_one",
                        lambda: results_insert_one(db, params.baseline_items, params.concurrency),
                    ),
                    ("insert_many", lambda: results_insert_many(db, params.items)),
                ]
                for name, step in steps:
                    server_before = running.cpu().get(SERVER, 0.0)
                    result = await step()
                    result["server_cpu_s"] = running.cpu().get(SERVER, 0.0) - server_before
                    runs[name].append(result)
                    print(
                        f"round {round_number + 1}/{params.rounds} {name:12s} "
                        f"{result['items'] / result['job_s']:8.0f} items/s "
                        f"({result['items']} in {result['job_s']:.1f} s)",
                        flush=True,
                    )
            big: dict[str, Any] | None = None
            if params.big:
                big = await end_to_end(running, params.big)
                big["peak_rss"] = running.peak_rss("bulk-jobs")
                print(f"big job: {params.big / big['job_s']:.0f} items/s", flush=True)
            peak = running.peak_rss("bulk-jobs")
            flavour = running.mongo.binary.resolve().name
        finally:
            await mongo.close()
    return {"runs": runs, "big": big, "bulk_jobs_peak_rss": peak, "mongo": flavour}


def rate(result: dict[str, Any]) -> float:
    return float(result["items"] / result["job_s"])


def summarise(results: list[dict[str, Any]]) -> dict[str, float]:
    rates = [rate(r) for r in results]
    server_ms = [1000 * r["server_cpu_s"] / r["items"] for r in results]
    return {
        "rate": median(rates),
        "min": min(rates),
        "max": max(rates),
        "server_ms": median(server_ms),
    }


def table(
    labels: dict[str, str], summary: dict[str, dict[str, float]], base: str, floor: str
) -> list[str]:
    lines = [
        f"| run | items/s | min - max | vs {base} | vs {floor} | server CPU ms/item |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, label in labels.items():
        s = summary[key]
        versus_base = s["rate"] / summary[base]["rate"]
        versus_floor = s["rate"] / summary[floor]["rate"]
        lines.append(
            f"| **{key}**: {label} | {s['rate']:.0f} | {s['min']:.0f} - {s['max']:.0f} "
            f"| {versus_base:.2f}x | {versus_floor:.2f}x | {s['server_ms']:.2f} |"
        )
    return lines


def report(params: Params, measured: dict[str, Any], load_before: str, load_after: str) -> Path:
    runs = measured["runs"]
    summary = {key: summarise(results) for key, results in runs.items()}
    write_json("fanout", {"params": asdict(params), "summary": summary, **measured})
    cpu: dict[str, list[float]] = {}
    for result in runs["pipeline"]:
        for name, seconds in result["cpu_s"].items():
            cpu.setdefault(name, []).append(seconds * 1000 / result["items"])
    cpu_median = {name: median(values) for name, values in cpu.items()}
    total_cpu = sum(cpu_median.values())
    pipeline = summary["pipeline"]["rate"]
    lines = header(
        "Fan-out/fan-in: items per second",
        Cores(None, None),
        load_before,
        load_after,
        {
            "python": platform.python_version(),
            "MongoDB-protocol server": measured["mongo"],
            **{name: metadata.version(name) for name in ("pymongo", "uvicorn", "pydantic")},
        },
    )
    lines = [
        "- Pinning: none; seven processes share the machine's cores"
        if line.startswith("- Pinning")
        else line
        for line in lines
    ]
    lines += [
        f"- Parameters: {params.items:,} items per job (5% invalid), {params.rounds} rounds after "
        f"a warm-up job, interleaved with the baselines; per-item baselines with "
        f"{params.baseline_items:,} items (their rate does not depend on the size); server CPU "
        "is the MongoDB-protocol server's CPU time per item during the run; devplane "
        f"with {params.devplane_workers} delivery workers per subscriber; every process "
        "logging at WARNING; nothing pinned. Medians.",
        "",
        "### End to end",
        "",
        *table(E2E, summary, "per-item", "batched"),
        "",
        f"Goal: >= 1,000 items/s end to end: **{pipeline:.0f}** "
        f"({'met' if pipeline >= 1000 else 'missed'}).",
        "",
        "CPU seconds per 1,000 items in the end-to-end runs, by process (medians):",
        "",
        "| process | CPU s / 1,000 items | share |",
        "|---|---:|---:|",
        *(
            f"| {name} | {seconds:.2f} | {seconds / total_cpu:.0%} |"
            for name, seconds in sorted(cpu_median.items(), key=lambda kv: -kv[1])
        ),
        f"| all | {total_cpu:.2f} | 100% |",
        "",
        f"At {total_cpu:.2f} CPU-seconds per 1,000 items, the {os.cpu_count()} cores of this "
        f"machine, were they the pipeline's alone, would carry at most "
        f"**{1000 * (os.cpu_count() or 1) / total_cpu:.0f} items/s**; the rate above is what "
        "the pipeline got of them while other work shared the machine (see the load average).",
        "",
        "### The aggregator's result-recording rate alone",
        "",
        *table(AGGREGATOR, summary, "insert_one", "insert_many"),
        "",
        f"bulk-jobs peak RSS over the whole run: {measured['bulk_jobs_peak_rss'] / 2**20:.0f} MiB.",
    ]
    big = measured.get("big")
    if big:
        lines += [
            "",
            f"A {params.big:,}-line JSON Lines job end to end: "
            f"{params.big / big['job_s']:.0f} items/s; bulk-jobs peak RSS "
            f"{big['peak_rss'] / 2**20:.0f} MiB.",
        ]
    lines += [
        "",
        "Reproduce: `uv sync --all-packages --group bench && uv run python -m bench.fanout` "
        "(`--items`, `--rounds`, `--big 100000` for the JSON Lines job with bounded memory, "
        "`--quick` for a smoke run).",
        "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "fanout.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fanout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--items", type=int, default=Params.items)
    parser.add_argument("--rounds", type=int, default=Params.rounds)
    parser.add_argument("--baseline-items", type=int, default=Params.baseline_items)
    parser.add_argument("--devplane-workers", type=int, default=Params.devplane_workers)
    parser.add_argument(
        "--big", type=int, default=0, help="also a JSON Lines job of this many items"
    )
    parser.add_argument("--quick", action="store_true", help="1,000 items, one round")
    args = parser.parse_args(argv)
    params = Params(
        items=args.items,
        rounds=args.rounds,
        baseline_items=args.baseline_items,
        devplane_workers=args.devplane_workers,
        big=args.big,
    )
    if args.quick:
        params = Params(items=1000, rounds=1, baseline_items=500, big=0)
    load_before = load_average()
    measured = asyncio.run(measure(params))
    path = report(params, measured, load_before, load_average())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
