"""Routing read from the chart's values: Triggers, their delivery policy, CronJobs.

The chart renders Knative Triggers and Kubernetes CronJobs from these keys; devplane reads the
very same ones, so one definition drives a cluster and a laptop. Extra values files merge over
the chart's like `helm -f` (maps merge key by key, anything else replaces), so that tests and
users can add subscribers without editing the chart. Mistakes fail loudly at start-up, with
the path of the offending key, instead of quietly routing nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from devplane.cron import CronError, CronSchedule
from devplane.durations import DurationError, parse_duration

CHART_VALUES: Final = Path("charts") / "knative-playbook" / "values.yaml"
DEFAULT_URL_TEMPLATE: Final = "http://127.0.0.1:{port}"

# Knative's DeliverySpec fields that devplane executes; any other key is a typo or a feature
# devplane would silently ignore, so both are refused.
DELIVERY_KEYS: Final = frozenset(
    {"retry", "backoffPolicy", "backoffDelay", "timeout", "deadLetterSink"}
)
TRIGGER_KEYS: Final = frozenset({"name", "filter", "delivery"})
FILTER_KEYS: Final = frozenset({"attributes"})
# CloudEvents attribute names: lower-case letters and digits (the spec, and Knative's check).
_ATTRIBUTE_NAME: Final = re.compile(r"^[a-z0-9]{1,20}$")

BackoffPolicy = Literal["linear", "exponential"]


class ConfigError(ValueError):
    """The values describe routing devplane cannot execute faithfully."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """A Trigger's delivery policy (Knative `DeliverySpec`), durations in seconds."""

    retry: int = 0
    backoff_policy: BackoffPolicy = "exponential"
    backoff_delay: float = 0.0
    timeout: float | None = None
    dead_letter_sink: str | None = None

    def backoff(self, retry_number: int) -> float:
        """Delay before retry `retry_number` (1 = the first retry).

        The first retry waits `backoffDelay` under either policy; then linear grows as
        delay * n and exponential as delay * 2^(n-1).
        """
        if self.backoff_policy == "linear":
            return self.backoff_delay * retry_number
        return self.backoff_delay * 2.0 ** (retry_number - 1)


@dataclass(frozen=True, slots=True)
class Trigger:
    """One subscription: events whose attributes match `filter` go to `url`."""

    name: str
    subscriber: str
    url: str
    filter: Mapping[str, str]
    delivery: Delivery
    dead_letter_url: str | None

    def matches(self, attributes: Mapping[str, str]) -> bool:
        """Exact match on every filtered attribute (extensions included); no filter matches all."""
        return all(attributes.get(name) == value for name, value in self.filter.items())


@dataclass(frozen=True, slots=True)
class CronJob:
    name: str
    enabled: bool
    schedule: CronSchedule
    command: tuple[str, ...]
    # What the chart's ConfigMap gives the job besides the data stores' addresses.
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """A function as `make dev` starts it: where it listens and what it serves."""

    name: str
    enabled: bool
    local_port: int | None
    module: str | None


@dataclass(frozen=True, slots=True)
class PlaneConfig:
    triggers: tuple[Trigger, ...]
    cron_jobs: Mapping[str, CronJob]
    functions: Mapping[str, FunctionSpec] = field(default_factory=dict)


