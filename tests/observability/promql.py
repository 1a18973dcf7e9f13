"""What a PromQL expression reads: its series selectors and the labels it groups or joins by.

Enough of PromQL for checking dashboards and rules against the metrics the code exports (the
syntax itself is promtool's job): strings, ranges and offsets are dropped, function calls and
operators skipped, and every remaining name is a metric, with the labels its matchers use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

KEYWORDS: Final = frozenset(
    {
        "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
        "group_left", "group_right", "inf", "nan",
    }
)  # fmt: skip
_STRING: Final = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_RANGE: Final = re.compile(r"\[[^\]]*\]")
_OFFSET: Final = re.compile(r"\boffset\s+-?[0-9a-z]+")
_GROUPING: Final = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR: Final = re.compile(r"([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?(\s*\()?")
_MATCHER: Final = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
_GRAFANA_VAR: Final = re.compile(r"\$(__\w+|\w+|\{\w+\})")


@dataclass(frozen=True)
class Selector:
    metric: str
    labels: frozenset[str]


@dataclass(frozen=True)
class Reads:
    selectors: tuple[Selector, ...]
    grouping: frozenset[str]  # labels of by/without/on/ignoring/group_* clauses

    @property
    def metrics(self) -> set[str]:
        return {s.metric for s in self.selectors}


def reads(expr: str) -> Reads:
    # Matchers first, while their strings are still there to be blanked, not parsed.
    text = _STRING.sub('""', expr)
    text = _RANGE.sub("", text)
    text = _OFFSET.sub("", text)
    grouping: set[str] = set()
    for match in _GRAFANA_VAR.finditer(text):
        raise ValueError(f"Grafana variable {match[0]} outside a string or range in {expr!r}")
    for _, labels in _GROUPING.findall(text):
        grouping |= {label.strip() for label in labels.split(",") if label.strip()}
    text = _GROUPING.sub(" ", text)
    selectors = []
    for name, matchers, call in _SELECTOR.findall(text):
        if call and not matchers:
            continue  # a function or an aggregation operator
        if name.lower() in KEYWORDS:
            continue
        labels = frozenset(_MATCHER.findall(matchers)) if matchers else frozenset()
        selectors.append(Selector(name, labels - {"__name__"}))
    return Reads(tuple(selectors), frozenset(grouping))


def for_promtool(expr: str) -> str:
    """A dashboard query as Prometheus would receive it from Grafana."""
    return (
        expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
    )
