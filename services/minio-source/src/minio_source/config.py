"""minio-source's settings: the webhook's token, and what the setup command creates."""

from __future__ import annotations

from typing import Self

from fnkit import FunctionSettings
from fnkit.config import PLACEHOLDER_SECRETS
from pydantic import Field, SecretStr, model_validator


class Settings(FunctionSettings):
    """Environment variables have the same names, upper-cased."""

    webhook_auth_token: SecretStr = Field(
        default=SecretStr("changeme"),
        description="Bearer token MinIO sends (MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_<ID> on MinIO).",
    )
    uploads_bucket: str = Field(
        default="uploads", description="Bucket whose object events become CloudEvents."
    )
    processed_bucket: str = Field(
        default="processed", description="Bucket the setup command creates for renditions."
    )
    notify_target_id: str = Field(
        default="PLAYBOOK",
        pattern=r"^[A-Za-z0-9_]+$",
        description="<ID> of MinIO's MINIO_NOTIFY_WEBHOOK_*_<ID> variables (case-sensitive).",
    )
    notify_events: list[str] = Field(
        default=["s3:ObjectCreated:*"],
        min_length=1,
        description="S3 events of the uploads bucket that are sent to the webhook.",
    )

    @property
    def notify_arn(self) -> str:
        return f"arn:minio:sqs::{self.notify_target_id}:webhook"

    @model_validator(mode="after")
    def _real_token_outside_dev(self) -> Self:
        if (
            self.environment != "dev"
            and self.webhook_auth_token.get_secret_value() in PLACEHOLDER_SECRETS
        ):
            raise ValueError(
                "WEBHOOK_AUTH_TOKEN holds a development placeholder; set a real token "
                f"(ENVIRONMENT={self.environment})"
            )
        return self
