"""devplane runs the cleanup CronJob from the chart's values, and its event reaches a Trigger."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from devplane.servers import FunctionProcess, free_port

from tests.cleanup.helpers import Store, owned

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLEANUP_COMPLETED = "io.knative-playbook.cleanup.completed.v1"


async def finished_run(client: httpx.AsyncClient, url: str, within: float = 120.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        runs = (await client.get(url)).json()["runs"]
        if runs and runs[0]["state"] != "running":
            return runs[0]
        await asyncio.sleep(0.2)
    pytest.fail(f"no finished run at {url} within {within}s")


async def test_devplane_runs_cleanup_by_hand_and_the_event_reaches_its_subscriber(
    store: Store,
    service_env: dict[str, str],
    function_process: Any,
    mongo_db: Any,
    tmp_path: Path,
) -> None:
    expired = await store.seed(30)
    live = await store.seed(2, expired=False)
    recorder: FunctionProcess = function_process(
        "tests.cleanup.recorder:app", env={**service_env, "PYTHONPATH": str(ROOT)}
    )
    values = tmp_path / "values.yaml"  # JSON is YAML
    values.write_text(
        json.dumps(
            {
                "minio": {"buckets": {"uploads": store.uploads, "processed": store.processed}},
                "cronJobs": {"cleanup": {"env": {"BATCH_SIZE": "10"}}},
                "functions": {
                    "recorder": {
                        "url": recorder.url,
                        "triggers": [
                            {
                                "name": "cleanups",
                                "filter": {"attributes": {"type": CLEANUP_COMPLETED}},
                            }
                        ],
                    }
                },
            }
        )
    )
    port = free_port()
    devplane: FunctionProcess = function_process(
        "devplane.main:app",
        env={
            **service_env,
            "DEVPLANE_EXTRA_VALUES": str(values),
            "DEVPLANE_URL": f"http://127.0.0.1:{port}",
            "DEVPLANE_CRON": "false",  # only the run started here
        },
        port=port,
    )

    async with httpx.AsyncClient(timeout=10) as client:
        started = await client.post(f"{devplane.url}/cron/cleanup/run")
        run = await finished_run(client, f"{devplane.url}/cron/cleanup")

    assert started.status_code == 202
    assert run["state"] == "succeeded", run["output"]
    summary = json.loads(next(line for line in run["output"] if "cleanup finished" in line))
    assert (summary["records_deleted"], summary["objects_deleted"]) == (30, 90)
    assert sorted(r["key"] for r in await store.records()) == sorted(r["key"] for r in live)
    assert store.all_objects() == set().union(*(owned(r) for r in live))
    assert {o for r in expired for o in owned(r)}.isdisjoint(store.all_objects())

    deadline = time.monotonic() + 30
    while not (received := await mongo_db["received"].find({}).to_list()):
        assert time.monotonic() < deadline, "cleanup.completed never reached the subscriber"
        await asyncio.sleep(0.2)
    [event] = received
    assert (event["type"], event["source"]) == (CLEANUP_COMPLETED, "/knative-playbook/cleanup")
    assert event["data"] == {k: summary[k] for k in event["data"]}  # the logged summary
    assert event["data"]["records_deleted"] == 30
