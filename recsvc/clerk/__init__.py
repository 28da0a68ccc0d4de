"""The clerk's tablet page: static files only (HTML, CSS, ES modules, an SVG icon), no build step.

The page talks to the service through the public HTTP API alone (`/v1/recommendations`,
`/v1/customers/...`, `/v1/events`, `/v1/items/.../similar`), exactly as any other front end would;
`recsvc.api.clerk` serves these files with their security headers.
"""

from __future__ import annotations

import os
import re

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
INDEX = "index.html"

# Extension -> Content-Type. Anything else is not served: the page has no other kind of file.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".webmanifest": "application/manifest+json",
}
FILE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.[a-z]+$")


def static_file(name: str) -> tuple[str, str] | None:
    """(absolute path, content type) of a page file, or None when `name` is not one (no sub-folders,
    no dot files, only the extensions above), so nothing outside the folder is ever reachable."""
    if not FILE_NAME.match(name):
        return None
    ctype = CONTENT_TYPES.get(os.path.splitext(name)[1])
    path = os.path.join(STATIC_DIR, name)
    if ctype is None or not os.path.isfile(path):
        return None
    return path, ctype
