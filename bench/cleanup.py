"""Cleanup: records per second of `python -m cleanup` over 10,000 expired image records.

Each record has its upload and two renditions in MinIO (30,000 objects), beside 200 records
that have not expired. Two variants run on identical data, restored from one snapshot of the
servers' data directories before every run:

- **cleanup**: the job as it ships: pages of 1,000 records, each upload checked by HEAD, each
  page's objects deleted with S3 batch deletes (DeleteObjects, up to 1,000 keys a request);
- **one at a time** (baseline): the very same job with its batch delete replaced by one
  `remove_object` call per object, one after the other, as most examples delete.

The job runs as Kubernetes runs it, a process of its own (`python -m cleanup`), against the
project's test servers (FerretDB and MinIO, started here on free ports). Records per second is
records deleted over the job's own run time (its summary's duration_seconds, without the
interpreter's start); CPU seconds are the job's and each server's, so that a shared machine's
noise can be told from the work done.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import RESULTS, ROOT, WORK, Cores, header, load_average, median, write_json

VARIANTS = {"batch": "cleanup (batch deletes)", "single": "one remove_object at a time"}
HERE = WORK / "cleanup"


@dataclass(frozen=True)
class Params:
    records: int = 10_000
    live: int = 200
    rounds: int = 1


@dataclass
class Result:
    variant: str
    records_deleted: int
    objects_deleted: int
    job_seconds: float
    wall_seconds: float
    job_cpu_seconds: float
    mongo_cpu_seconds: float
    minio_cpu_seconds: float
    exit_code: int

    @property
    def records_per_second(self) -> float:
        return self.records_deleted / self.job_seconds

    @property
    def records_per_cpu_second(self) -> float:
        """Per CPU-second of the job and both servers: what a busy shared machine disturbs least."""
        cpu = self.job_cpu_seconds + self.mongo_cpu_seconds + self.minio_cpu_seconds
        return self.records_deleted / cpu


def remove_one_at_a_time(minio: Any, bucket: str, keys: Any) -> dict[str, str]:
    """The baseline's delete: what `cleanup.storage.remove` does, one request per object."""
    from cleanup import storage
    from minio.error import S3Error

    failed: dict[str, str] = {}
    for key in keys:
        try:
            minio.remove_object(bucket, key)
        except S3Error as exc:
            if exc.code not in storage.GONE:
                failed[key] = exc.code or "S3Error"
        except Exception as exc:
            raise storage.MinioUnavailable(f"delete {bucket}/{key}: {exc}") from exc
    return failed


def run_single_variant() -> int:
    """`python -m bench.cleanup --job single`: the job with the one-at-a-time delete."""
    from cleanup import cli, storage

    storage.remove = remove_one_at_a_time
    return cli.main([])


def servers(root: Path) -> tuple[Any, Any]:
    from devplane.servers import minio_server, mongo_server

    return mongo_server(root), minio_server(root)


