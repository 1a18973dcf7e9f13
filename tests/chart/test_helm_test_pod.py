"""The chart's `helm test` script, run for real against devplane's broker and dead-letter.

On a cluster the Pod reaches the broker ingress and the functions through Knative; here the
same script, taken from the rendered chart, talks to the same services run as processes.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import httpx
import pytest

from tests.chart.helpers import render

pytestmark = pytest.mark.integration

TEST_TYPE = "io.knative-playbook.helm-test.v1"


def _test_pod() -> dict[str, Any]:
    pods = [
        p for p in render().of("Pod") if p["metadata"]["annotations"].get("helm.sh/hook") == "test"
    ]
    assert len(pods) == 1
    container: dict[str, Any] = pods[0]["spec"]["containers"][0]
    return container


def _run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is required: apt-get install curl", pytrace=False)
    return subprocess.run(
        ["/bin/sh", "-ec", script],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def platform(function_process, service_env) -> dict[str, str]:
    dead_letter = function_process("dead_letter.main:app", env=service_env, name="dead-letter")
    plane = function_process(
        "devplane.main:app", name="devplane", env={**service_env, "DEVPLANE_WORKERS": "1"}
    )
    return {
        "BROKER_URL": plane.url + "/",
        "DEAD_LETTER_URL": dead_letter.url,
        "FUNCTION_URLS": dead_letter.url,
    }


def test_the_helm_test_passes_on_a_working_platform_and_leaves_nothing_behind(platform):
    container = _test_pod()
    assert container["command"][:2] == ["/bin/sh", "-ec"]
    result = _run(container["command"][2], platform)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broker answered 202" in result.stdout
    assert "dead-letter purged it" in result.stdout
    left = httpx.get(f"{platform['DEAD_LETTER_URL']}/dead-letters", params={"type": TEST_TYPE})
    assert left.json()["items"] == []


def test_the_helm_test_fails_when_a_function_is_not_ready(platform, function_process):
    broken = function_process(
        "dead_letter.main:app",
        name="dead-letter-no-mongo",
        ready=False,
        env={"MONGO_URL": "mongodb://127.0.0.1:9/", "MONGO_TIMEOUT_SECONDS": "1"},
    )
    result = _run(_test_pod()["command"][2], {**platform, "FUNCTION_URLS": broken.url})
    assert result.returncode != 0
    assert "dead-letter purged it" not in result.stdout
