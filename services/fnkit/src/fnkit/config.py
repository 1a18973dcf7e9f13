"""Configuration from the environment, through pydantic-settings.

Every service subclasses `FunctionSettings` to add its own fields. Nothing here has a
production-worthy secret as a default: the defaults are the local development values, and
`refuse_placeholder_secrets` stops a non-dev deployment that forgot to replace them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values that are fine on a laptop and fatal anywhere else.
PLACEHOLDER_SECRETS = frozenset({"minioadmin", "changeme", "change-me", "password", "secret", ""})


class FunctionSettings(BaseSettings):
    """Settings every function shares; environment variables have the same names, upper-cased."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

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
        default=120.0,
        gt=0,
        description="How long a delivery owns an event key before another may take over.",
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
