"""The fan-out end to end: devplane and every function of pattern 5 as real processes.

bulk-jobs, item-processor, job-aggregator and dead-letter run as `fnkit-serve` processes on
free ports, with devplane as their broker, all on the real MongoDB-protocol and MinIO
servers, sharing one database as they do on a cluster. The routing is the chart's values plus
an extra values file, as a user adds subscribers: it points each function at its process,
shortens the retry policy, and adds `completions`, a recording subscriber of
`job.completed` (tests/devplane/subscriber.py).

Job size: FANOUT_ITEMS, 2,000 by default so that CI finishes in minutes on FerretDB; the
issue's 10,000 with FANOUT_ITEMS=10000. (The 100,000-line job with bounded memory is
tests/bulk_jobs/test_memory.py; bench/fanout.py measures the throughput.)
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from devplane.servers import FunctionProcess, MinioServer, MongoServer, free_port
from minio import Minio
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient

from tests.support.processes import ProcessGroup

ITEMS = int(os.environ.get("FANOUT_ITEMS", "2000"))
JOB_COMPLETED = "io.knative-playbook.job.completed.v1"
BUCKET = "fanout-imports"
DOOMED = "DOOMED"  # item-processor always answers 503 for skus starting with it


def extra_values(urls: dict[str, str]) -> dict[str, Any]:
    return {
        "eventing": {
            "delivery": {
                "retry": 3,
                "backoffPolicy": "exponential",
                "backoffDelay": "PT0.1S",
                "timeout": "PT30S",
                "deadLetterSink": "dead-letter",
            }
        },
        "functions": {
            **{name: {"url": url} for name, url in urls.items() if name != "completions"},
            "completions": {
                "url": urls["completions"],
                "triggers": [
                    {"name": "job-completed", "filter": {"attributes": {"type": JOB_COMPLETED}}}
                ],
            },
        },
    }


MODULES = {
    "dead-letter": "dead_letter.main:app",
    "bulk-jobs": "bulk_jobs.main:app",
    "item-processor": "item_processor.main:app",
    "job-aggregator": "job_aggregator.main:app",
    "completions": "tests.devplane.subscriber:app",
}


@dataclass
class Plane:
    devplane: FunctionProcess
    functions: dict[str, FunctionProcess]
    client: httpx.AsyncClient
    db: Any
    minio: Minio

    @property
    def jobs_url(self) -> str:
        return self.functions["bulk-jobs"].url

    def upload(self, records: list[Any]) -> dict[str, str]:
        """A JSON Lines object of `records`; returns the job source naming it."""
        data = b"".join(orjson.dumps(record) + b"\n" for record in records)
        key = f"imports/{uuid.uuid4().hex}.jsonl"
        self.minio.put_object(BUCKET, key, io.BytesIO(data), len(data))
        return {"bucket": BUCKET, "key": key}

    async def submit(self, records: list[Any]) -> str:
        response = await self.client.post(
            f"{self.jobs_url}/jobs", json={"source": self.upload(records)}
        )
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    async def job(self, job_id: str) -> dict[str, Any]:
        response = await self.client.get(f"{self.jobs_url}/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def completed(self, job_id: str, within: float) -> dict[str, Any]:
        """The job once COMPLETED; fails with its progress if it does not get there in time."""
        deadline = time.monotonic() + within
        while True:
            job = await self.job(job_id)
            if job["status"] != "RUNNING":
                return job
            if time.monotonic() > deadline:
                pytest.fail(f"job not completed within {within:g}s: {job}")
            await asyncio.sleep(0.5)

    async def results(self, job_id: str, outcome: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        params: dict[str, Any] = {"outcome": outcome, "limit": 500}
        while True:
            page = (
                await self.client.get(f"{self.jobs_url}/jobs/{job_id}/results", params=params)
            ).json()
            found += page["items"]
            if page["next_after"] is None:
                return found
            params["after"] = page["next_after"]

    async def completions(self, job_id: str, within: float = 30) -> list[dict[str, Any]]:
        """Every delivery of job.completed for the job that reached the subscriber.

        Waits until the broker has finished delivering it: a job reads COMPLETED just before
        its completion event is sent, and a duplicate the broker injects follows the original.
        """
        await self.emissions(f"{job_id}:completed", within)
        query = {"subscriber": "completions", "attributes.subject": job_id}
        found: list[dict[str, Any]] = await self.db["attempts"].find(query).to_list()
        return found

    async def emissions(self, event_id: str, within: float) -> list[dict[str, Any]]:
        """The broker's records of each time `event_id` was sent to it, once every delivery of
        them (duplicates included) has finished."""
        deadline = time.monotonic() + within
        while True:
            response = await self.client.get(f"{self.devplane.url}/events", params={"id": event_id})
            events: list[dict[str, Any]] = response.json()["events"]
            deliveries = [d for event in events for d in event["deliveries"]]
            if events and all(d["outcome"] not in ("pending", "retrying") for d in deliveries):
                return events
            if time.monotonic() > deadline:
                pytest.fail(f"{event_id} not delivered within {within:g}s: {events}")
            await asyncio.sleep(0.2)

    async def metrics(self) -> dict[tuple[str, str, str], float]:
        """devplane's per-subscriber counts: (metric, subscriber, result or outcome) -> value."""
        text = (await self.client.get(f"{self.devplane.url}/metrics")).text
        counts: dict[tuple[str, str, str], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                subscriber = sample.labels.get("subscriber")
                detail = sample.labels.get("result") or sample.labels.get("outcome")
                if subscriber and detail:
                    counts[(sample.name, subscriber, detail)] = sample.value
        return counts

    async def knobs(self, **knobs: Any) -> None:
        response = await self.client.post(f"{self.devplane.url}/knobs", json=knobs)
        assert response.status_code == 200, response.text

    def restart(self, name: str, **env: str) -> None:
        """Restart one function with changed environment variables (its port stays)."""
        process = self.functions[name]
        process.stop()
        process.env = {**process.env, **env}
        process.start()
        process.wait_ready()


def products(prefix: str, count: int, *, invalid_every: int = 0) -> list[dict[str, Any]]:
    """`count` product records; every `invalid_every`-th has a price finer than cents."""
    return [
        {
            "sku": f"{prefix}-{n:07d}",
            "name": f"Imported product {n}",
            "price": "1.234" if invalid_every and n % invalid_every == 3 else f"{n % 500}.99",
            "currency": "EUR",
            "stock": n % 17,
            "tags": ["import"],
        }
        for n in range(count)
    ]


@pytest.fixture(scope="module")
def plane_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fanout")


@pytest.fixture(scope="module")
def plane_processes(
    plane_dir: Path, mongo_server: MongoServer, minio_server: MinioServer
) -> Iterator[tuple[FunctionProcess, dict[str, FunctionProcess], str]]:
    db_name = f"t_fanout_{uuid.uuid4().hex[:8]}"
    devplane_port = free_port()
    devplane_url = f"http://127.0.0.1:{devplane_port}"
    base_env = {
        "ENVIRONMENT": "dev",
        "LOG_LEVEL": os.environ.get("FANOUT_LOG_LEVEL", "WARNING"),
        "MONGO_URL": mongo_server.url,
        "MONGO_DB": db_name,
        "MONGO_TIMEOUT_SECONDS": "5",
        "MINIO_ENDPOINT": minio_server.endpoint,
        "MINIO_ACCESS_KEY": minio_server.access_key,
        "MINIO_SECRET_KEY": minio_server.secret_key,
        "K_SINK": devplane_url,
    }
    extra_env = {
        "item-processor": {"FAULT_FAIL_SKU_PATTERN": f"{DOOMED}-.*"},
        "completions": {"SUBSCRIBER_NAME": "completions", "FOLLOW_SCRIPT": "false"},
        "dead-letter": {"SWEEP_INTERVAL_SECONDS": "1", "FANIN_RETRY_SECONDS": "0.5"},
        "job-aggregator": {"SWEEP_INTERVAL_SECONDS": "2"},
    }
    ports = {name: free_port() for name in MODULES}
    values = plane_dir / "fanout-values.yaml"
    values.write_text(
        json.dumps(extra_values({n: f"http://127.0.0.1:{port}" for n, port in ports.items()}))
    )
    with ProcessGroup(plane_dir) as group:
        devplane = group.start_devplane(
            devplane_port,
            base_env,
            values,
            DEVPLANE_WORKERS=os.environ.get("FANOUT_DEVPLANE_WORKERS", "32"),
            DEVPLANE_QUEUE_CAPACITY="20000",
        )
        functions = {
            name: group.start(name, module, ports[name], {**base_env, **extra_env.get(name, {})})
            for name, module in MODULES.items()
        }
        group.wait_ready(60)
        yield devplane, functions, db_name


@pytest.fixture(scope="module")
async def plane(
    plane_processes: tuple[FunctionProcess, dict[str, FunctionProcess], str],
    mongo_server: MongoServer,
    minio_server: MinioServer,
) -> AsyncIterator[Plane]:
    devplane, functions, db_name = plane_processes
    minio = Minio(
        minio_server.endpoint,
        access_key=minio_server.access_key,
        secret_key=minio_server.secret_key,
        secure=False,
    )
    if not minio.bucket_exists(BUCKET):
        minio.make_bucket(BUCKET)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_server.url, tz_aware=True)
    async with httpx.AsyncClient(timeout=30) as client:
        yield Plane(devplane, functions, client, mongo[db_name], minio)
    await mongo.close()
