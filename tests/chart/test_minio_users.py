"""The chart's per-function MinIO users, against the real MinIO server and its admin API."""

from __future__ import annotations

import importlib.util
import io
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from minio import Minio
from minio.credentials.providers import StaticProvider
from minio.error import S3Error
from minio.minioadmin import MinioAdmin

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).parents[2] / "charts" / "knative-playbook" / "files" / "minio_users.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("minio_users", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


minio_users = _load()


@pytest.fixture
def buckets(minio_server: Any) -> dict[str, str]:
    root = Minio(
        minio_server.endpoint, minio_server.access_key, minio_server.secret_key, secure=False
    )
    names = {role: f"{role}-{uuid.uuid4().hex[:8]}" for role in ("uploads", "processed", "other")}
    for name in names.values():
        root.make_bucket(name)
        root.put_object(name, "seed.txt", io.BytesIO(b"seed"), 4)
    return names


def _admin(server: Any) -> MinioAdmin:
    return MinioAdmin(
        endpoint=server.endpoint,
        secure=False,
        credentials=StaticProvider(server.access_key, server.secret_key),
    )


def _client(server: Any, access: str, secret: str) -> Minio:
    return Minio(server.endpoint, access, secret, secure=False)


def _denied(call: Any) -> bool:
    try:
        call()
    except S3Error as exc:
        return exc.code == "AccessDenied"
    return False


def test_a_function_user_reaches_its_buckets_at_its_level_and_nothing_else(minio_server, buckets):
    user = f"fn-{uuid.uuid4().hex[:8]}"
    config = [
        {
            "accessKey": user,
            "secretKeyEnv": "SK",
            "buckets": {buckets["uploads"]: "read", buckets["processed"]: "readwrite"},
        }
    ]
    env = {"SK": "s3cret-" + uuid.uuid4().hex}

    assert minio_users.apply(_admin(minio_server), config, env) == [user]

    fn = _client(minio_server, user, env["SK"])
    assert fn.get_object(buckets["uploads"], "seed.txt").read() == b"seed"
    assert [o.object_name for o in fn.list_objects(buckets["uploads"])] == ["seed.txt"]
    assert _denied(lambda: fn.put_object(buckets["uploads"], "x", io.BytesIO(b"x"), 1))
    assert _denied(lambda: fn.remove_object(buckets["uploads"], "seed.txt"))
    fn.put_object(buckets["processed"], "r.webp", io.BytesIO(b"r"), 1)
    fn.remove_object(buckets["processed"], "r.webp")
    assert _denied(lambda: fn.get_object(buckets["other"], "seed.txt"))
    assert _denied(lambda: list(fn.list_objects(buckets["other"])))
    assert _denied(lambda: fn.make_bucket(f"new-{uuid.uuid4().hex[:8]}"))


def test_rerunning_narrows_access_and_rotates_the_key(minio_server, buckets):
    admin = _admin(minio_server)
    user = f"fn-{uuid.uuid4().hex[:8]}"
    first = {"SK": "first-" + uuid.uuid4().hex}
    second = {"SK": "second-" + uuid.uuid4().hex}
    wide = [
        {
            "accessKey": user,
            "secretKeyEnv": "SK",
            "buckets": {buckets["uploads"]: "readwrite", buckets["other"]: "read"},
        }
    ]
    narrow = [{"accessKey": user, "secretKeyEnv": "SK", "buckets": {buckets["uploads"]: "read"}}]

    minio_users.apply(admin, wide, first)
    minio_users.apply(admin, narrow, second)

    with pytest.raises(S3Error) as old_key:
        _client(minio_server, user, first["SK"]).list_buckets()
    assert old_key.value.code in ("SignatureDoesNotMatch", "InvalidAccessKeyId")
    fn = _client(minio_server, user, second["SK"])
    assert fn.get_object(buckets["uploads"], "seed.txt").read() == b"seed"
    assert _denied(lambda: fn.get_object(buckets["other"], "seed.txt"))
    assert _denied(lambda: fn.put_object(buckets["uploads"], "x", io.BytesIO(b"x"), 1))


def test_a_missing_secret_key_is_refused_before_anything_is_created(minio_server):
    user = f"fn-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ValueError, match="SK_MISSING"):
        minio_users.apply(
            _admin(minio_server),
            [{"accessKey": user, "secretKeyEnv": "SK_MISSING", "buckets": {"uploads": "read"}}],
            {},
        )
    assert user not in _admin(minio_server).user_list()


def test_policies_name_only_the_given_buckets():
    document = minio_users.policy({"uploads": "read", "processed": "write"})
    resources = {r for s in document["Statement"] for r in s["Resource"]}
    assert resources == {
        "arn:aws:s3:::uploads",
        "arn:aws:s3:::uploads/*",
        "arn:aws:s3:::processed",
        "arn:aws:s3:::processed/*",
    }
    actions = {a for s in document["Statement"] for a in s["Action"]}
    assert "s3:PutObject" in actions and "s3:*" not in actions
    with pytest.raises(ValueError):
        minio_users.policy({"uploads": "admin"})
