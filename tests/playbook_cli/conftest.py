"""The platform the CLI talks to, as real processes, once per module.

A MinIO server whose webhook notifies minio-source, minio-source, image-processor,
dead-letter and devplane (the chart's own routing, plus a Trigger for a test type whose
subscriber is not running yet, so that its events are dead-lettered), on the real
MongoDB-protocol server. The CLI runs as its installed console script, pointed at them by
`PLAYBOOK_<SERVICE>_URL` variables, since tests never use the fixed local ports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from devplane.servers import FunctionProcess, MinioServer, MongoServer, free_port
from minio_source.setup import apply as setup_minio

from tests.minio_source.servers import setup_settings, source_env, webhook_minio
from tests.support.processes import ProcessGroup, shared_env

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = Path(sys.executable).parent / "playbook"
DOOMED = "io.knative-playbook.cli-test.doomed.v1"


@dataclass
class Platform:
    root: Path
    minio: MinioServer
    processes: dict[str, FunctionProcess]
    db: str
    late_port: int  # the doomed type's subscriber: nothing listens until a test starts one
    env: dict[str, str] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return self.processes[name].url

    def playbook(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the installed `playbook` command against this platform."""
        completed = subprocess.run(
            [str(PLAYBOOK), *args],
            input=stdin,
            env={**os.environ, **self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        return completed

    def json_lines(self, *args: str) -> list[dict[str, Any]]:
        result = self.playbook("--json", *args)
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def routing(urls: dict[str, str], late_url: str) -> dict[str, Any]:
    """The chart's values, every function off but ours, test-sized delivery timings."""
    chart = yaml.safe_load((REPO / "charts/knative-playbook/values.yaml").read_text())
    functions: dict[str, Any] = {name: {"enabled": False} for name in chart["functions"]}
    for name, url in urls.items():
        functions[name] = {"enabled": True, "url": url}
    functions["late-subscriber"] = {
        "url": late_url,
        "triggers": [
            {"name": "doomed", "filter": {"attributes": {"type": DOOMED}}},
        ],
    }
    return {
        "eventing": {
            "delivery": {
                "retry": 1,
                "backoffPolicy": "linear",
                "backoffDelay": "PT0.1S",
                "timeout": "PT30S",
                "deadLetterSink": "dead-letter",
            }
        },
        "cronJobs": {name: {"enabled": False} for name in chart.get("cronJobs", {})},
        "functions": functions,
    }


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory, mongo_server: MongoServer
) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("platform")
    source_port = free_port()
    minio = webhook_minio(root, source_port)
    minio.start()
    db = f"t_cli_{uuid.uuid4().hex[:8]}"
    try:
        setup_minio(setup_settings(minio), wait=30)
        common = shared_env(mongo_server.url, db, minio)
        plane_port = free_port()
        plane_url = f"http://127.0.0.1:{plane_port}"
        with ProcessGroup(root) as group:
            with_sink = {**common, "K_SINK": plane_url}
            processor = group.start(
                "image-processor", "image_processor.main:app", free_port(), with_sink
            )
            letters = group.start("dead-letter", "dead_letter.main:app", free_port(), with_sink)
            late_port = free_port()
            values = root / "values.yaml"
            values.write_text(
                json.dumps(
                    routing(
                        {"image-processor": processor.url, "dead-letter": letters.url},
                        f"http://127.0.0.1:{late_port}",
                    )
                )
            )
            group.start_devplane(plane_port, common, values)
            group.start(
                "minio-source",
                "minio_source.main:app",
                source_port,
                source_env(minio, K_SINK=plane_url),
            )
            group.wait_ready(60)
            processes = {p.name: p for p in group.started}
            env = {
                f"PLAYBOOK_{name.upper().replace('-', '_')}_URL": proc.url
                for name, proc in processes.items()
            }
            env |= {
                # Nothing may fall back to the fixed local ports a developer's make dev uses.
                "PLAYBOOK_URL": "http://127.0.0.1:9/{service}",
                "PLAYBOOK_BROKER": "",
                "PLAYBOOK_MINIO": minio.endpoint,
                "PLAYBOOK_MINIO_ACCESS_KEY": minio.access_key,
                "PLAYBOOK_MINIO_SECRET_KEY": minio.secret_key,
            }
            yield Platform(root, minio, processes, db, late_port, env)
    finally:
        minio.stop()
