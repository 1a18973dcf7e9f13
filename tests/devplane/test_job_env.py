"""CronJobs get the environment the chart's ConfigMap gives them, resolved to local URLs."""

from __future__ import annotations

from pathlib import Path

import pytest
from devplane.config import ConfigError, build_config, find_chart_values, load_values, merge_values

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CHART = load_values([find_chart_values(ROOT)])


def test_the_cleanup_job_gets_its_source_and_the_charts_buckets() -> None:
    config = build_config(merge_values(CHART, {"minio": {"buckets": {"uploads": "in"}}}))

    env = config.cron_jobs["cleanup"].env
    assert env["EVENT_SOURCE"] == "/knative-playbook/cleanup"
    assert (env["UPLOADS_BUCKET"], env["PROCESSED_BUCKET"]) == ("in", "processed")


def test_warmer_targets_are_the_functions_local_urls() -> None:
    values = merge_values(CHART, {"cronJobs": {"warmer": {"enabled": True}}})

    laptop = build_config(values).cron_jobs["warmer"].env
    compose = build_config(values, "http://{name}:8080").cron_jobs["warmer"].env

    assert laptop["WARMER_TARGETS"] == "http://127.0.0.1:8101,http://127.0.0.1:8104"
    assert compose["WARMER_TARGETS"] == "http://products-api:8080,http://orders-api:8080"
    assert "UPLOADS_BUCKET" not in laptop  # the warmer has no buckets


def test_a_jobs_own_env_comes_last() -> None:
    values = merge_values(
        CHART, {"cronJobs": {"cleanup": {"env": {"MAX_AGE_DAYS": 90, "UPLOADS_BUCKET": "x"}}}}
    )

    env = build_config(values).cron_jobs["cleanup"].env

    assert (env["MAX_AGE_DAYS"], env["UPLOADS_BUCKET"]) == ("90", "x")


@pytest.mark.parametrize(
    ("job", "problem"),
    [
        ({"targets": ["nope"]}, r"cronJobs\.warmer\.targets: 'nope' is not a function"),
        ({"targets": "products-api"}, r"cronJobs\.warmer\.targets: must be a list"),
        ({"env": ["A=1"]}, r"cronJobs\.warmer\.env: must be a mapping"),
    ],
)
def test_mistakes_in_a_jobs_env_fail_loudly(job: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        build_config(merge_values(CHART, {"cronJobs": {"warmer": job}}))
