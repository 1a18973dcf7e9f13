"""Configuration from the environment: pydantic models filled from environment variables.

Every service subclasses `FunctionSettings` to add its own fields. Nothing here has a
production-worthy secret as a default: the defaults are the local development values, and
`refuse_placeholder_secrets` stops a non-dev deployment that forgot to replace them.

The environment is read here rather than by pydantic-settings: importing it (and
python-dotenv) cost every function about 60 ms of CPU at start, an eighth of the echo
function's whole cold start, for the one thing fnkit asked of it. The rules are
pydantic-settings' defaults: a field's variable is its name (or its alias, after `env_prefix`)
in any case; list, dict, set, tuple, model and dataclass fields are JSON unless marked
`NoDecode`; other values go to pydantic as strings; keyword arguments win over the environment.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
from collections import deque
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic.fields import FieldInfo


class NoDecode:
    """`Annotated[list[str], NoDecode]`: the variable is passed on as a string, not as JSON
    (for a field that parses its own format, such as a comma-separated list)."""


# Values that are fine on a laptop and fatal anywhere else.
PLACEHOLDER_SECRETS = frozenset({"minioadmin", "changeme", "change-me", "password", "secret", ""})


class FunctionSettings(BaseModel):
    """Settings every function shares; environment variables have the same names, upper-cased."""

    # pydantic-settings' own defaults: defaults are validated too, and any type may be a field.
    # defer_build: every service subclasses this class and builds the schema of its own
    # subclass; building this one's too, at import, cost each of them start-up CPU for nothing.
    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        validate_default=True,
        arbitrary_types_allowed=True,
        defer_build=True,
    )

    def __init__(self, **values: Any) -> None:
        super().__init__(**{**_from_environment(type(self)), **values})

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for name, field in cls.model_fields.items():
            if field.validation_alias is not None and not isinstance(field.validation_alias, str):
                raise TypeError(
                    f"{cls.__name__}.{name}: one environment variable per field, so a "
                    "validation_alias must be a plain string"
                )

    environment: Literal["dev", "test", "production"] = Field(
        default="production",
        description="'dev' allows placeholder secrets; anything else refuses them.",
    )
    log_level: str = "INFO"
    k_sink: str | None = Field(
        default=None,
        description="Where emitted events go: injected by SinkBinding, or devplane locally.",
    )
    event_source: str | None = Field(
        default=None,
        description="`source` of events this function emits; default /knative-playbook/NAME.",
    )
    max_event_bytes: int = Field(default=1 << 20, gt=0, description="Larger event bodies get 413.")

    mongo_url: SecretStr = SecretStr("mongodb://localhost:27017")
    mongo_db: str = "playbook"
    mongo_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Server selection timeout: how long an operation waits for Mongo.",
    )

    minio_endpoint: str = "localhost:9000"
    minio_access_key: str = "minioadmin"
    minio_secret_key: SecretStr = SecretStr("minioadmin")
    minio_secure: bool = False
    minio_region: str = "us-east-1"

    blocking_workers: int = Field(
        default=8, gt=0, description="Threads for blocking work (MinIO's sync client, image work)."
    )
    readiness_timeout_seconds: float = Field(default=2.0, gt=0)

    emit_timeout_seconds: float = Field(default=5.0, gt=0, description="Per attempt.")
    emit_attempts: int = Field(default=4, ge=1)
    emit_backoff_seconds: float = Field(
        default=0.1, ge=0, description="First retry delay; doubles."
    )

    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector (e.g. http://otel-collector:4318): invocation spans "
        "are exported there; needs fnkit[otel]. The other OTEL_* variables apply as usual.",
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        default=None, description="The traces endpoint itself, instead of the one above."
    )
    otel_sdk_disabled: bool = Field(default=False, description="True: no tracing at all.")

    idempotency_lease_seconds: float = Field(
        default=10.0,
        gt=0,
        description=(
            "How long after its holder stops renewing it (it renews every third of this while"
            " the work runs) a claim on an event key may be taken over by a redelivery; keep it"
            " below the Triggers' retry budget, so that a crashed handler's event is retried."
        ),
    )

    def placeholder_secrets(self, *, mongo: bool, minio: bool) -> list[str]:
        """Names of the secrets in use that still hold a development placeholder."""
        found = []
        if minio and (
            self.minio_secret_key.get_secret_value() in PLACEHOLDER_SECRETS
            or self.minio_access_key in PLACEHOLDER_SECRETS
        ):
            found.append("MINIO_ACCESS_KEY/MINIO_SECRET_KEY")
        if mongo:
            url = self.mongo_url.get_secret_value()
            if any(f":{p}@" in url for p in PLACEHOLDER_SECRETS if p):
                found.append("MONGO_URL")
        return found

    @property
    def tracing(self) -> bool:
        """Whether invocation spans are exported."""
        endpoint = self.otel_exporter_otlp_traces_endpoint or self.otel_exporter_otlp_endpoint
        return bool(endpoint) and not self.otel_sdk_disabled


def _from_environment(settings: type[FunctionSettings]) -> dict[str, Any]:
    """The fields' values found in the environment, keyed as the model's constructor takes them."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    environ = {name.lower(): value for name, value in os.environ.items()}
    found: dict[str, Any] = {}
    for name, field in settings.model_fields.items():
        key = field.validation_alias or field.alias or name
        assert isinstance(key, str)  # checked when the class was made
        raw = environ.get((prefix + key).lower())
        if raw is None:
            continue
        if _decodes_json(field):
            try:
                found[key] = json.loads(raw)
            except ValueError as exc:
                raise ValueError(f"{(prefix + key).upper()} is not valid JSON: {exc}") from None
        else:
            found[key] = raw
    return found


def _decodes_json(field: FieldInfo) -> bool:
    return NoDecode not in field.metadata and _is_complex(field.annotation)


def _is_complex(annotation: Any) -> bool:
    """Whether pydantic-settings would read this type's variable as JSON."""
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return any(_is_complex(arg) for arg in get_args(annotation) if arg is not type(None))
    if origin is Literal:
        return False
    kind = origin if isinstance(origin, type) else annotation
    if not isinstance(kind, type) or issubclass(kind, str | bytes):
        return False
    complex_kinds = (BaseModel, Mapping, Sequence, AbstractSet, tuple, set, frozenset, deque)
    return issubclass(kind, complex_kinds) or dataclasses.is_dataclass(kind)
