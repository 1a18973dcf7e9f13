"""devplane runs the warmer CronJob with WARMER_TARGETS resolved from the chart's values."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from devplane.servers import FunctionProcess, free_port

pytestmark = pytest.mark.e2e


async def test_devplane_runs_the_warmer_against_the_functions_named_in_values(
    function_process: Any, tmp_path: Path
) -> None:
    echo: FunctionProcess = function_process("fnkit.echo:app")
    values = tmp_path / "values.yaml"
    values.write_text(
        json.dumps(
            {
                "functions": {"echo": {"url": echo.url, "triggers": []}},
                "cronJobs": {"warmer": {"enabled": True, "targets": ["echo"]}},
            }
        )
    )
    port = free_port()
    devplane: FunctionProcess = function_process(
        "devplane.main:app",
        env={
            "DEVPLANE_EXTRA_VALUES": str(values),
            "DEVPLANE_URL": f"http://127.0.0.1:{port}",
            "DEVPLANE_CRON": "false",
        },
        port=port,
    )

    async with httpx.AsyncClient(timeout=10) as client:
        started = await client.post(f"{devplane.url}/cron/warmer/run")
        deadline = time.monotonic() + 60
        while (run := (await client.get(f"{devplane.url}/cron/warmer")).json()["runs"][0])[
            "state"
        ] == "running":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)

    assert started.status_code == 202
    assert run["state"] == "succeeded", run["output"]
    [ping] = [json.loads(line) for line in run["output"] if '"msg":"ping"' in line]
    assert (ping["target"], ping["outcome"]) == (echo.url, "ok")
