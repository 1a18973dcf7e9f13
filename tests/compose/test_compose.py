"""docker-compose.yml against the chart's values, the Dockerfile and the services' own settings.

Functions whose code is not written yet are listed at the end of the run (conftest.py), not
skipped: their compose entries are still checked for everything that does not need their
code (ports, build arguments, dependencies), and fully once `<pkg>.main` exists.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.routing import Match

from tests.compose.model import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    ROOT,
    InterpolationError,
    dockerfile_args,
    environment,
    importable,
    load_compose,
    load_compose_raw,
    load_values,
    package,
    ports,
    read_env_file,
    service_code,
    variables,
)

pytestmark = pytest.mark.unit

ENV = read_env_file(ENV_EXAMPLE)
RAW = load_compose_raw()
COMPOSE = load_compose(ENV)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
VALUES = load_values()
FUNCTIONS: dict[str, dict[str, Any]] = VALUES["functions"]
CRON_JOBS: dict[str, dict[str, Any]] = VALUES.get("cronJobs", {})

SERVERS = {"mongodb": 27017, "minio": 9000}
SETUP = "minio-setup"
DEVPLANE = "devplane"
DEVPLANE_PORT = 8100
CONTAINER_PORT = 8080
BROKER_URL = f"http://{DEVPLANE}:{CONTAINER_PORT}"
IMAGE_PREFIX = "knative-playbook/"

MONGO_ENV = {"MONGO_URL"}
MINIO_ENV = {"MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"}
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "ACCESS_KEY", "MONGO_URL")

WRITTEN = sorted(f for f in FUNCTIONS if importable(f"{package(f)}.main"))
PENDING = sorted(set(FUNCTIONS) - set(WRITTEN))
# The setup one-shot runs minio-source's image: its code checks wait for minio-source's code.
SOURCE_WRITTEN = "minio-source" in WRITTEN
WITH_CODE = sorted({*WRITTEN, DEVPLANE, *([SETUP] if SOURCE_WRITTEN else [])})


def built_from(name: str) -> str:
    """The services/ folder a compose service's image is built from."""
    build = SERVICES[name].get("build")
    assert isinstance(build, dict), f"{name}: no build section"
    service_dir = build.get("args", {}).get("SERVICE")
    assert service_dir, f"{name}: build without a SERVICE argument"
    return str(service_dir)


def depends_on(name: str) -> dict[str, str]:
    deps = SERVICES[name].get("depends_on") or {}
    assert isinstance(deps, dict), f"{name}: depends_on must be a mapping with conditions"
    return {dep: spec.get("condition", "") for dep, spec in deps.items()}


# -- the set of services -------------------------------------------------------------------


def test_every_function_and_the_platform_has_a_service() -> None:
    expected = {*FUNCTIONS, *SERVERS, SETUP, DEVPLANE}
    assert set(SERVICES) == expected, (
        f"missing: {sorted(expected - set(SERVICES))}, unknown: {sorted(set(SERVICES) - expected)}"
    )


def test_credentials_come_from_env_example_only() -> None:
    text = COMPOSE_FILE.read_text()
    undefined = variables(text) - set(ENV)
    assert not undefined, f".env.example lacks {sorted(undefined)}"
    for name in SERVICES:
        for key, value in yaml_environment(name).items():
            if any(word in key for word in SECRET_WORDS):
                assert "${" in value, f"{name}: {key} is written into the file, not from .env"


def test_a_missing_env_file_is_refused_by_name() -> None:
    with pytest.raises(InterpolationError, match=r"MONGO_ROOT_(USER|PASSWORD)"):
        load_compose({})


def yaml_environment(name: str) -> dict[str, str]:
    """A service's environment before interpolation, to see where values come from."""
    return environment(RAW["services"][name])


# -- images --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted({*FUNCTIONS, SETUP, DEVPLANE}))
def test_images_are_built_from_the_shared_dockerfile(name: str) -> None:
    build = SERVICES[name]["build"]
    context = ROOT / build.get("context", ".")
    assert context.resolve() == ROOT, f"{name}: the build context is the workspace root"
    assert (context / build.get("dockerfile", "Dockerfile")).is_file()
    unknown = set(build.get("args", {})) - dockerfile_args()
    assert not unknown, f"{name}: build args the Dockerfile does not declare: {unknown}"
    service_dir = built_from(name)
    assert SERVICES[name]["image"] == f"{IMAGE_PREFIX}{service_dir}:{ENV['TAG']}"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_a_function_serves_the_module_of_the_chart(name: str) -> None:
    args = SERVICES[name]["build"]["args"]
    assert args["SERVICE"] == name
    assert args["MODULE"] == FUNCTIONS[name]["module"]
    assert "command" not in SERVICES[name], "functions run the image's fnkit-serve command"


@pytest.mark.parametrize("name", WITH_CODE)
def test_the_service_folder_and_module_exist(name: str) -> None:
    service_dir = built_from(name)
    assert (ROOT / "services" / service_dir / "pyproject.toml").is_file()
    module = SERVICES[name]["build"]["args"]["MODULE"].partition(":")[0]
    assert importable(module), f"{name}: no module {module}"


