"""devplane's settings, from DEVPLANE_* environment variables (plus fnkit's own)."""

from __future__ import annotations

from pathlib import Path

from fnkit import FunctionSettings
from pydantic import Field

from devplane.config import DEFAULT_URL_TEMPLATE, find_chart_values


class DevplaneSettings(FunctionSettings):
    devplane_chart_values: Path | None = Field(
        default=None,
        description="The chart's values.yaml; found from the working directory upwards when unset.",
    )
    devplane_extra_values: str = Field(
        default="",
        description="Comma-separated values files merged over the chart's, in "
        "order, like `helm -f`.",
    )
    devplane_subscriber_url: str = Field(
        default=DEFAULT_URL_TEMPLATE,
        description="A function's URL from its name and "
        "localPort: `{name}` and `{port}` are replaced (compose: http://{name}:8080).",
    )
    devplane_url: str = Field(
        default="http://127.0.0.1:8100",
        description="This broker's own URL: K_SINK of cron "
        "jobs, and knativeerrordest when a reply could not be routed.",
    )
    devplane_queue_capacity: int = Field(
        default=10_000,
        gt=0,
        description="Deliveries one subscriber's queue holds before ingress answers 503.",
    )
    devplane_workers: int = Field(
        default=16, gt=0, description="Concurrent deliveries per subscriber."
    )
    devplane_event_log_size: int = Field(
        default=2_000, gt=0, description="Events kept for GET /events."
    )
    devplane_default_timeout_seconds: float = Field(
        default=60.0, gt=0, description="Per-attempt timeout of Triggers without `timeout`."
    )
    devplane_cron: bool = Field(default=True, description="Run CronJobs on their schedules.")
    devplane_drain_seconds: float = Field(
        default=5.0, ge=0, description="On shutdown, how long queued deliveries may finish."
    )
    devplane_duplicate_ratio: float = Field(
        default=0.0, ge=0, le=1, description="Knob: share of deliveries sent twice."
    )
    devplane_delay_seconds: float = Field(
        default=0.0, ge=0, description="Knob: extra delay before every delivery attempt."
    )
    devplane_workflows: Path | None = Field(
        default=None,
        description="The folder of WorkflowTemplates (*.yaml); the chart's `workflows` folder "
        "(a symlink to the repository's workflows/) when unset.",
    )
    devplane_workflow_history: int = Field(
        default=1_000, gt=0, description="Finished workflows kept for GET /workflows."
    )

    def values_files(self) -> list[Path]:
        chart = self.devplane_chart_values or find_chart_values()
        extra = [Path(p.strip()) for p in self.devplane_extra_values.split(",") if p.strip()]
        return [chart, *extra]

    def workflows_folder(self) -> Path:
        return self.devplane_workflows or self.values_files()[0].parent / "workflows"

    def job_env(self) -> dict[str, str]:
        """What a CronJob's container gets on a cluster, pointing at the local servers."""
        return {
            "K_SINK": self.devplane_url,
            "ENVIRONMENT": self.environment,
            "MONGO_URL": self.mongo_url.get_secret_value(),
            "MINIO_ENDPOINT": self.minio_endpoint,
            "MINIO_ACCESS_KEY": self.minio_access_key,
            "MINIO_SECRET_KEY": self.minio_secret_key.get_secret_value(),
            "MINIO_SECURE": str(self.minio_secure).lower(),
        }
