"""GET /clerk/: the clerk's tablet page and its static files (recsvc/clerk/static).

The page needs no API key (its API calls carry the clerk's). Every response of this blueprint carries
a strict Content-Security-Policy: scripts, styles, images and API calls from this origin only, no
inline script or style, no framing, DOM sinks locked by Trusted Types. Files are revalidated on
every load (`no-cache` + ETag, answered 304 when unchanged) so a new release reaches tablets at once.
"""

from __future__ import annotations

import hashlib

from flask import Blueprint, Response, abort, redirect, request

from recsvc.clerk import INDEX, static_file

bp = Blueprint("clerk", __name__)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; manifest-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}


def _send(name: str) -> Response:
    """The file's bytes (a few kB each) with a content-hash ETag, so every worker and instance agrees
    on it; a matching If-None-Match answers 304."""
    found = static_file(name)
    if found is None:
        abort(404)
    path, ctype = found
    with open(path, "rb") as f:
        data = f.read()
    resp = Response(data, content_type=ctype)
    resp.set_etag(hashlib.sha256(data).hexdigest()[:32])
    resp.headers["Cache-Control"] = "no-cache"
    return resp.make_conditional(request)


@bp.get("/clerk")
def clerk_redirect():
    return redirect("/clerk/", code=308)


@bp.get("/clerk/")
def clerk_page():
    return _send(INDEX)


@bp.get("/clerk/<path:name>")
def clerk_static(name: str):
    return _send(name)


@bp.after_request
def _security_headers(resp):
    resp.headers.update(SECURITY_HEADERS)
    return resp
