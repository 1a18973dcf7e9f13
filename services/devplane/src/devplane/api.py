"""devplane's REST API, for humans and tests: the event log, routes, cron and knobs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query
from fnkit import NotFound
from fnkit.rest import error_responses
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from devplane.main import Plane


class KnobsUpdate(BaseModel):
    """Knobs to change; the ones left out keep their value."""

    # Strict: `true` is not a ratio of 1.0, nor `1` a paused flag.
    model_config = ConfigDict(extra="forbid", strict=True)

    duplicate_ratio: float | None = Field(default=None, ge=0, le=1)
    delay_seconds: float | None = Field(default=None, ge=0)
    paused: bool | None = None


def router(plane: Plane) -> APIRouter:
    api = APIRouter()

    @api.get("/events", tags=["events"], summary="Recent events, newest first, with deliveries.")
    async def list_events(
        type: Annotated[str | None, Query(description="Exact event type.")] = None,
        source: Annotated[str | None, Query(description="Exact event source.")] = None,
        id: Annotated[str | None, Query(description="Event id.")] = None,
        after: Annotated[
            int, Query(ge=0, description="Only events whose `seq` is greater: a cursor.")
        ] = 0,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 50,
    ) -> dict[str, Any]:
        records = plane.events.query(type=type, source=source, id=id, after=after, limit=limit)
        return {"events": [record.view() for record in records]}

    @api.get("/triggers", tags=["events"], summary="The routing table and queue depths.")
    async def list_triggers() -> dict[str, Any]:
        return {"triggers": plane.broker.routes(), "queues": plane.broker.queues()}

    @api.get("/cron", tags=["cron"], summary="CronJobs with their next and recent runs.")
    async def list_cron() -> dict[str, Any]:
        return {"jobs": [plane.cron.view(name) for name in plane.cron.jobs]}

    @api.get(
        "/cron/{name}",
        tags=["cron"],
        summary="One CronJob and its recent runs.",
        responses=error_responses(404),
    )
    async def show_cron(name: str) -> dict[str, Any]:
        _job(plane, name)
        return plane.cron.view(name)

    @api.post(
        "/cron/{name}/run",
        tags=["cron"],
        status_code=202,
        summary="Start a run of the job now.",
        responses=error_responses(404),
    )
    async def run_cron(name: str) -> dict[str, Any]:
        _job(plane, name)
        return plane.cron.run_now(name).view()

    @api.get("/knobs", tags=["knobs"], summary="Fault-injection knobs.")
    async def show_knobs() -> dict[str, Any]:
        return plane.knobs.view()

    @api.post("/knobs", tags=["knobs"], summary="Change fault-injection knobs.")
    async def set_knobs(update: KnobsUpdate) -> dict[str, Any]:
        if update.duplicate_ratio is not None:
            plane.knobs.duplicate_ratio = update.duplicate_ratio
        if update.delay_seconds is not None:
            plane.knobs.delay_seconds = update.delay_seconds
        if update.paused is not None:
            plane.knobs.paused = update.paused
        return plane.knobs.view()

    return api


def _job(plane: Plane, name: str) -> None:
    if name not in plane.cron.jobs:
        raise NotFound(f"no CronJob {name!r}; jobs: {', '.join(plane.cron.jobs) or 'none'}")
