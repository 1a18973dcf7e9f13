"""The architecture picture (docs/architecture.*) keeps up with what the chart deploys."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
VALUES = yaml.safe_load((REPO / "charts/knative-playbook/values.yaml").read_text())
DEPLOYABLES = sorted([*VALUES["functions"], *VALUES.get("cronJobs", {})])


@pytest.mark.parametrize("name", DEPLOYABLES)
def test_every_deployable_is_drawn_in_the_source_and_the_images(name: str) -> None:
    source = (DOCS / "architecture.dot").read_text()
    assert re.search(rf'^\s*"?{re.escape(name)}"?\s*\[', source, re.MULTILINE), name
    svg = html.unescape((DOCS / "architecture.svg").read_text())
    assert f"<title>{name}</title>" in svg, f"{name} is not in the rendered SVG: re-render it"


def test_the_images_are_newer_renderings_of_the_source() -> None:
    svg = (DOCS / "architecture.svg").read_text()
    # graphviz writes the graph's name as the SVG's title.
    assert "<title>knative_playbook</title>" in svg
    assert (DOCS / "architecture.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
