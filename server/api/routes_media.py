"""GET /v1/collections/{name}/media/{id}: an item's kept thumbnail, audio preview, text or original.

The id is the last path segment(s) (item ids may contain '/'), which is why the route puts `media`
before the id rather than after it: `/items/{id}/media` would be ambiguous for an item named
`x/media`. The route checks that the item still exists before serving anything, so media left
behind by an interrupted delete is never shown. With API keys set it needs a key like every
other /v1 route (the search page sends it).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from ..errors import ErrorCode, OmnivecError
from ..services.collections import CollectionService, run_store
from ..services.media_keeper import MediaKeeper
from .bodies import app_state
from .responses import COLLECTION, STARTING, VALIDATED, route_errors
from .schemas import CollectionName
from .schemas_media import MediaUrlOut

router = APIRouter(tags=["collections"])

# Private: with API keys the bytes are per-client. Short max-age plus an ETag: an id re-indexed with
# new content shows it within minutes, and revalidating an unchanged preview costs a 304.
CACHE_CONTROL = "private, max-age=300"
MEDIA_RESPONSES = {
    200: {
        "description": "the kept bytes: a WebP thumbnail (image items), an OGG/Vorbis preview (audio items), UTF-8 text (text items); "
        "with original=true the kept original file. For a URL item with redirect=false, JSON naming its URL.",
        "content": {
            **{t: {"schema": {"type": "string", "format": "binary"}} for t in ("image/webp", "audio/ogg", "text/plain", "application/octet-stream")},
            "application/json": {"schema": MediaUrlOut.model_json_schema()},
        },
        "headers": {"ETag": {"schema": {"type": "string"}}, "Cache-Control": {"schema": {"type": "string"}}},
    },
    304: {"description": "not modified (If-None-Match matched the ETag)"},
    307: {"description": "a URL item (redirect=true): Location is the URL it was indexed from", "headers": {"Location": {"schema": {"type": "string"}}}},
    **route_errors(VALIDATED, STARTING, COLLECTION, (ErrorCode.ITEM_NOT_FOUND, ErrorCode.MEDIA_NOT_FOUND)),
}


def _no_media(name: str, item_id: str, original: bool) -> OmnivecError:
    if original:
        why = "no original was kept for it (over media.original_max_bytes, indexed from a URL, or indexed before media was kept)"
    else:
        why = "nothing was kept for it (its collection was created with keep_media=false, or it was indexed before media was kept)"
    return OmnivecError(ErrorCode.MEDIA_NOT_FOUND, f"item {item_id!r} of collection {name!r} exists, but {why}; index it again to keep its media")


@router.get(
    "/v1/collections/{name}/media/{item_id:path}",
    response_model=None,
    responses=MEDIA_RESPONSES,  # type: ignore[arg-type]
    summary="An item's kept media: thumbnail, audio preview, text, or original; a URL item's URL",
    description="What the server kept when it indexed the item (see `keep_media` on collection creation). Cached privately "
    "for 5 minutes with an ETag. URL items: a 307 redirect to the URL, or with redirect=false a JSON body naming it.",
)
async def item_media(request: Request, name: CollectionName, item_id: str, original: bool = False, redirect: bool = True) -> Response:
    collections: CollectionService = app_state(request, "collections")
    keeper: MediaKeeper | None = collections.media
    await collections.get_item(name, item_id)  # 404 for a missing collection or item, whatever was kept
    media = await run_store(keeper.store.get, name, item_id, original) if keeper is not None else None
    if media is None:
        raise _no_media(name, item_id, original)
    headers = {"Cache-Control": CACHE_CONTROL, "ETag": f'"{media.etag}"'}
    if media.url is not None:
        if redirect:
            return RedirectResponse(media.url, status_code=307, headers=headers)
        return JSONResponse(MediaUrlOut(id=item_id, modality=media.modality, url=media.url).model_dump(), headers=headers)  # type: ignore[arg-type]
    data, content_type = (media.original, media.original_type) if original else (media.preview, media.preview_type)
    if data is None or content_type is None:
        raise _no_media(name, item_id, original)
    etag = headers["ETag"] if not original else f'"{media.etag}-o"'
    headers["ETag"] = etag
    if etag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=content_type, headers={**headers, "X-Content-Type-Options": "nosniff"})