def find_chart_values(start: Path | None = None) -> Path:
    """The chart's values.yaml, looked up from `start` (the working directory) upwards."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CHART_VALUES
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{CHART_VALUES} not found above {here}; set DEVPLANE_CHART_VALUES")


def merge_values(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`helm -f` semantics: maps merge recursively, lists and scalars replace, null deletes."""
    merged = dict(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_values(paths: Iterable[Path]) -> dict[str, Any]:
    """The values files merged in order (the chart's first)."""
    values: dict[str, Any] = {}
    for path in paths:
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read values file {path}: {exc}") from None
        if not isinstance(document, Mapping):
            raise ConfigError(f"values file {path} is not a mapping")
        values = merge_values(values, document)
    return values


def subscriber_url(name: str, function: Mapping[str, Any], template: str) -> str:
    """A function's URL: its explicit `url`, else the template with {name} and {port}."""
    explicit = function.get("url")
    if explicit:
        return str(explicit).rstrip("/")
    port = function.get("localPort")
    if "{port}" in template and not isinstance(port, int):
        raise ConfigError(f"functions.{name}: no localPort (or url) to resolve {template!r}")
    try:
        return template.format(name=name, port=port).rstrip("/")
    except (KeyError, IndexError) as exc:
        raise ConfigError(
            f"subscriber URL template {template!r} may only use {{name}} and {{port}}"
        ) from exc


def _duration(raw: Mapping[str, Any], key: str, where: str, default: float | None) -> Any:
    if key not in raw:
        return default
    try:
        return parse_duration(raw[key])
    except DurationError as exc:
        raise ConfigError(f"{where}.{key}: {exc}") from None


def parse_delivery(raw: Any, where: str, base: Delivery | None = None) -> Delivery:
    """A delivery block over `base` (each key it sets overrides the base's)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping, got {type(raw).__name__}")
    unknown = set(raw) - DELIVERY_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {sorted(unknown)}; devplane executes {sorted(DELIVERY_KEYS)}"
        )
    base = base or Delivery()
    retry = raw.get("retry", base.retry)
    if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
        raise ConfigError(f"{where}.retry: must be a whole number >= 0, got {retry!r}")
    policy = raw.get("backoffPolicy", base.backoff_policy)
    if policy not in ("linear", "exponential"):
        raise ConfigError(f"{where}.backoffPolicy: must be linear or exponential, got {policy!r}")
    delay = _duration(raw, "backoffDelay", where, base.backoff_delay)
    timeout = _duration(raw, "timeout", where, base.timeout)
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"{where}.timeout: must be longer than zero")
    sink = raw.get("deadLetterSink", base.dead_letter_sink)
    if sink is not None and (not isinstance(sink, str) or not sink):
        raise ConfigError(f"{where}.deadLetterSink: must be a function name or a URL, got {sink!r}")
    return Delivery(retry, policy, delay, timeout, sink)


def _parse_filter(raw: Any, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping")
    unknown = set(raw) - FILTER_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {sorted(unknown)}; only `attributes` "
            "(exact match) is supported"
        )
    attributes = raw.get("attributes") or {}
    if not isinstance(attributes, Mapping):
        raise ConfigError(f"{where}.attributes: must be a mapping of attribute: value")
    for name, value in attributes.items():
        if not isinstance(name, str) or not _ATTRIBUTE_NAME.match(name):
            raise ConfigError(
                f"{where}.attributes: {name!r} is not a CloudEvents attribute name "
                "(lower-case letters and digits)"
            )
        if isinstance(value, Mapping | list) or value is None:
            raise ConfigError(f"{where}.attributes.{name}: must be a single value")
    return {name: str(value) for name, value in attributes.items()}


def _sink_url(sink: str, functions: Mapping[str, Any], template: str, where: str) -> str:
    if "://" in sink:
        return sink
    function = functions.get(sink)
    if not isinstance(function, Mapping):
        raise ConfigError(
            f"{where}.deadLetterSink: {sink!r} is neither a function in `functions` nor a URL"
        )
    return subscriber_url(sink, function, template)


def _job_env(
    name: str, raw: Mapping[str, Any], values: Mapping[str, Any], template: str
) -> dict[str, str]:
    """The job's environment as the chart renders it: source, buckets, warmer targets, `env`."""
    where = f"cronJobs.{name}"
    env = {"EVENT_SOURCE": f"/knative-playbook/{name}"}
    if raw.get("minioBuckets"):
        buckets = (values.get("minio") or {}).get("buckets") or {}
        env["UPLOADS_BUCKET"] = str(buckets.get("uploads", "uploads"))
        env["PROCESSED_BUCKET"] = str(buckets.get("processed", "processed"))
    targets = raw.get("targets") or []
    if not isinstance(targets, list):
        raise ConfigError(f"{where}.targets: must be a list of function names")
    functions = values.get("functions") or {}
    urls = []
    for target in targets:
        function = functions.get(target)
        if not isinstance(function, Mapping):
            raise ConfigError(f"{where}.targets: {target!r} is not a function in `functions`")
        urls.append(subscriber_url(str(target), function, template))
    if urls:
        env["WARMER_TARGETS"] = ",".join(urls)
    extra = raw.get("env") or {}
    if not isinstance(extra, Mapping):
        raise ConfigError(f"{where}.env: must be a mapping of NAME: value")
    env.update({str(key): str(value) for key, value in extra.items()})
    return env


def _parse_cron(name: str, raw: Any, values: Mapping[str, Any], template: str) -> CronJob:
    where = f"cronJobs.{name}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping")
    command = raw.get("command")
    if (
        not isinstance(command, list)
        or not command
        or not all(isinstance(part, str) for part in command)
    ):
        raise ConfigError(f"{where}.command: must be a non-empty list of strings")
    zone = raw.get("timeZone", "Etc/UTC")
    try:
        tz = ZoneInfo(str(zone))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}.timeZone: unknown IANA time zone {zone!r}") from None
    try:
        schedule = CronSchedule.parse(str(raw.get("schedule", "")), tz)
    except CronError as exc:
        raise ConfigError(f"{where}.schedule: {exc}") from None
    return CronJob(
        name,
        bool(raw.get("enabled", True)),
        schedule,
        tuple(command),
        _job_env(name, raw, values, template),
    )


