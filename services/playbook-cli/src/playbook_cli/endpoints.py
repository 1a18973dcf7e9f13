"""Where the platform's parts answer: one URL setting for make dev, compose and a cluster.

- make dev and docker compose publish every function on its own local port: the default URL
  template `http://127.0.0.1:{port}` (`{service}` is also replaced) reaches them all.
- On a cluster, port-forward the Knative gateway and give its URL without placeholders: each
  function is then addressed by its Host header, `<service>.<namespace>.svc.cluster.local`.
  The broker is elsewhere there (Knative's broker ingress): give it with `--broker`.
- `PLAYBOOK_<SERVICE>_URL` (e.g. PLAYBOOK_DEAD_LETTER_URL) points one service elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

# The localPort of each function in the chart's values.yaml (tests check they agree).
PORTS: Final = {
    "devplane": 8100,
    "products-api": 8101,
    "minio-source": 8102,
    "image-processor": 8103,
    "orders-api": 8104,
    "order-steps": 8105,
    "workflow-launcher": 8106,
    "bulk-jobs": 8107,
    "item-processor": 8108,
    "job-aggregator": 8109,
    "dead-letter": 8110,
}
DEFAULT_URL: Final = "http://127.0.0.1:{port}"
DEFAULT_NAMESPACE: Final = "knative-playbook"
DEFAULT_MINIO: Final = "127.0.0.1:9000"
DEV_MINIO_KEY: Final = "minioadmin"  # make dev's MinIO; compose and clusters set their own


class Unreachable(Exception):
    """A part of the platform did not answer; the message says which and what to check."""


@dataclass(frozen=True)
class Endpoints:
    url: str = DEFAULT_URL
    broker: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    minio: str = DEFAULT_MINIO
    minio_access_key: str = DEV_MINIO_KEY
    minio_secret_key: str = DEV_MINIO_KEY
    minio_secure: bool = False
    timeout: float = 30.0
    services: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Endpoints:
        env = os.environ
        return cls(
            url=env.get("PLAYBOOK_URL") or DEFAULT_URL,
            broker=env.get("PLAYBOOK_BROKER") or None,
            namespace=env.get("PLAYBOOK_NAMESPACE") or DEFAULT_NAMESPACE,
            minio=env.get("PLAYBOOK_MINIO") or DEFAULT_MINIO,
            minio_access_key=env.get("PLAYBOOK_MINIO_ACCESS_KEY") or DEV_MINIO_KEY,
            minio_secret_key=env.get("PLAYBOOK_MINIO_SECRET_KEY") or DEV_MINIO_KEY,
            minio_secure=env.get("PLAYBOOK_MINIO_SECURE", "").lower() in ("1", "true", "yes"),
            services={
                name: env[variable]
                for name in PORTS
                if env.get(variable := f"PLAYBOOK_{name.upper().replace('-', '_')}_URL")
            },
        )

    @property
    def templated(self) -> bool:
        """Whether `url` names each service (local ports) or is one gateway (a cluster)."""
        return "{port}" in self.url or "{service}" in self.url

    def base(self, service: str) -> tuple[str, dict[str, str]]:
        """A service's base URL, and the headers that route to it."""
        if service in self.services:
            return self.services[service].rstrip("/"), {}
        if self.templated:
            if service not in PORTS and "{port}" in self.url:
                raise Unreachable(f"no local port known for {service!r}; known: {', '.join(PORTS)}")
            return self.url.format(service=service, port=PORTS.get(service, 0)).rstrip("/"), {}
        return self.url.rstrip("/"), {"Host": f"{service}.{self.namespace}.svc.cluster.local"}

    def broker_url(self) -> str:
        """Where events are sent: --broker, else devplane (make dev, compose)."""
        if self.broker:
            return self.broker
        url, headers = self.base("devplane")
        if headers:
            raise Unreachable(
                "no broker URL: on a cluster, port-forward Knative's broker ingress and pass "
                "--broker http://127.0.0.1:PORT/NAMESPACE/default (or set PLAYBOOK_BROKER)"
            )
        return url + "/"

    def target(self, to: str) -> tuple[str, dict[str, str]]:
        """`broker`, a function's name, or a URL -> (URL, headers)."""
        if to == "broker":
            return self.broker_url(), {}
        if to.startswith(("http://", "https://")):
            return to, {}
        url, headers = self.base(to)
        return url + "/", headers

    def client(self, service: str) -> httpx.Client:
        url, headers = self.base(service)
        return httpx.Client(base_url=url, headers=headers, timeout=self.timeout)


def request(client: httpx.Client, method: str, path: str, **kwargs: object) -> httpx.Response:
    """One request; a refused connection or a timeout becomes Unreachable with a hint."""
    try:
        return client.request(method, path, **kwargs)  # type: ignore[arg-type]
    except httpx.TransportError as exc:
        where = f"{client.base_url}{path}"
        host = client.headers.get("host", "")
        routed = f" (Host: {host})" if host and host not in str(client.base_url) else ""
        raise Unreachable(
            f"{where}{routed} did not answer ({type(exc).__name__}: {exc or 'no detail'}); "
            "is the platform running (make dev, docker compose up) or, on a cluster, "
            "are PLAYBOOK_URL and PLAYBOOK_BROKER set to the port-forwards?"
        ) from exc


class ApiError(Exception):
    """A service answered with an error status; the message is its own explanation."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def checked(response: httpx.Response) -> Any:
    """The JSON body of a successful response; ApiError with the service's message otherwise."""
    if response.is_success:
        return response.json() if response.content else None
    try:
        body = response.json()
        message = body["error"]["message"] if isinstance(body.get("error"), dict) else body
    except (ValueError, KeyError, TypeError, AttributeError):
        message = response.text[:500] or response.reason_phrase
    raise ApiError(response.status_code, str(message))
