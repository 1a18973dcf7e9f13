"""Where Workflows go: the Kubernetes API on a cluster (Argo's controller runs them), or
devplane's workflow runner locally. Both answer 201 Created or 409 AlreadyExists; both are
success here, since the name derives from the order.

On a cluster the function calls the API server with its own ServiceAccount's token (a Role
that may create and get Workflows in its namespace, nothing else), read from the mounted
projected volume on every call: the kubelet rotates it. No Kubernetes client library: one POST
does not need one.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
from fnkit import Unavailable

log = logging.getLogger("workflow_launcher")

Outcome = Literal["created", "exists"]


class Backend(Protocol):
    name: str

    async def submit(self, manifest: dict[str, Any]) -> Outcome: ...

    async def aclose(self) -> None: ...


def _outcome(response: httpx.Response, where: str) -> Outcome:
    if response.status_code in (200, 201):
        return "created"
    if response.status_code == 409:
        return "exists"
    # Anything else (401/403: RBAC; 404: Argo's CRDs missing; 422: a template devplane cannot
    # run; 5xx) is retried by the broker and finally dead-lettered, with the reason logged.
    raise Unavailable(
        f"{where} refused the Workflow: HTTP {response.status_code}: {response.text[:300]}"
    )


@dataclass
class Kubernetes:
    """POST /apis/argoproj.io/v1alpha1/namespaces/<ns>/workflows, as the pod's ServiceAccount."""

    api_url: str
    account_dir: Path
    namespace: str | None
    timeout: float
    name: str = "kubernetes"
    _client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            ca = self.account_dir / "ca.crt"
            verify: ssl.SSLContext | bool = (
                ssl.create_default_context(cafile=str(ca)) if ca.exists() else True
            )
            self._client = httpx.AsyncClient(timeout=self.timeout, verify=verify)
        return self._client

    async def submit(self, manifest: dict[str, Any]) -> Outcome:
        namespace = self.namespace or (self.account_dir / "namespace").read_text().strip()
        manifest = {**manifest, "metadata": {**manifest["metadata"], "namespace": namespace}}
        token = (self.account_dir / "token").read_text().strip()
        url = (
            f"{self.api_url.rstrip('/')}/apis/argoproj.io/v1alpha1/namespaces/{namespace}/workflows"
        )
        try:
            response = await self._http().post(
                url, json=manifest, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as exc:
            raise Unavailable(f"the Kubernetes API is unreachable: {exc}") from None
        return _outcome(response, "the Kubernetes API")

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


@dataclass
class Devplane:
    """POST <devplane>/workflows: devplane runs the same WorkflowTemplate."""

    url: str
    timeout: float
    name: str = "devplane"
    _client: httpx.AsyncClient | None = None

    async def submit(self, manifest: dict[str, Any]) -> Outcome:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        try:
            response = await self._client.post(f"{self.url.rstrip('/')}/workflows", json=manifest)
        except httpx.HTTPError as exc:
            raise Unavailable(f"devplane is unreachable: {exc}") from None
        return _outcome(response, "devplane")

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
