"""Clients outside a Function: the Context a run-to-completion job opens with open_context."""

from __future__ import annotations

import io

import pytest
from fnkit.clients import open_context
from pydantic import SecretStr
from pymongo.errors import InvalidOperation

from tests.fnkit.helpers import Sink, settings_from
from tests.fnkit.sample_functions import SampleSettings

pytestmark = pytest.mark.integration


async def test_a_job_context_reaches_mongo_minio_and_the_sink(
    service_env: dict[str, str], sink: Sink
) -> None:
    settings = settings_from(service_env, k_sink=sink.url)

    async with open_context("a-job", settings, mongo=True, minio=True) as ctx:
        await ctx.db["things"].insert_one({"_id": 1})
        found = await ctx.db["things"].find_one({"_id": 1})
        bucket = f"job-{service_env['MONGO_DB'].removeprefix('t_')[:12]}"
        await ctx.run_blocking(ctx.minio.make_bucket, bucket)
        await ctx.run_blocking(ctx.minio.put_object, bucket, "k", io.BytesIO(b"x"), 1)
        await ctx.emit(ctx.event("io.knative-playbook.test.done.v1", {"n": 1}))

    assert found == {"_id": 1}
    assert [r.headers["ce-source"] for r in sink.requests] == ["/knative-playbook/a-job"]
    with pytest.raises(InvalidOperation):  # the clients are closed with the block
        await ctx.db["things"].find_one({"_id": 1})


async def test_a_job_context_refuses_placeholder_secrets_outside_dev() -> None:
    settings = SampleSettings(
        environment="production", mongo_url=SecretStr("mongodb://app:changeme@db:27017")
    )

    with pytest.raises(RuntimeError, match=r"a-job: refusing .* MONGO_URL"):
        async with open_context("a-job", settings, mongo=True):
            pass
