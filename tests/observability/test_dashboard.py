"""The Grafana dashboard and the alert rules the chart ships, against the code's real metrics.

- the dashboard is well-formed and has the panels operators ask for;
- every series a panel or rule reads is exported by some function (the functions of the
  chart's values are imported, which registers their metrics), with the labels it matches
  and groups on, or a label Prometheus adds when it scrapes;
- every query and rule is valid PromQL, by `promtool check rules` (rules as rendered by helm,
  and each dashboard query as a recording rule).
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from devplane.servers import find_binary
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from tests.chart.helpers import render
from tests.observability.promql import Reads, for_promtool, reads

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "knative-playbook"
DASHBOARD = json.loads((CHART / "files" / "dashboard.json").read_text())
# Labels a ServiceMonitor scrape adds to every series (Prometheus Operator's target labels).
TARGET_LABELS = frozenset(
    {"namespace", "service", "pod", "container", "endpoint", "job", "instance"}
)
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
}


def panels() -> Iterator[dict[str, Any]]:
    for panel in DASHBOARD["panels"]:
        yield panel
        yield from panel.get("panels", [])  # inside a collapsed row


def queries() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels() for t in p.get("targets", [])]


def rendered_rules() -> list[dict[str, Any]]:
    [rule] = render("monitoring-enabled-values.yaml").of("PrometheusRule")
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def exported() -> dict[str, frozenset[str]]:
    """Every series name the functions export, with its label names."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    importlib.import_module("fnkit.metrics")
    for spec in values["functions"].values():
        importlib.import_module(spec["module"].split(":")[0])
    catalogue: dict[str, frozenset[str]] = {}
    for collector in list(REGISTRY._collector_to_names):
        for family in collector.collect():
            # A labelled metric without children yet has no samples to read labels from.
            names = (
                getattr(collector, "_labelnames", ())
                if isinstance(collector, MetricWrapperBase)
                else ()
            )
            declared = (
                frozenset(names)
                | {key for sample in family.samples for key in sample.labels if key != "le"}
                | frozenset(getattr(family, "_labelnames", ()))
            )
            series = [family.name + s for s in SUFFIXES.get(family.type, ())] or [family.name]
            for name in series:
                labels = declared | ({"le"} if name.endswith("_bucket") else set())
                catalogue[name] = catalogue.get(name, frozenset()) | labels
    return catalogue


CATALOGUE = exported()


def recorded() -> dict[str, frozenset[str]]:
    """Series the rules record, with the labels their expressions keep."""
    return {
        r["record"]: reads(r["expr"]).grouping
        for g in rendered_rules()
        for r in g["rules"]
        if "record" in r
    }


def unknown(read: Reads, known: dict[str, frozenset[str]]) -> list[str]:
    problems = []
    available: set[str] = set(TARGET_LABELS)
    for selector in read.selectors:
        if selector.metric not in known:
            problems.append(f"no function exports {selector.metric}")
            continue
        labels = known[selector.metric] | TARGET_LABELS
        available |= labels
        if missing := selector.labels - labels:
            problems.append(f"{selector.metric} has no label {sorted(missing)}")
    if missing := read.grouping - available:
        problems.append(f"grouped by labels no series has: {sorted(missing)}")
    return problems


def test_the_dashboard_is_well_formed() -> None:
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
    variables = {v["name"] for v in DASHBOARD["templating"]["list"]}
    for panel in panels():
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\$\{?([a-z]\w*)", json.dumps(target)))
            assert used <= variables, f"{panel['title']}: undefined variables {used - variables}"


@pytest.mark.parametrize(
    "wanted",
    [
        r"invocations",
        r"error rate",
        r"p50.*p99",
        r"cold start",
        r"init time",
        r"in flight",
        r"dead letters by (event )?type",
        r"job progress",
    ],
)
def test_the_dashboard_shows_what_operators_ask_for(wanted: str) -> None:
    titles = [p["title"] for p in panels()]
    assert [t for t in titles if re.search(wanted, t, re.IGNORECASE)], titles


@pytest.mark.parametrize(("title", "expr"), queries(), ids=[f"{t}:{e[:40]}" for t, e in queries()])
def test_each_panel_reads_series_the_functions_export(title: str, expr: str) -> None:
    assert not unknown(reads(expr), {**CATALOGUE, **recorded()}), title


def test_each_rule_reads_series_the_functions_export() -> None:
    known = {**CATALOGUE, **recorded()}
    problems = {
        r.get("alert") or r["record"]: unknown(reads(r["expr"]), known)
        for g in rendered_rules()
        for r in g["rules"]
    }
    assert {name: found for name, found in problems.items() if found} == {}


def test_dead_letters_by_type_come_from_the_event_types_not_the_handler() -> None:
    # The dead-letter function handles every type with one fallback handler, so fnkit labels
    # its invocations type="fallback": a per-type alert must read dead_letter_stored_total.
    [alert] = [
        r for g in rendered_rules() for r in g["rules"] if r.get("alert") == "DeadLettersGrowing"
    ]
    assert "dead_letter_stored_total" in reads(alert["expr"]).metrics


def test_the_check_itself_catches_a_wrong_metric_and_a_wrong_label() -> None:
    known = {**CATALOGUE, **recorded()}
    assert unknown(reads("sum(rate(fnkit_invocation_total[5m]))"), known)
    assert unknown(reads('max(process_resident_memory_bytes{function="x"})'), known)
    assert unknown(reads("sum by (flavour) (fnkit_in_flight)"), known)
    assert not unknown(reads('sum by (function) (fnkit_in_flight{namespace="a"})'), known)


def test_rules_and_queries_are_valid_promql(tmp_path: Path) -> None:
    promtool = find_binary("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: run scripts/install-test-servers promtool", pytrace=False)
    dashboard_group = {
        "name": "dashboard-queries",
        "rules": [
            {"record": f"dashboard:query_{n}", "expr": for_promtool(expr)}
            for n, (_, expr) in enumerate(queries())
        ],
    }
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": [*rendered_rules(), dashboard_group]}))
    result = subprocess.run(
        [str(promtool), "check", "rules", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        f"SUCCESS: {sum(len(g['rules']) for g in [*rendered_rules(), dashboard_group])} rules found"
        in result.stdout
    )
