"""docker-compose.yml as compose would see it, and what the services themselves declare."""

from __future__ import annotations

import importlib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from fnkit import Function, FunctionSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
VALUES_FILE = ROOT / "charts" / "knative-playbook" / "values.yaml"
DOCKERFILE = "Dockerfile"

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}; $$ is a literal $.
_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}")


class InterpolationError(ValueError):
    """A variable compose would refuse, or one .env.example does not define."""


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as compose reads .env: comments and blank lines ignored."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            if not sep:
                raise InterpolationError(f"{path.name}: not KEY=VALUE: {line!r}")
            env[key.strip()] = value.strip()
    return env


def variables(text: str) -> set[str]:
    """Names of the variables a compose file refers to without a default."""
    return {
        m["name"] for m in _VARIABLE.finditer(text) if m["name"] and (m["op"] or "")[-1:] != "-"
    }


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution, applied to every string of a loaded file."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(m: re.Match[str]) -> str:
        if m[0] == "$$":
            return "$"
        name, op, arg = m["name"], m["op"] or "", m["arg"]
        current = env.get(name)
        unset = current is None or (op.startswith(":") and current == "")
        if op.endswith("-"):
            return arg if unset else str(current)
        if unset:
            raise InterpolationError(f"${{{name}}} is not set ({arg or 'required'})")
        return str(current)

    return _VARIABLE.sub(substitute, value)


def load_compose_raw() -> dict[str, Any]:
    """The compose file with YAML merge keys resolved, variables left as written."""
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return {k: v for k, v in loaded.items() if not k.startswith("x-")}


def load_compose(env: dict[str, str]) -> dict[str, Any]:
    """The compose file as compose sees it, variables substituted from `env`."""
    return {k: interpolate(v, env) for k, v in load_compose_raw().items()}


def load_values() -> dict[str, Any]:
    values = yaml.safe_load(VALUES_FILE.read_text())
    assert isinstance(values, dict)
    return values


@dataclass(frozen=True)
class Port:
    host_ip: str
    host: int
    container: int


def ports(service: dict[str, Any]) -> list[Port]:
    """Published ports, from the short syntax ([IP:]HOST:CONTAINER[/proto]) or the long one."""
    found = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            found.append(
                Port(entry.get("host_ip", ""), int(entry["published"]), int(entry["target"]))
            )
            continue
        parts = str(entry).split("/")[0].rsplit(":", 2)
        if len(parts) == 3:
            found.append(Port(parts[0], int(parts[1]), int(parts[2])))
        elif len(parts) == 2:
            found.append(Port("", int(parts[0]), int(parts[1])))
        else:
            raise AssertionError(f"port {entry!r} is not published on a fixed host port")
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping (compose also allows a list of KEY=VALUE)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def dockerfile_args() -> set[str]:
    text = (ROOT / DOCKERFILE).read_text()
    return set(re.findall(r"^ARG\s+([A-Za-z_][A-Za-z0-9_]*)", text, flags=re.MULTILINE))


def package(service_dir: str) -> str:
    return service_dir.replace("-", "_")


def importable(module: str) -> bool:
    """True when `module` exists in the workspace environment (written and synced)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@dataclass(frozen=True)
class ServiceCode:
    """What the code of one service declares about its configuration."""

    settings_class: type[FunctionSettings]
    function: Function[Any] | None  # None when the module's `app` is not a fnkit Function

    def env_names(self) -> set[str]:
        """Environment variables its settings class reads (upper-cased, as compared)."""
        prefix = str(self.settings_class.model_config.get("env_prefix", ""))
        names = set()
        for name, field in self.settings_class.model_fields.items():
            aliases = [a for a in (field.validation_alias, field.alias) if isinstance(a, str)]
            for alias in aliases or [name]:
                names.add((prefix + alias).upper())
        return names


def settings_class_of(module: ModuleType) -> type[FunctionSettings]:
    """The one FunctionSettings subclass a module uses."""
    app = getattr(module, "app", None)
    for holder in (app, getattr(app, "function", None)):
        settings_class = getattr(holder, "settings_class", None)
        if isinstance(settings_class, type) and issubclass(settings_class, FunctionSettings):
            return settings_class
    found = {
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, FunctionSettings) and v is not FunctionSettings
    }
    if len(found) != 1:
        raise AssertionError(f"{module.__name__}: expected one settings class, found {found}")
    return found.pop()


def service_code(module_name: str) -> ServiceCode:
    module = importlib.import_module(module_name)
    app = getattr(module, "app", None)
    return ServiceCode(settings_class_of(module), app if isinstance(app, Function) else None)
