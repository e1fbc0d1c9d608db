"""POST/GET /v1/collections/{name}/reembed: move a collection into another loaded model's space, then swap it in.

The work runs in the background (services/reembed.py); these routes start it and report it.
Starting one changes what a collection holds, so it needs an admin key when API keys are set.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from ..errors import ErrorCode
from ..services.reembed import ReembedJob, Reembedder
from .auth import require_admin
from .bodies import app_state
from .responses import COLLECTION, STARTING, VALIDATED, route_errors
from .schemas import CollectionName
from .schemas_media import ReembedItemError, ReembedOut, ReembedRequest

router = APIRouter(tags=["collections"])


def reembed_out(job: ReembedJob) -> ReembedOut:
    return ReembedOut(
        collection=job.name,
        model=job.model,
        space_id=job.space_id,
        state=job.state,
        done=job.done,
        total=job.total,
        errors=[ReembedItemError(**e) for e in job.errors],
        from_preview=job.from_preview,
        building=job.target,
        previous=job.old_name,
        message=job.message,
    )


@router.post(
    "/v1/collections/{name}/reembed",
    status_code=202,
    response_model=ReembedOut,
    summary="Re-embed a collection into another loaded model's space from its kept media, then swap it in (admin)",
    description="Builds `<name>.r<n>` in the model's space from each item's kept original, URL or text (the kept preview when the "
    "original was too large to keep), with the same ids and payloads; items added or deleted meanwhile go to both. When done, the "
    "name points to the new collection in one step (searches never fail or mix spaces) and the old one stays as `previous` until "
    "deleted. Interrupted by a restart, it carries on from its last page. Posting again after a failure carries on too.",
    responses=route_errors(VALIDATED, STARTING, COLLECTION, (ErrorCode.FORBIDDEN, ErrorCode.MODEL_NOT_FOUND, ErrorCode.REEMBED_CONFLICT)),
    dependencies=[Depends(require_admin)],
)
async def start_reembed(request: Request, name: CollectionName, body: ReembedRequest) -> ReembedOut:
    reembeds: Reembedder = app_state(request, "reembeds")
    return reembed_out(await reembeds.start(name, body.model))


@router.get(
    "/v1/collections/{name}/reembed",
    response_model=ReembedOut,
    summary="Progress of a collection's re-embed: state, done/total, per-item errors",
    responses=route_errors(VALIDATED, STARTING, (ErrorCode.NOT_FOUND, ErrorCode.INDEX_UNAVAILABLE)),
)
async def reembed_status(request: Request, name: CollectionName) -> ReembedOut:
    reembeds: Reembedder = app_state(request, "reembeds")
    return reembed_out(await reembeds.status(name))
