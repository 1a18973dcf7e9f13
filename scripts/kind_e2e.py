"""Each pattern once, end to end, on a cluster deployed by scripts/kind-deploy.

Reached through port-forwards opened by scripts/kind-e2e: the Knative gateway (a function is
addressed by its Host header), the broker ingress and MinIO. A pattern whose function is not
deployed is reported as not run; any other failure stops the run with a non-zero exit.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from minio import Minio
from PIL import Image

NAMESPACE = os.environ["NAMESPACE"]
RELEASE = os.environ["RELEASE"]
TIMEOUT = 180.0


def function(name: str) -> httpx.Client:
    host = f"{name}.{NAMESPACE}.svc.cluster.local"
    return httpx.Client(base_url=os.environ["GATEWAY"], headers={"Host": host}, timeout=60)


def deployed() -> set[str]:
    """Names of the deployed functions and CronJobs (without the release prefix)."""
    out = subprocess.run(
        [
            "kubectl",
            "get",
            "ksvc,cronjob",
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {name.removeprefix(f"{RELEASE}-") for name in out.split()}


def until(what: str, probe: Callable[[], Any]) -> Any:
    """Poll `probe` until it returns something truthy, or fail after TIMEOUT seconds."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(2)
    raise SystemExit(f"timed out waiting for {what}")


def rest() -> str:
    sku = f"E2E-{uuid.uuid4().hex[:8].upper()}"
    with function("products-api") as api:
        created = api.post(
            "/products",
            json={"sku": sku, "name": "Smoke test", "price": "1.00", "currency": "EUR", "stock": 1},
        )
        created.raise_for_status()
        product = api.get(f"/products/{created.json()['id']}").raise_for_status().json()
    assert product["sku"] == sku, product
    return f"product {sku} created and read back"


def images() -> str:
    minio = Minio(
        os.environ["MINIO_ENDPOINT"],
        os.environ["MINIO_ACCESS_KEY"],
        os.environ["MINIO_SECRET_KEY"],
        secure=False,
    )
    picture = io.BytesIO()
    Image.new("RGB", (1600, 1200), (200, 80, 40)).save(picture, "JPEG")
    stem = f"e2e-{uuid.uuid4().hex[:8]}"
    minio.put_object(
        "uploads",
        f"{stem}.jpg",
        io.BytesIO(picture.getvalue()),
        len(picture.getvalue()),
        content_type="image/jpeg",
    )
    renditions = until(
        "renditions in the processed bucket",
        lambda: list(minio.list_objects("processed", prefix=f"{stem}/")),
    )
    return f"{len(renditions)} renditions of {stem}.jpg"


def cron() -> str:
    job = f"e2e-cleanup-{uuid.uuid4().hex[:6]}"
    subprocess.run(
        ["kubectl", "create", "job", "-n", NAMESPACE, job, f"--from=cronjob/{RELEASE}-cleanup"],
        check=True,
    )
    subprocess.run(
        [
            "kubectl",
            "wait",
            "-n",
            NAMESPACE,
            f"job/{job}",
            "--for=condition=Complete",
            f"--timeout={int(TIMEOUT)}s",
        ],
        check=True,
    )
    return f"job {job} completed"


def saga() -> str:
    with function("orders-api") as api:
        placed = api.post(
            "/orders",
            json={
                "customer": "e2e",
                "payment_token": "approve",
                "lines": [{"sku": "E2E-SAGA", "quantity": 1}],
            },
        )
        placed.raise_for_status()
        location = placed.headers["Location"]
        order = until(
            "the saga to finish",
            lambda: (lambda o: o if o["status"] in ("COMPLETED", "FAILED") else None)(
                api.get(location).raise_for_status().json()
            ),
        )
    return f"order {order.get('id', location)} {order['status']}"


def fan_out() -> str:
    items = [
        {"sku": f"E2E-FAN-{i}", "name": f"Item {i}", "price": "2.00", "currency": "EUR"}
        for i in range(20)
    ]
    with function("bulk-jobs") as api:
        job = api.post("/jobs", json={"items": items}).raise_for_status().json()
        done = until(
            "the bulk job to complete",
            lambda: (lambda j: j if j["status"] == "COMPLETED" else None)(
                api.get(f"/jobs/{job['id']}").raise_for_status().json()
            ),
        )
    return f"job {job['id']}: {done.get('succeeded')} succeeded, {done.get('failed')} failed"


def dead_letters() -> str:
    with function("dead-letter") as api:
        page = api.get("/dead-letters").raise_for_status().json()
    return f"dead-letter answers ({len(page.get('items', []))} stored)"


def broker() -> str:
    response = httpx.post(
        os.environ["BROKER"],
        content=b'{"smoke": true}',
        headers={
            "ce-specversion": "1.0",
            "ce-type": "io.knative-playbook.smoke-test.v1",
            "ce-source": "/knative-playbook/kind-e2e",
            "ce-id": uuid.uuid4().hex,
            "content-type": "application/json",
        },
    )
    assert response.status_code == 202, response.text
    return "broker accepted a CloudEvent"


PATTERNS: list[tuple[str, set[str], Callable[[], str]]] = [
    ("broker", set(), broker),
    ("1 REST", {"products-api"}, rest),
    ("2 images", {"minio-source", "image-processor"}, images),
    ("3 scheduled", {"cleanup"}, cron),
    ("4 saga", {"orders-api", "order-steps", "workflow-launcher"}, saga),
    ("5 fan-out", {"bulk-jobs", "item-processor", "job-aggregator"}, fan_out),
    ("dead letters", {"dead-letter"}, dead_letters),
]


def main() -> int:
    present = deployed()
    for name, needs, run in PATTERNS:
        if not needs <= present:
            print(f"NOT RUN  {name}: {', '.join(sorted(needs - present))} not deployed")
            continue
        started = time.monotonic()
        print(f"ok       {name}: {run()} ({time.monotonic() - started:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
