"""The webhook MinIO posts bucket notifications to."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fnkit import ContextDep, PayloadTooLarge, UnsupportedMediaType
from pydantic import BaseModel

from minio_source.forward import forward
from minio_source.notifications import check_bearer, parse_notification

router = APIRouter(prefix="/minio", tags=["minio"])


class Accepted(BaseModel):
    """What the broker accepted: one CloudEvent per S3 record."""

    accepted: int
    ids: list[str]


_PROBED: dict[int | str, dict[str, Any]] = {
    200: {"description": "Reachable (an empty answer).", "content": {}}
}


@router.get(
    "/webhook",
    summary="Reachability check (older MinIO releases probe the endpoint before posting).",
    response_class=Response,
    responses=_PROBED,
)
@router.head("/webhook", summary="Reachability check.", response_class=Response, responses=_PROBED)
async def probe() -> Response:
    return Response(status_code=200)


@router.post(
    "/webhook",
    summary="Receive a MinIO notification and publish its records as CloudEvents.",
    responses={
        401: {"description": "No valid bearer token."},
        400: {"description": "Not a MinIO notification."},
        413: {"description": "Larger than MAX_EVENT_BYTES."},
        415: {"description": "Not JSON."},
        503: {"description": "The broker did not accept an event; MinIO keeps it and retries."},
    },
)
async def receive(
    request: Request,
    ctx: ContextDep,
    authorization: Annotated[str | None, Header()] = None,
    content_type: Annotated[str, Header()] = "application/json",
) -> Accepted:
    check_bearer(authorization, ctx.settings.webhook_auth_token.get_secret_value())
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise UnsupportedMediaType(f"MinIO posts application/json, not {content_type!r}")
    body = await _body(request, ctx.settings.max_event_bytes)
    ids = await forward(ctx, parse_notification(body))
    return Accepted(accepted=len(ids), ids=ids)


async def _body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"notification body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
