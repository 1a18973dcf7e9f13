"""Render the chart with the real helm binary, once per set of values."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from devplane.servers import find_binary

ROOT = Path(__file__).parents[2]
CHART = ROOT / "charts" / "knative-playbook"
KUBE_VERSION = "1.34.0"
NAMESPACE = "playbook"
RELEASE = "kp"


class Rendered(list[dict[str, Any]]):
    """The objects of one `helm template`, with lookups by kind and name."""

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self if doc["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [doc for doc in self.of(kind) if doc["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
        return found[0]

    def names(self, kind: str) -> set[str]:
        return {doc["metadata"]["name"] for doc in self.of(kind)}


def helm_binary() -> Path:
    helm = find_binary("helm")
    if helm is None:
        pytest.fail("helm is missing: run scripts/install-test-servers helm", pytrace=False)
    return helm


def run_helm(*args: str, release: str = RELEASE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(helm_binary()),
            "template",
            release,
            str(CHART),
            "--namespace",
            NAMESPACE,
            "--kube-version",
            KUBE_VERSION,
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@functools.cache
def _render(args: tuple[str, ...]) -> Rendered:
    result = run_helm(*args)
    assert result.returncode == 0, result.stderr
    return Rendered(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(*values_files: str, values: str | None = None, tmp: Path | None = None) -> Rendered:
    """Render with ci/ values files by name and, optionally, extra values as YAML text."""
    args: list[str] = []
    for name in values_files:
        args += ["-f", str(CHART / "ci" / name)]
    if values is not None:
        assert tmp is not None
        extra = tmp / "extra-values.yaml"
        extra.write_text(values)
        args += ["-f", str(extra)]
    return _render(tuple(args))
