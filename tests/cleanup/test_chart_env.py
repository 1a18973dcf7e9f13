"""The CronJobs' environment as the chart renders it is what cleanup and warmer read."""

from __future__ import annotations

from pathlib import Path

import pytest
from cleanup.config import Settings as CleanupSettings
from fnkit import FunctionSettings
from warmer.config import Settings as WarmerSettings

from tests.chart.helpers import render

pytestmark = pytest.mark.unit

# Set by Kubernetes for $(MONGO_PASSWORD) expansion into MONGO_URL, not read by the code.
EXPANSION_ONLY = {"MONGO_PASSWORD"}


def names(settings: type[FunctionSettings]) -> set[str]:
    return {name.upper() for name in settings.model_fields}


@pytest.mark.parametrize(
    ("job", "settings"), [("cleanup", CleanupSettings), ("warmer", WarmerSettings)]
)
def test_every_variable_the_chart_gives_a_job_is_one_it_reads(
    job: str, settings: type[FunctionSettings], tmp_path: Path
) -> None:
    rendered = render(values="cronJobs:\n  warmer:\n    enabled: true\n", tmp=tmp_path)
    name = f"kp-knative-playbook-{job}"
    config = set(rendered.get("ConfigMap", name)["data"])
    secret = set(rendered.get("Secret", name).get("stringData") or {})
    cron = rendered.get("CronJob", name)
    [container] = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    direct = {entry["name"] for entry in container.get("env", [])}

    unread = (config | secret | direct) - EXPANSION_ONLY - names(settings)

    assert not unread, f"{job} does not read {sorted(unread)}"
    assert container["command"] == ["python", "-m", job]


def test_the_cleanup_job_gets_its_buckets_and_the_warmer_its_targets(tmp_path: Path) -> None:
    rendered = render(values="cronJobs:\n  warmer:\n    enabled: true\n", tmp=tmp_path)

    cleanup = rendered.get("ConfigMap", "kp-knative-playbook-cleanup")["data"]
    warmer = rendered.get("ConfigMap", "kp-knative-playbook-warmer")["data"]

    assert (cleanup["UPLOADS_BUCKET"], cleanup["PROCESSED_BUCKET"]) == ("uploads", "processed")
    targets = WarmerSettings(warmer_targets=warmer["WARMER_TARGETS"]).warmer_targets
    assert targets == [
        "http://products-api.playbook.svc.cluster.local",
        "http://orders-api.playbook.svc.cluster.local",
    ]
