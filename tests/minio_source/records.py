"""MinIO notification bodies as MinIO sends them (captured from a real server, then templated)."""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import quote_plus

_sequence = itertools.count(0x18EBD8A48EAAB605)


def s3_record(
    bucket: str,
    key: str,
    *,
    etag: str = "5d41402abc4b2a76b9719d911017c592",
    size: int = 5,
    event_name: str = "s3:ObjectCreated:Put",
    sequencer: str | None = None,
) -> dict[str, Any]:
    """One S3 record; the key is form-encoded, as MinIO (Go's url.QueryEscape) does it."""
    return {
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "awsRegion": "",
        "eventTime": "2026-11-27T08:11:17.719Z",
        "eventName": event_name,
        "userIdentity": {"principalId": "minioadmin"},
        "requestParameters": {
            "principalId": "minioadmin",
            "region": "",
            "sourceIPAddress": "127.0.0.1",
        },
        "responseElements": {"x-amz-request-id": "18EBD8A48E9D12FB"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "Config",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "minioadmin"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": {
                "key": quote_plus(key),
                "size": size,
                "eTag": etag,
                "contentType": "image/jpeg",
                "userMetadata": {"content-type": "image/jpeg"},
                "sequencer": sequencer or f"{next(_sequence):X}",
            },
        },
        "source": {"host": "127.0.0.1", "port": "", "userAgent": "MinIO (linux; amd64)"},
    }


def notification(*records: dict[str, Any]) -> dict[str, Any]:
    """The body MinIO posts: the first record's event name and key, and all records."""
    first = records[0]
    return {
        "EventName": first["eventName"],
        "Key": f"{first['s3']['bucket']['name']}/{first['s3']['object']['key']}",
        "Records": list(records),
    }