def build_config(
    values: Mapping[str, Any], url_template: str = DEFAULT_URL_TEMPLATE
) -> PlaneConfig:
    """Validate the merged values and resolve every Trigger to a subscriber URL."""
    eventing = values.get("eventing") or {}
    if not isinstance(eventing, Mapping):
        raise ConfigError("eventing: must be a mapping")
    defaults = parse_delivery(eventing.get("delivery") or {}, "eventing.delivery")
    functions = values.get("functions") or {}
    if not isinstance(functions, Mapping):
        raise ConfigError("functions: must be a mapping")
    triggers: list[Trigger] = []
    specs: dict[str, FunctionSpec] = {}
    for name, function in functions.items():
        if not isinstance(function, Mapping):
            raise ConfigError(f"functions.{name}: must be a mapping")
        enabled = bool(function.get("enabled", True))
        port = function.get("localPort")
        specs[name] = FunctionSpec(
            name, enabled, port if isinstance(port, int) else None, function.get("module")
        )
        raw_triggers = function.get("triggers") or []
        if not isinstance(raw_triggers, list):
            raise ConfigError(f"functions.{name}.triggers: must be a list")
        seen: set[str] = set()
        for index, raw in enumerate(raw_triggers):
            where = f"functions.{name}.triggers[{index}]"
            if not isinstance(raw, Mapping):
                raise ConfigError(f"{where}: must be a mapping")
            unknown = set(raw) - TRIGGER_KEYS
            if unknown:
                raise ConfigError(
                    f"{where}: unknown key(s) {sorted(unknown)}; a Trigger has "
                    f"{sorted(TRIGGER_KEYS)}"
                )
            trigger_name = raw.get("name")
            if not isinstance(trigger_name, str) or not trigger_name:
                raise ConfigError(f"{where}.name: every Trigger needs a name")
            if trigger_name in seen:
                raise ConfigError(f"{where}.name: {trigger_name!r} is used twice in {name}")
            seen.add(trigger_name)
            attributes = _parse_filter(raw.get("filter"), f"{where}.filter")
            delivery = (
                parse_delivery(raw["delivery"], f"{where}.delivery", defaults)
                if raw.get("delivery") is not None
                else defaults
            )
            if not enabled:
                continue  # validated all the same: enabling it later must not reveal a typo
            sink = delivery.dead_letter_sink
            triggers.append(
                Trigger(
                    name=trigger_name,
                    subscriber=name,
                    url=subscriber_url(name, function, url_template),
                    filter=attributes,
                    delivery=delivery,
                    dead_letter_url=_sink_url(sink, functions, url_template, where)
                    if sink
                    else None,
                )
            )
    cron_values = values.get("cronJobs") or {}
    if not isinstance(cron_values, Mapping):
        raise ConfigError("cronJobs: must be a mapping")
    cron_jobs = {
        name: _parse_cron(name, raw, values, url_template) for name, raw in cron_values.items()
    }
    return PlaneConfig(tuple(triggers), cron_jobs, specs)


def load_config(paths: Iterable[Path], url_template: str = DEFAULT_URL_TEMPLATE) -> PlaneConfig:
    return build_config(load_values(paths), url_template)