def test_devplane_image_holds_the_cron_jobs() -> None:
    extra = SERVICES[DEVPLANE]["build"]["args"].get("EXTRA_PACKAGES", "").split()
    assert sorted(extra) == sorted(CRON_JOBS)
    written = [job for job in CRON_JOBS if (ROOT / "services" / job / "pyproject.toml").is_file()]
    for job in written:
        assert CRON_JOBS[job]["command"][:2] == ["python", "-m"]
        assert importable(CRON_JOBS[job]["command"][2]), f"{job}: its command's module is missing"


# -- ports ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_functions_are_published_on_their_local_port(name: str) -> None:
    published = [(p.host, p.container) for p in ports(SERVICES[name])]
    assert published == [(FUNCTIONS[name]["localPort"], CONTAINER_PORT)]


def test_devplane_and_servers_are_published_as_in_make_dev() -> None:
    assert [(p.host, p.container) for p in ports(SERVICES[DEVPLANE])] == [
        (DEVPLANE_PORT, CONTAINER_PORT)
    ]
    for name, port in SERVERS.items():
        assert (port, port) in [(p.host, p.container) for p in ports(SERVICES[name])]


def test_ports_are_published_on_loopback_only() -> None:
    for name, service in SERVICES.items():
        for port in ports(service):
            assert port.host_ip == "127.0.0.1", f"{name}: {port} is reachable from the network"


def test_no_two_services_share_a_host_port() -> None:
    taken = [p.host for s in SERVICES.values() for p in ports(s)]
    assert len(taken) == len(set(taken))


# -- environment ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted({*WRITTEN, DEVPLANE}))
def test_every_env_var_is_one_the_service_reads(name: str) -> None:
    module = SERVICES[name]["build"]["args"]["MODULE"].partition(":")[0]
    read = service_code(module).env_names()
    unread = {k for k in environment(SERVICES[name]) if k.upper() not in read}
    assert not unread, f"{name} does not read {sorted(unread)}"


def test_setup_env_is_read_by_the_setup_command() -> None:
    command = SERVICES[SETUP]["command"]
    assert command[:3] == ["python", "-m", "minio_source.setup"]
    assert set(environment(SERVICES[SETUP])) >= MINIO_ENV
    if not SOURCE_WRITTEN:
        return  # listed in the module's warning; the rest needs minio-source's code
    read = service_code(command[2]).env_names()
    unread = set(environment(SERVICES[SETUP])) - read
    assert not unread, f"minio_source.setup does not read {sorted(unread)}"


@pytest.mark.parametrize("name", WRITTEN)
def test_functions_get_exactly_the_clients_they_use(name: str) -> None:
    code = service_code(f"{package(name)}.main")
    assert code.function is not None, f"{name}: app is not a fnkit Function"
    env = set(environment(SERVICES[name]))
    assert (env >= MONGO_ENV) is code.function.uses_mongo, f"{name}: Mongo settings mismatch"
    assert bool(MONGO_ENV & env) is code.function.uses_mongo
    assert (env >= MINIO_ENV) is code.function.uses_minio, f"{name}: MinIO settings mismatch"
    assert bool(MINIO_ENV & env) is code.function.uses_minio


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_functions_emit_to_devplane_in_a_dev_environment(name: str) -> None:
    env = environment(SERVICES[name])
    assert env["K_SINK"] == BROKER_URL
    assert env["ENVIRONMENT"] == ENV["ENVIRONMENT"] == "dev"


def test_devplane_routes_to_the_compose_services() -> None:
    env = environment(SERVICES[DEVPLANE])
    assert env["DEVPLANE_SUBSCRIBER_URL"].format(name="x", port=1) == f"http://x:{CONTAINER_PORT}"
    assert env["DEVPLANE_URL"] == BROKER_URL
    mounts = {
        target: source
        for source, _, target in (
            v.removesuffix(":ro").partition(":") for v in SERVICES[DEVPLANE]["volumes"]
        )
    }
    values_path = env["DEVPLANE_CHART_VALUES"]
    for target, source in mounts.items():
        if values_path.startswith(target + "/"):
            host_file = ROOT / source / values_path.removeprefix(target + "/")
            assert host_file.resolve() == (ROOT / "charts/knative-playbook/values.yaml").resolve()
            break
    else:
        raise AssertionError(f"{values_path} is not in a mounted folder: {mounts}")
    # Cron jobs get devplane's own Mongo and MinIO settings.
    assert set(env) >= MONGO_ENV | MINIO_ENV


def test_devplane_runs_the_workflows_the_chart_installs() -> None:
    env = environment(SERVICES[DEVPLANE])
    mounts = {
        target: source
        for source, _, target in (
            v.removesuffix(":ro").partition(":") for v in SERVICES[DEVPLANE]["volumes"]
        )
    }
    source = mounts.get(env["DEVPLANE_WORKFLOWS"])
    assert source is not None, f"{env['DEVPLANE_WORKFLOWS']} is not mounted: {mounts}"
    assert (ROOT / source).resolve() == (ROOT / "charts/knative-playbook/workflows").resolve()


