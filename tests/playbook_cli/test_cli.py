"""The command's surface: every command has --help, the ports are the chart's, URLs resolve."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import pytest
import yaml
from playbook_cli.cli import parser
from playbook_cli.cloudevent import Event, EventError, read_event
from playbook_cli.endpoints import PORTS, Endpoints, Unreachable

from tests.playbook_cli.conftest import PLAYBOOK

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def command_paths(
    command: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    found = [prefix]
    for action in command._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += command_paths(sub, (*prefix, name))
    return found


COMMANDS = command_paths(parser())


def test_the_documented_commands_exist() -> None:
    assert {
        ("send",),
        ("upload",),
        ("order", "place"),
        ("order", "show"),
        ("job", "submit"),
        ("job", "status"),
        ("dlq", "list"),
        ("dlq", "show"),
        ("dlq", "replay"),
        ("dlq", "purge"),
        ("events", "tail"),
    } <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "playbook")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = subprocess.run(
        [str(PLAYBOOK), *path, "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {' '.join(['playbook', *path])}")


def test_local_ports_are_the_charts_local_ports() -> None:
    values = yaml.safe_load((REPO / "charts/knative-playbook/values.yaml").read_text())
    chart_ports = {name: spec["localPort"] for name, spec in values["functions"].items()}
    assert {"devplane": 8100, **chart_ports} == PORTS


def test_the_default_reaches_make_dev_and_compose_ports() -> None:
    endpoints = Endpoints()
    assert endpoints.base("dead-letter") == ("http://127.0.0.1:8110", {})
    assert endpoints.broker_url() == "http://127.0.0.1:8100/"
    assert endpoints.target("image-processor") == ("http://127.0.0.1:8103/", {})


def test_a_gateway_url_routes_by_host_header_and_needs_a_broker() -> None:
    endpoints = Endpoints(url="http://127.0.0.1:18080/", namespace="demo")
    assert endpoints.base("orders-api") == (
        "http://127.0.0.1:18080",
        {"Host": "orders-api.demo.svc.cluster.local"},
    )
    with pytest.raises(Unreachable, match="--broker"):
        endpoints.broker_url()
    broker = Endpoints(url="http://127.0.0.1:18080", broker="http://127.0.0.1:18081/demo/default")
    assert broker.target("broker") == ("http://127.0.0.1:18081/demo/default", {})


def test_one_service_can_be_pointed_elsewhere() -> None:
    endpoints = Endpoints(services={"dead-letter": "http://10.0.0.9:8080/"})
    assert endpoints.base("dead-letter") == ("http://10.0.0.9:8080", {})
    assert endpoints.base("bulk-jobs") == ("http://127.0.0.1:8107", {})


def test_binary_header_values_are_percent_encoded_and_read_back() -> None:
    event = Event("t.v1", "/src with space", b'{"a": 1}', subject='50% "off"')
    headers, body = event.binary()
    assert headers["ce-source"] == "/src%20with%20space"
    assert headers["ce-subject"] == "50%25%20%22off%22"
    received = read_event(headers, body)
    assert received is not None
    assert received.attributes["subject"] == '50% "off"'
    assert received.data == {"a": 1}


def test_json_data_must_be_json() -> None:
    with pytest.raises(EventError, match="not JSON"):
        Event("t.v1", "/s", b"{oops")
    assert Event("t.v1", "/s", b"{oops", content_type="text/plain").data == b"{oops"


def test_extension_names_follow_the_spec() -> None:
    with pytest.raises(EventError, match="extension name"):
        Event("t.v1", "/s", extensions={"Bad-Name": "x"})
