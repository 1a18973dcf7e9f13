"""Function processes that an end-to-end test starts together and stops together."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from devplane.servers import FunctionProcess, MinioServer


class ProcessGroup:
    """Function processes with their data and `<name>.log` under `root`, stopped in reverse."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[FunctionProcess] = []

    def start(self, name: str, module: str, port: int, env: dict[str, str]) -> FunctionProcess:
        """Start `module` (`package.main:app`) as process `name` on `port`."""
        process = FunctionProcess(
            name,
            port,
            self.root / "data",
            module=module,
            env=env,
            log_path=self.root / f"{name}.log",
        )
        process.start()
        self.started.append(process)
        return process

    def start_devplane(
        self, port: int, env: dict[str, str], extra_values: Path, **more_env: str
    ) -> FunctionProcess:
        """Start devplane on `port`: the chart's routing plus `extra_values`, no cron schedules."""
        return self.start(
            "devplane",
            "devplane.main:app",
            port,
            {
                **env,
                "DEVPLANE_EXTRA_VALUES": str(extra_values),
                "DEVPLANE_URL": f"http://127.0.0.1:{port}",
                "DEVPLANE_CRON": "false",
                **more_env,
            },
        )

    def wait_ready(self, within: float = 60.0) -> None:
        for process in self.started:
            process.wait_ready(within)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Reverse order of start: what started later may depend on what started earlier.
        for process in reversed(self.started):
            process.stop()


def shared_env(mongo_url: str, mongo_db: str, minio: MinioServer) -> dict[str, str]:
    """The environment every function of an end-to-end test shares: one database, one MinIO."""
    return {
        "ENVIRONMENT": "dev",
        "MONGO_URL": mongo_url,
        "MONGO_DB": mongo_db,
        "MINIO_ENDPOINT": minio.endpoint,
        "MINIO_ACCESS_KEY": minio.access_key,
        "MINIO_SECRET_KEY": minio.secret_key,
    }