# -- health and start order ----------------------------------------------------------------


def test_long_running_services_have_healthchecks() -> None:
    for name, service in SERVICES.items():
        if name == SETUP:
            assert service.get("restart") == "no"
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name}: no healthcheck"


@pytest.mark.parametrize("name", sorted({*FUNCTIONS, DEVPLANE}))
def test_function_healthchecks_ask_readiness(name: str) -> None:
    probe = " ".join(SERVICES[name]["healthcheck"]["test"])
    assert f"127.0.0.1:{CONTAINER_PORT}/health/readiness" in probe


def test_dependencies_wait_for_health_or_completion() -> None:
    for name in SERVICES:
        for dep, condition in depends_on(name).items():
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            if dep == SETUP:
                assert condition == "service_completed_successfully"
            else:
                assert condition == "service_healthy", f"{name} -> {dep}: {condition!r}"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_functions_start_after_what_they_use(name: str) -> None:
    deps = depends_on(name)
    assert DEVPLANE in deps, f"{name} emits before the broker is up"
    env = set(environment(SERVICES[name]))
    if MONGO_ENV & env:
        assert "mongodb" in deps
    if MINIO_ENV & env:
        assert {"minio", SETUP} <= set(deps), f"{name} uses buckets the setup creates"


def test_start_order_has_no_cycle() -> None:
    state: dict[str, str] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert state.get(name) != "open", f"cycle: {' -> '.join((*path, name))}"
        if state.get(name) == "done":
            return
        state[name] = "open"
        for dep in depends_on(name):
            visit(dep, (*path, name))
        state[name] = "done"

    for name in SERVICES:
        visit(name, ())


# -- MinIO and its webhook -----------------------------------------------------------------


def webhook_settings() -> tuple[str, dict[str, str]]:
    """The webhook target id configured on MinIO, and its MINIO_NOTIFY_WEBHOOK_*_<ID> values."""
    prefix = "MINIO_NOTIFY_WEBHOOK_ENABLE_"
    env = environment(SERVICES["minio"])
    ids = [k.removeprefix(prefix) for k in env if k.startswith(prefix)]
    assert len(ids) == 1, f"expected one webhook target, found {ids}"
    target = ids[0]
    suffix = f"_{target}"
    return target, {
        k.removeprefix("MINIO_NOTIFY_WEBHOOK_").removesuffix(suffix): v
        for k, v in env.items()
        if k.startswith("MINIO_NOTIFY_WEBHOOK_") and k.endswith(suffix)
    }


def test_minio_webhook_points_at_minio_source() -> None:
    _, webhook = webhook_settings()
    assert webhook["ENABLE"] == "on"
    prefix = f"http://minio-source:{CONTAINER_PORT}"
    assert webhook["ENDPOINT"].startswith(prefix + "/")
    path = webhook["ENDPOINT"].removeprefix(prefix)
    if not SOURCE_WRITTEN:
        return  # listed in the module's warning; the route check needs minio-source's code
    from minio_source.main import app

    scope = {"type": "http", "method": "POST", "path": path, "root_path": "", "headers": []}
    routed = any(route.matches(scope)[0] is Match.FULL for route in app.api.routes)
    assert routed, f"minio-source has no POST {path}"


def test_webhook_token_and_target_match_minio_source() -> None:
    target, _ = webhook_settings()
    raw_minio = yaml_environment("minio")
    raw_token = raw_minio[f"MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_{target}"]
    for name in ("minio-source", SETUP):
        assert yaml_environment(name)["WEBHOOK_AUTH_TOKEN"] == raw_token
    assert target == VALUES["minio"]["notifyTargetId"], "the chart configures another target"
    if not SOURCE_WRITTEN:
        return  # listed in the module's warning; the default id is in minio-source's code
    from minio_source.config import Settings

    configured = environment(SERVICES[SETUP]).get("NOTIFY_TARGET_ID")
    assert target == (configured or Settings.model_fields["notify_target_id"].default)


def test_webhook_queue_is_on_a_named_volume() -> None:
    _, webhook = webhook_settings()
    named = set(COMPOSE.get("volumes") or {})
    mounts = dict(
        (target, source)
        for source, _, target in (v.partition(":") for v in SERVICES["minio"]["volumes"])
    )
    assert mounts.get(webhook["QUEUE_DIR"]) in named


def test_server_data_is_on_named_volumes() -> None:
    named = set(COMPOSE.get("volumes") or {})
    for name, data_dir in (("mongodb", "/data/db"), ("minio", "/data")):
        mounts = {
            target: source
            for source, _, target in (v.partition(":") for v in SERVICES[name]["volumes"])
        }
        assert mounts.get(data_dir) in named, f"{name}: {data_dir} is not on a named volume"


def test_setup_runs_after_minio_is_healthy() -> None:
    assert depends_on(SETUP) == {"minio": "service_healthy"}
    assert built_from(SETUP) == "minio-source"
    assert environment(SERVICES[SETUP])["MINIO_ENDPOINT"] == "minio:9000"
