from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from devplane.config import (
    ConfigError,
    Delivery,
    build_config,
    find_chart_values,
    load_config,
    merge_values,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def values(triggers: list[dict[str, Any]], **delivery: Any) -> dict[str, Any]:
    return {
        "eventing": {"delivery": {"retry": 2, "backoffDelay": "PT1S", **delivery}},
        "functions": {
            "fn": {"localPort": 8199, "triggers": triggers},
            "dead-letter": {"localPort": 8110, "triggers": []},
        },
    }


def trigger(**fields: Any) -> dict[str, Any]:
    return {"name": "t", "filter": {"attributes": {"type": "x.v1"}}, **fields}


# -- the chart itself ----------------------------------------------------------------------


def test_the_charts_values_load_and_route_as_the_chart_renders_them() -> None:
    config = load_config([find_chart_values(ROOT)])

    routes = {(t.subscriber, t.name): t for t in config.triggers}
    uploads = routes[("image-processor", "uploads-put")]
    assert uploads.url == "http://127.0.0.1:8103"
    assert uploads.filter == {"type": "io.minio.s3.ObjectCreated.Put", "bucket": "uploads"}
    assert uploads.delivery == Delivery(5, "exponential", 0.5, 30.0, "dead-letter")
    assert uploads.dead_letter_url == "http://127.0.0.1:8110"
    assert config.cron_jobs["cleanup"].schedule.expression == "*/15 * * * *"
    assert not config.cron_jobs["warmer"].enabled


def test_the_chart_is_found_from_a_subfolder() -> None:
    assert find_chart_values(ROOT / "services" / "devplane") == find_chart_values(ROOT)


# -- filters -------------------------------------------------------------------------------


def test_filters_match_exactly_on_every_attribute_extensions_included() -> None:
    config = build_config(
        values([trigger(filter={"attributes": {"type": "x.v1", "bucket": "up"}})])
    )
    [route] = config.triggers

    assert route.matches({"type": "x.v1", "bucket": "up", "source": "/s"})
    assert not route.matches({"type": "x.v1", "bucket": "down"})
    assert not route.matches({"type": "x.v1"})
    assert not route.matches({"type": "x.v2", "bucket": "up"})
    assert not route.matches({"type": "X.V1", "bucket": "up"})


def test_no_filter_matches_every_event() -> None:
    [route] = build_config(values([{"name": "all"}])).triggers
    assert route.matches({"type": "anything"})


def test_filter_values_are_compared_as_strings() -> None:
    [route] = build_config(values([trigger(filter={"attributes": {"priority": 5}})])).triggers
    assert route.filter == {"priority": "5"}


# -- delivery ------------------------------------------------------------------------------


def test_a_trigger_delivery_overrides_the_defaults_key_by_key() -> None:
    config = build_config(values([trigger(delivery={"retry": 7, "backoffPolicy": "linear"})]))
    [route] = config.triggers
    assert route.delivery == Delivery(7, "linear", 1.0, None, None)


def test_exponential_backoff_doubles_from_the_first_delay() -> None:
    delivery = Delivery(retry=4, backoff_policy="exponential", backoff_delay=0.5)
    assert [delivery.backoff(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]


def test_linear_backoff_grows_by_the_first_delay() -> None:
    delivery = Delivery(retry=4, backoff_policy="linear", backoff_delay=0.5)
    assert [delivery.backoff(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 1.5, 2.0]


def test_the_dead_letter_sink_is_a_function_name_or_a_url() -> None:
    by_name = build_config(values([trigger()], deadLetterSink="dead-letter")).triggers[0]
    by_url = build_config(values([trigger()], deadLetterSink="http://sink:8080/x")).triggers[0]
    assert by_name.dead_letter_url == "http://127.0.0.1:8110"
    assert by_url.dead_letter_url == "http://sink:8080/x"


# -- subscriber URLs -----------------------------------------------------------------------


def test_subscriber_urls_come_from_the_template() -> None:
    [route] = build_config(values([trigger()]), "http://{name}:8080").triggers
    assert route.url == "http://fn:8080"


def test_an_explicit_url_wins_over_the_template() -> None:
    config = values([trigger()])
    config["functions"]["fn"]["url"] = "http://127.0.0.1:5555/"
    assert build_config(config).triggers[0].url == "http://127.0.0.1:5555"


def test_a_template_needing_a_port_refuses_a_function_without_one() -> None:
    config = values([trigger()])
    del config["functions"]["fn"]["localPort"]
    with pytest.raises(ConfigError, match=r"functions\.fn: no localPort"):
        build_config(config)


def test_disabled_functions_get_no_deliveries_but_are_still_validated() -> None:
    config = values([trigger()])
    config["functions"]["fn"]["enabled"] = False
    assert build_config(config).triggers == ()
    config["functions"]["fn"]["triggers"] = [trigger(delivery={"retries": 3})]
    with pytest.raises(ConfigError, match="retries"):
        build_config(config)


# -- merging values files ------------------------------------------------------------------


def test_values_files_merge_like_helm() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1, "e": {"f": 1}}
    override = {"a": {"c": [3]}, "d": None, "e": {"g": 2}}
    assert merge_values(base, override) == {"a": {"b": 1, "c": [3]}, "e": {"f": 1, "g": 2}}


def test_an_extra_values_file_adds_a_subscriber_without_editing_the_chart(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text(
        yaml.safe_dump(
            {
                "eventing": {"delivery": {"retry": 1}},
                "functions": {"audit": {"url": "http://127.0.0.1:7000", "triggers": [trigger()]}},
            }
        )
    )
    config = load_config([find_chart_values(ROOT), extra])
    audit = next(t for t in config.triggers if t.subscriber == "audit")
    assert audit.delivery.retry == 1
    assert audit.delivery.backoff_delay == 0.5  # still the chart's
    assert any(t.subscriber == "image-processor" for t in config.triggers)


# -- loud validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (
            values([trigger(delivery={"backofDelay": "PT1S"})]),
            r"triggers\[0\]\.delivery.*backofDelay",
        ),
        (values([trigger(delivery={"backoffDelay": "1s"})]), r"delivery\.backoffDelay.*ISO-8601"),
        (values([trigger(delivery={"timeout": "PT0S"})]), r"delivery\.timeout.*longer than zero"),
        (values([trigger(delivery={"retry": -1})]), r"retry.*>= 0"),
        (values([trigger(delivery={"retry": "3"})]), r"retry.*whole number"),
        (values([trigger(delivery={"backoffPolicy": "fibonacci"})]), "linear or exponential"),
        (values([trigger()], timeout="soon"), r"eventing\.delivery\.timeout"),
        (values([trigger()], deadLetterSink="nowhere"), "neither a function"),
        (values([trigger(subscriber={"ref": "x"})]), r"unknown key\(s\) \['subscriber'\]"),
        (values([trigger(filter={"sql": "type = 'x'"})]), r"unknown key\(s\) \['sql'\]"),
        (values([trigger(filter={"attributes": {"Type": "x"}})]), "not a CloudEvents attribute"),
        (values([trigger(filter={"attributes": {"type": ["a", "b"]}})]), "single value"),
        (values([{"filter": {}}]), "needs a name"),
        (values([trigger(), trigger()]), "used twice"),
        (
            {"cronJobs": {"job": {"schedule": "* * *", "command": ["x"]}}},
            r"cronJobs\.job\.schedule",
        ),
        (
            {
                "cronJobs": {
                    "job": {"schedule": "@daily", "timeZone": "Mars/Olympus", "command": ["x"]}
                }
            },
            "unknown IANA time zone",
        ),
        (
            {"cronJobs": {"job": {"schedule": "@daily", "command": "python -m x"}}},
            "list of strings",
        ),
    ],
)
def test_mistakes_fail_loudly_with_the_path_of_the_key(
    config: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        build_config(config)


def test_a_missing_values_file_says_which(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read values file"):
        load_config([tmp_path / "nope.yaml"])
