"""HTTP for bulk jobs: status codes, headers and parameters; the logic is in service.py."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fnkit import Unavailable
from fnkit.rest import error_responses

from bulk_jobs.models import JobRequest, JobView, ResultPage
from bulk_jobs.service import BulkJobs

router = APIRouter(prefix="/jobs", tags=["jobs"])

JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="The job's id.")]


def get_jobs(request: Request) -> BulkJobs:
    jobs: BulkJobs | None = getattr(request.app.state, "jobs", None)
    if jobs is None:
        raise Unavailable("bulk-jobs is starting; retry shortly")
    return jobs


JobsDep = Annotated[BulkJobs, Depends(get_jobs)]


@router.post(
    "",
    status_code=202,
    summary="Submit a bulk job: items inline, or a JSON Lines object in MinIO.",
    responses={
        202: {
            "description": "Accepted: the items are being fanned out.",
            "headers": {"Location": {"description": "The job.", "schema": {"type": "string"}}},
        },
        **error_responses(413, 422, 503),
    },
)
async def submit_job(body: JobRequest, response: Response, jobs: JobsDep) -> JobView:
    """One `io.knative-playbook.item.requested.v1` per item follows; watch `GET /jobs/{id}`."""
    if body.items is not None:
        job = await jobs.submit_items(body.items)
    else:
        assert body.source is not None
        job = await jobs.submit_object(body.source)
    response.headers["Location"] = f"/jobs/{job.id}"
    return job


@router.get(
    "/{job_id}",
    summary="A job and its progress.",
    responses=error_responses(404, 422, 503),
)
async def get_job(job_id: JobId, jobs: JobsDep) -> JobView:
    return await jobs.view(job_id)


@router.get(
    "/{job_id}/results",
    summary="The job's item results in item order, a page at a time.",
    responses=error_responses(404, 422, 503),
)
async def list_results(
    job_id: JobId,
    jobs: JobsDep,
    outcome: Annotated[
        Literal["succeeded", "failed"] | None,
        Query(description="Only results with this outcome (`failed`: each with its reason)."),
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, description="The `next_after` of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, description="Results per page (capped).")] = 100,
) -> ResultPage:
    return await jobs.results(job_id, after=after, limit=limit, outcome=outcome)