def seed(params: Params, snapshot: Path) -> None:
    """Fill fresh servers the way image-processor would, then keep their data directories."""
    from pymongo import AsyncMongoClient

    from tests.cleanup.helpers import Store, minio_client

    live = snapshot.with_name("seeding")
    shutil.rmtree(live, ignore_errors=True)
    mongo, minio = servers(live)
    mongo.start()
    minio.start()
    try:

        async def fill() -> None:
            client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo.url, tz_aware=True)
            s3 = minio_client(minio)
            s3.make_bucket("uploads")
            s3.make_bucket("processed")
            store = Store(client["playbook"], s3, "uploads", "processed")
            await store.seed(params.records, name="old")
            await store.seed(params.live, expired=False, name="new")
            store.pool.shutdown()
            await client.close()

        started = time.perf_counter()
        asyncio.run(fill())
        print(f"seeded in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    finally:
        mongo.stop()
        minio.stop()
    shutil.rmtree(snapshot, ignore_errors=True)
    live.rename(snapshot)


def cpu_seconds(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def run(variant: str, snapshot: Path) -> Result:
    root = HERE / "run"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(snapshot, root, symlinks=True)
    mongo, minio = servers(root)
    mongo.start()
    minio.start()
    try:
        env = {
            **os.environ,
            "ENVIRONMENT": "dev",
            "MONGO_URL": mongo.url,
            "MONGO_DB": "playbook",
            "MINIO_ENDPOINT": minio.endpoint,
            "MINIO_ACCESS_KEY": minio.access_key,
            "MINIO_SECRET_KEY": minio.secret_key,
            "SWEEP_ORPHANS": "false",
        }
        command = [sys.executable, "-m", "cleanup"]
        if variant == "single":
            command = [sys.executable, "-m", "bench.cleanup", "--job", "single"]
        servers_before = cpu_seconds(mongo.process.pid), cpu_seconds(minio.process.pid)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        mongo_cpu = cpu_seconds(mongo.process.pid) - servers_before[0]
        minio_cpu = cpu_seconds(minio.process.pid) - servers_before[1]
    finally:
        mongo.stop()
        minio.stop()
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    summary = next((line for line in lines if line.get("msg") == "cleanup finished"), None)
    if summary is None or done.returncode != 0:
        raise SystemExit(f"{variant}: exit {done.returncode}\n{done.stdout[-2000:]}{done.stderr}")
    return Result(
        variant,
        summary["records_deleted"],
        summary["objects_deleted"],
        summary["duration_seconds"],
        wall,
        (after.ru_utime + after.ru_stime) - (usage.ru_utime + usage.ru_stime),
        mongo_cpu,
        minio_cpu,
        done.returncode,
    )


def report(params: Params, results: list[Result], load_before: str, load_after: str) -> str:
    from importlib import metadata

    found = {
        "python": sys.version.split()[0],
        "minio (client)": metadata.version("minio"),
        "pymongo": metadata.version("pymongo"),
    }
    by_variant = {v: [r for r in results if r.variant == v] for v in VARIANTS}
    base = median([r.records_per_second for r in by_variant["single"]])
    base_cpu = median([r.records_per_cpu_second for r in by_variant["single"]])
    objects = by_variant["batch"][0].objects_deleted
    preamble = header(
        "Cleanup: expired records per second", Cores(None, None), load_before, load_after, found
    )
    pinning = next(i for i, line in enumerate(preamble) if line.startswith("- Pinning"))
    preamble[pinning] = "- Pinning: none (the job and both servers share the machine's cores)"
    lines = [
        *preamble,
        f"- Data: {params.records:,} expired image records, each with its upload and 2 "
        f"renditions in MinIO ({objects:,} objects), and {params.live} records not expired; "
        f"restored from one snapshot before every run; {params.rounds} round(s), variants "
        "interleaved, medians.",
        "- Servers: the project's test servers, FerretDB v1 (SQLite) and MinIO, on this machine.",
        "",
        "| variant | records/s | vs one at a time | records per CPU-s | vs one at a time "
        "| objects/s | job s | wall s | job CPU s | FerretDB CPU s | MinIO CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for variant, label in VARIANTS.items():
        runs = by_variant[variant]
        rate = median([r.records_per_second for r in runs])
        job = median([r.job_seconds for r in runs])
        per_cpu = median([r.records_per_cpu_second for r in runs])
        lines.append(
            f"| {label} | {rate:.1f} | {rate / base:.2f}x "
            f"| {per_cpu:.1f} | {per_cpu / base_cpu:.2f}x "
            f"| {median([r.objects_deleted / r.job_seconds for r in runs]):.0f} | {job:.1f} "
            f"| {median([r.wall_seconds for r in runs]):.1f} "
            f"| {median([r.job_cpu_seconds for r in runs]):.1f} "
            f"| {median([r.mongo_cpu_seconds for r in runs]):.1f} "
            f"| {median([r.minio_cpu_seconds for r in runs]):.1f} |"
        )
    lines += [
        "",
        "Reproduce: `uv run python -m bench.cleanup` (`--records N`, `--rounds N`).",
        "",
        "Records per CPU-s divides by the CPU time of the job and both servers together: on "
        "a shared machine wall time also measures the neighbours.",
        "",
        "Reading it: FerretDB v1 pushes no filter but `_id` equality down to SQLite, so each of "
        "the job's three queries per page (the page itself, the renditions other records "
        "list, the guarded delete) decodes the whole collection; the FerretDB CPU column is "
        "that cost, and it shrinks as the collection does. On MongoDB these are index "
        "lookups (`_id`, `renditions.key`). The object side is what the variants differ in: "
        "one DeleteObjects request per 1,000 keys instead of one DELETE per object.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cleanup", description=__doc__)
    parser.add_argument("--records", type=int, default=Params.records)
    parser.add_argument("--rounds", type=int, default=Params.rounds)
    parser.add_argument("--job", choices=["single"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.job:
        sys.exit(run_single_variant())
    params = Params(records=args.records, rounds=args.rounds)
    load_before = load_average()
    snapshot = HERE / "snapshot"
    seed(params, snapshot)
    results = []
    for _ in range(params.rounds):
        for variant in VARIANTS:
            result = run(variant, snapshot)
            print(
                f"{variant}: {result.records_per_second:.1f} records/s ({result.job_seconds:.1f}s)",
                file=sys.stderr,
            )
            results.append(result)
    text = report(params, results, load_before, load_average())
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cleanup.md").write_text(text)
    write_json(
        "cleanup",
        {"params": asdict(params), "results": [asdict(r) for r in results]},
    )
    print(text)


if __name__ == "__main__":
    main()
