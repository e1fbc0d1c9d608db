"""The search page: GET / and its static files under /ui/ (HTML, CSS, JS shipped in the package).

No build step and no third-party code: plain files in `server/static`, so the page works offline
and a pip install carries it. Only the files that are there when the server starts are served
(a fixed table, so no path can reach outside the folder). The files are public, like /docs: the
page holds no data and asks for an API key when the API answers 401; the key stays in the tab's
sessionStorage. A strict Content-Security-Policy allows scripts and styles from this server only;
pictures and sounds may also come from blob: URLs (media fetched with the key) and from the web
(items indexed from URLs show their URL's content).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

from ..errors import ErrorCode, OmnivecError

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data: https: http:; "
    "media-src 'self' blob: https: http:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}
STATIC_FILES = {p.name: p for p in STATIC_DIR.iterdir() if p.is_file() and p.suffix in CONTENT_TYPES} if STATIC_DIR.is_dir() else {}

router = APIRouter(include_in_schema=False)


def _file(name: str) -> Response:
    path = STATIC_FILES.get(name)
    if path is None:
        raise OmnivecError(ErrorCode.NOT_FOUND, f"no page file {name!r}; the search page is at /")
    return Response(path.read_bytes(), media_type=CONTENT_TYPES[path.suffix], headers=HEADERS)


@router.get("/")
async def page() -> Response:
    return _file("index.html")


@router.get("/ui/{name}")
async def page_file(name: str) -> Response:
    return _file(name)
