"""`playbook order` and `playbook job` against the saga and fan-out platforms as processes
(the fixtures of tests/saga and tests/fanout: devplane running the repository's workflow,
orders-api, order-steps, workflow-launcher, products-api; bulk-jobs, item-processor,
job-aggregator, dead-letter)."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from devplane.servers import FunctionProcess

from tests.fanout.conftest import plane_dir, plane_processes  # noqa: F401 - fixtures
from tests.playbook_cli.conftest import PLAYBOOK
from tests.saga.conftest import platform_processes  # noqa: F401 - fixtures

pytestmark = pytest.mark.e2e

Processes = tuple[dict[str, str], str, str]


def playbook(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PLAYBOOK), *args],
        input=stdin,
        env={**os.environ, "PLAYBOOK_URL": "http://127.0.0.1:9/{service}", **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def service_env(urls: dict[str, str]) -> dict[str, str]:
    return {f"PLAYBOOK_{name.upper().replace('-', '_')}_URL": url for name, url in urls.items()}


def new_product(products_url: str, stock: int) -> str:
    sku = f"CLI-{uuid.uuid4().hex[:10].upper()}"
    body = {"sku": sku, "name": f"Item {sku}", "price": "12.50", "currency": "EUR", "stock": stock}
    response = httpx.post(f"{products_url}/products", json=body, timeout=30)
    assert response.status_code == 201, response.text
    return sku


def order(sku: str, quantity: int, pay_with: str = "tok_approve") -> str:
    return json.dumps(
        {
            "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
            "lines": [{"sku": sku, "quantity": quantity}],
            "payment_token": pay_with,
        }
    )


def test_order_place_follows_the_saga_step_by_step_to_completion(
    platform_processes: Processes,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    urls, _, _ = platform_processes
    env = service_env(urls)
    file = tmp_path / "order.json"
    file.write_text(order(new_product(urls["products-api"], stock=5), 2))

    result = playbook(env, "order", "place", str(file), "--follow", "--interval", "0.3")

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("order ") and " placed: PENDING, trace " in lines[0]
    steps = [line.split()[1] for line in lines if line.startswith("  ")]
    for step in ("validate", "reserve-inventory", "charge-payment", "commit-inventory"):
        assert step in steps, result.stdout
    assert steps.index("reserve-inventory") < steps.index("charge-payment")
    assert len(steps) == len(set(steps)), "a step printed twice"
    assert lines[-1].endswith(": COMPLETED")


def test_order_show_of_a_failed_saga_names_the_step_and_compensations(
    platform_processes: Processes,  # noqa: F811 - the fixture imported above
) -> None:
    urls, _, _ = platform_processes
    env = service_env(urls)
    sku = new_product(urls["products-api"], stock=5)
    placed = playbook(env, "--json", "order", "place", "-", stdin=order(sku, 1, "tok_decline"))
    assert placed.returncode == 0, placed.stderr
    order_id = json.loads(placed.stdout.splitlines()[-1])["id"]

    followed = playbook(env, "order", "show", order_id, "-f")
    shown = playbook(env, "--json", "order", "show", order_id)

    assert followed.returncode == 1, followed.stdout + followed.stderr
    assert "FAILED" in followed.stdout
    assert "failed at charge-payment" in followed.stdout
    document = json.loads(shown.stdout)
    assert (document["status"], document["failed_step"]) == ("FAILED", "charge-payment")
    assert "release-inventory" in " ".join(document["compensations"])


def test_job_submit_follows_progress_then_prints_the_summary(
    plane_processes: tuple[FunctionProcess, dict[str, FunctionProcess], str],  # noqa: F811
    tmp_path: Path,
) -> None:
    _, functions, _ = plane_processes
    env = service_env({name: proc.url for name, proc in functions.items()})
    prefix = f"CLIJOB{uuid.uuid4().hex[:6].upper()}"
    items: list[Any] = [
        {
            "sku": f"{prefix}-{n:03d}",
            "name": f"Thing {n}",
            "price": f"{n}.50",
            "currency": "EUR",
            "stock": n,
        }
        for n in range(40)
    ]
    items[7]["price"] = "1.234"  # finer than cents: this item fails
    file = tmp_path / "job.json"
    file.write_text(json.dumps({"items": items}))

    result = playbook(env, "job", "submit", str(file), "--follow", "--interval", "0.3")

    assert result.returncode == 0, result.stdout + result.stderr
    job_id = result.stdout.split()[1]
    progress = [line for line in result.stderr.splitlines() if line.startswith(f"job {job_id}:")]
    assert progress and progress[-1].startswith(f"job {job_id}: 40/40 (100%), 1 failed")
    assert f"job {job_id}: COMPLETED, 40 items: 39 succeeded, 1 failed" in result.stdout
    assert "item 7:" in result.stdout

    status = playbook(env, "--json", "job", "status", job_id)
    assert status.returncode == 0, status.stderr
    job = json.loads(status.stdout)
    assert (job["status"], job["succeeded"], job["failed"]) == ("COMPLETED", 39, 1)
