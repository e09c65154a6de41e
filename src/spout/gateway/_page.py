"""The chat page at ``/``: one HTML file, its script and its style, served with a strict CSP.

The files live in ``static/`` beside this module (package data, no build step, nothing from
a CDN). The page only ever talks to this gateway, and its script builds every node from model
output with ``textContent``; the Content-Security-Policy forbids inline script, other origins,
plugins and framing as a second wall.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request as HTTPRequest
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route as HTTPRoute

__all__ = ["CONTENT_SECURITY_POLICY", "page_routes"]

#: The page's policy: its own script and style only, fetches to this origin only, images only
#: from ``data:`` URLs (an image attached, or one the model answered with: never fetched from
#: anywhere), no inline script or style attributes, no plugins, no framing, no form posts
#: elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "chat.js": "text/javascript; charset=utf-8",
    "chat.css": "text/css; charset=utf-8",
}

_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def _asset(name: str) -> bytes:
    return (resources.files(__package__) / "static" / name).read_bytes()


async def _serve(name: str) -> Response:
    media_type = _ASSETS.get(name)
    if media_type is None:
        return PlainTextResponse("not found", status_code=404)
    return Response(_asset(name), media_type=media_type, headers=_HEADERS)


def page_routes() -> list[HTTPRoute]:
    """``GET /`` (the page) and ``GET /static/{name}`` (its script and style)."""

    async def index(http: HTTPRequest) -> Response:
        return await _serve("index.html")

    async def static(http: HTTPRequest) -> Response:
        return await _serve(http.path_params["name"])

    return [
        HTTPRoute("/", index, methods=["GET"]),
        HTTPRoute("/static/{name}", static, methods=["GET"]),
    ]
