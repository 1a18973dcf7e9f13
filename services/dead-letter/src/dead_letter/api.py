"""REST routes: list, show, replay, delete and purge dead letters (OpenAPI at /docs)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fnkit import Unavailable
from pydantic import BeforeValidator

from dead_letter.models import (
    DeadLetter,
    Page,
    PurgeResult,
    ReplayRequest,
    ReplayResult,
    detail,
    summary,
)
from dead_letter.service import DeadLetters
from dead_letter.store import Filters

router = APIRouter(prefix="/dead-letters", tags=["dead letters"])


def _iso_8601(value: object) -> object:
    # pydantic would read `before=1e10` as seconds since 1970: a purge of everything.
    if isinstance(value, str) and re.match(r"\d{4}-\d\d-\d\d", value):
        return value
    raise ValueError("expected an ISO 8601 date-time, such as 2026-01-31T12:00:00Z")


IsoDatetime = Annotated[datetime, BeforeValidator(_iso_8601)]

_ERROR = {
    "description": "See `error.message`.",
    "content": {
        "application/json": {
            "example": {
                "error": {
                    "code": "not_found",
                    "message": "no dead letter with id '3f2a9c1e0b7d4e5f8a6b2c9d1e0f7a3b'",
                }
            }
        }
    },
}


def get_dead_letters(request: Request) -> DeadLetters:
    service: DeadLetters | None = getattr(request.app.state, "dead_letters", None)
    if service is None:
        raise Unavailable("dead-letter is starting; retry shortly")
    return service


DeadLettersDep = Annotated[DeadLetters, Depends(get_dead_letters)]
TypeQuery = Annotated[str | None, Query(max_length=1024, description="Exact event type.")]
SourceQuery = Annotated[str | None, Query(max_length=2048, description="Exact event source.")]
DestinationQuery = Annotated[
    str | None, Query(max_length=2048, description="Exact failed destination (knativeerrordest).")
]


def _utc(moment: datetime | None) -> datetime | None:
    """A time without a zone is taken as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@router.get(
    "",
    response_model=Page,
    summary="List dead letters, newest first.",
    responses={422: _ERROR},
)
async def list_dead_letters(
    service: DeadLettersDep,
    type: TypeQuery = None,
    source: SourceQuery = None,
    destination: DestinationQuery = None,
    since: Annotated[IsoDatetime | None, Query(description="Dead-lettered at or after.")] = None,
    until: Annotated[IsoDatetime | None, Query(description="Dead-lettered before.")] = None,
    limit: Annotated[int, Query(ge=1, description="Page size (at most MAX_PAGE_SIZE).")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=64, description="`next_cursor` of the previous page.")
    ] = None,
) -> Page:
    filters = Filters(type, source, destination, _utc(since), _utc(until))
    documents, next_cursor = await service.page(filters, limit, cursor)
    return Page(items=[summary(d) for d in documents], next_cursor=next_cursor)


@router.get(
    "/{letter_id}",
    response_model=DeadLetter,
    summary="One dead letter: the original event, the error, replays.",
    responses={404: _ERROR},
)
async def get_dead_letter(letter_id: str, service: DeadLettersDep) -> DeadLetter:
    return detail(await service.get(letter_id))


@router.post(
    "/{letter_id}/replay",
    response_model=ReplayResult,
    summary="Send the original event again (to the broker by default) and record the attempt.",
    responses={
        404: _ERROR,
        422: _ERROR,
        502: {
            "description": "The target answered with a non-2xx status; the attempt is "
            "recorded and the dead letter kept."
        },
        503: {
            "description": "The target was unreachable or timed out; the attempt is "
            "recorded and the dead letter kept."
        },
    },
)
async def replay_dead_letter(
    letter_id: str, service: DeadLettersDep, request: ReplayRequest | None = None
) -> ReplayResult:
    replay = await service.replay(letter_id, (request or ReplayRequest()).target)
    return ReplayResult.model_validate({**replay, "dead_letter_id": letter_id})


@router.delete(
    "/{letter_id}",
    status_code=204,
    response_class=Response,
    summary="Delete one dead letter (204 whether or not it existed).",
)
async def delete_dead_letter(letter_id: str, service: DeadLettersDep) -> Response:
    await service.delete(letter_id)
    return Response(status_code=204)


@router.delete(
    "",
    response_model=PurgeResult,
    summary="Purge the dead letters matching every given filter (at least one).",
    responses={422: _ERROR},
)
async def purge_dead_letters(
    service: DeadLettersDep,
    type: TypeQuery = None,
    source: SourceQuery = None,
    destination: DestinationQuery = None,
    before: Annotated[IsoDatetime | None, Query(description="Dead-lettered before.")] = None,
) -> PurgeResult:
    filters = Filters(type, source, destination, until=_utc(before))
    return PurgeResult(deleted=await service.purge(filters))
