"""Image records as image-processor writes them, their objects in real MinIO, and cleanup runs."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import urllib3
from devplane.servers import MinioServer
from minio import Minio
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

RENDITIONS = ("256", "1024")
PREFIX = "processed"


def minio_client(server: MinioServer, access_key: str = "", secret_key: str = "") -> Minio:
    # A pool as large as the upload threads, so that seeding thousands of objects reuses
    # connections instead of opening one per object.
    return Minio(
        server.endpoint,
        access_key=access_key or server.access_key,
        secret_key=secret_key or server.secret_key,
        secure=False,
        http_client=urllib3.PoolManager(maxsize=32, retries=urllib3.Retry(total=2)),
    )


@dataclass
class Store:
    """One test's buckets and images collection, seeded the way image-processor fills them."""

    db: AsyncDatabase[dict[str, Any]]
    minio: Minio
    uploads: str
    processed: str
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(32))

    @property
    def images(self) -> AsyncCollection[dict[str, Any]]:
        return self.db["images"]

    def put(self, bucket: str, key: str, data: bytes = b"x") -> str:
        """Put an object; returns its ETag."""
        result = self.minio.put_object(bucket, key, io.BytesIO(data), len(data))
        return str(result.etag).strip('"')

    async def put_many(self, objects: Iterable[tuple[str, str, bytes]]) -> list[str]:
        loop = asyncio.get_running_loop()
        return list(
            await asyncio.gather(
                *(loop.run_in_executor(self.pool, self.put, b, k, d) for b, k, d in objects)
            )
        )

    def rendition_keys(self, key: str) -> list[str]:
        stem = key.rpartition(".")[0]
        return [f"{PREFIX}/{stem}/{name}.webp" for name in RENDITIONS]

    async def seed(
        self,
        count: int,
        *,
        expired: bool = True,
        with_objects: int | None = None,
        name: str = "img",
        processed_at: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """`count` records, the first `with_objects` of them (default all) with their objects.

        Records without objects stand for uploads whose objects were deleted already.
        """
        now = datetime.now(UTC)
        at = processed_at or (now - timedelta(days=40) if expired else now)
        expires_at = now - timedelta(minutes=5) if expired else now + timedelta(days=30)
        keys = [f"{name}/{uuid.uuid4().hex[:8]}-{i}.jpg" for i in range(count)]
        stored = count if with_objects is None else with_objects
        uploads = [(self.uploads, key, f"original {key}".encode()) for key in keys[:stored]]
        etags = await self.put_many(uploads)
        renditions = [
            (self.processed, rendition, b"webp")
            for key in keys[:stored]
            for rendition in self.rendition_keys(key)
        ]
        await self.put_many(renditions)
        documents = [
            {
                "bucket": self.uploads,
                "key": key,
                "etag": etags[i] if i < stored else uuid.uuid4().hex,
                "status": "processed",
                "renditions": [
                    {"name": n, "bucket": self.processed, "key": rkey}
                    for n, rkey in zip(RENDITIONS, self.rendition_keys(key), strict=True)
                ],
                "processed_at": at,
                "expires_at": expires_at,
            }
            for i, key in enumerate(keys)
        ]
        for start in range(0, len(documents), 5000):
            await self.images.insert_many(documents[start : start + 5000])
        return documents

    def objects(self, bucket: str) -> set[str]:
        return {str(o.object_name) for o in self.minio.list_objects(bucket, recursive=True)}

    def all_objects(self) -> set[tuple[str, str]]:
        return {(self.uploads, k) for k in self.objects(self.uploads)} | {
            (self.processed, k) for k in self.objects(self.processed)
        }

    async def records(self) -> list[dict[str, Any]]:
        return await self.images.find({}).to_list()


def owned(document: dict[str, Any]) -> set[tuple[str, str]]:
    """The objects a record lists: its upload and its renditions."""
    return {(document["bucket"], document["key"])} | {
        (r["bucket"], r["key"]) for r in document["renditions"]
    }


LineHook = Callable[[dict[str, Any], asyncio.subprocess.Process], Awaitable[None]]


@dataclass
class Run:
    """A finished `python -m cleanup`: exit status and its JSON log lines."""

    code: int
    lines: list[dict[str, Any]]

    @property
    def summary(self) -> dict[str, Any]:
        finished = [line for line in self.lines if line.get("msg") == "cleanup finished"]
        assert len(finished) == 1, f"expected one summary line, got {self.lines[-5:]}"
        return finished[0]

    def messages(self, msg: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("msg") == msg]


async def run_cleanup(
    env: dict[str, str],
    *args: str,
    on_line: LineHook | None = None,
) -> Run:
    """Run the job as Kubernetes would, a process of its own; `on_line` sees each log line."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cleanup",
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    lines: list[dict[str, Any]] = []
    assert process.stdout is not None
    async for raw in process.stdout:
        try:
            line = json.loads(raw)
        except ValueError:
            line = {"msg": "(not JSON)", "text": raw.decode(errors="replace")}
        lines.append(line)
        if on_line is not None:
            await on_line(line, process)
    return Run(await process.wait(), lines)


def kill_after_first_batch() -> LineHook:
    async def on_line(line: dict[str, Any], process: asyncio.subprocess.Process) -> None:
        if line.get("msg") == "batch" and process.returncode is None:
            process.send_signal(signal.SIGKILL)

    return on_line
