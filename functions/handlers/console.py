"""The web console's files: its page, script, style and icon, served by the api function itself.

The files live in ``functions/console/`` (inside the functions' CodeUri, so ``sam build`` packages them)
and are served as written: no build step, nothing fetched from elsewhere. The page names each file with
a hash of its content (``console/app.js?v=<hash>``), so a browser may keep a file for a year and still
gets the new one the moment a deployment changes it; the page itself is revalidated on every load.
Every answer carries a Content-Security-Policy that lets the page load and call only its own origin.

In AWS the console's paths are the only ones API Gateway lets through without authentication
(template.yaml); ``config.json`` tells the page how the API authenticates (``CALLME_AUTH_MODE``, the
template's ``AuthMode``, read by callme.settings; unset locally, where nothing is asked) and which
optional routes exist.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
PAGE = "index.html"
CONFIG = "config.json"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The page and its script may talk to their own origin only: no inline script or style, no frames.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
REVALIDATE = "no-cache"
FOREVER = "public, max-age=31536000, immutable"
# Routes the console shows a view for only when the API has them: {feature: the route's prefix}.
OPTIONAL_ROUTES = {"stats": "/stats", "schedules": "/schedule"}


@dataclass(frozen=True)
class ConsoleAnswer:
    """An HTTP answer for the api handler to send as it is."""

    status: int
    content_type: str
    body: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _File:
    content_type: str
    body: str
    version: str  # the first 16 hex digits of the content's SHA-256: the ETag and the ?v= of its URL


def page(if_none_match: str | None) -> ConsoleAnswer:
    """``GET /console``: the page, naming each file by its current version."""
    return _answer(_files()[PAGE], REVALIDATE, if_none_match)


def asset(name: str, version: str | None, if_none_match: str | None) -> ConsoleAnswer | None:
    """``GET /console/<name>``: a file of the console, or None when there is no such file.

    Kept for a year when asked for by its current version (as the page does), revalidated otherwise.
    """
    found = _files().get(name)
    if found is None or name == PAGE:
        return None
    return _answer(found, FOREVER if version == found.version else REVALIDATE, if_none_match)


def config(auth: str, routes: Iterable[str]) -> ConsoleAnswer:
    """``GET /console/config.json``: how to authenticate, and which optional views the API serves."""
    rules = list(routes)
    features = {
        feature: any(rule == prefix or rule.startswith(prefix + "/") for rule in rules)
        for feature, prefix in OPTIONAL_ROUTES.items()
    }
    body = json.dumps({"auth": auth, "features": features})
    return ConsoleAnswer(200, "application/json", body, {**SECURITY_HEADERS, "Cache-Control": "no-store"})


def _answer(found: _File, cache_control: str, if_none_match: str | None) -> ConsoleAnswer:
    etag = f'"{found.version}"'
    headers = {**SECURITY_HEADERS, "Cache-Control": cache_control, "ETag": etag}
    if if_none_match and etag in (tag.strip().removeprefix("W/") for tag in if_none_match.split(",")):
        return ConsoleAnswer(304, found.content_type, "", headers)
    return ConsoleAnswer(200, found.content_type, found.body, headers)


@cache
def _files() -> dict[str, _File]:
    """Every file of the console, read once; the page with ``{{name}}`` replaced by that file's version."""
    files = {
        path.name: _file(path.suffix, path.read_text(encoding="utf-8"))
        for path in sorted(CONSOLE_DIR.iterdir())
        if path.suffix in CONTENT_TYPES and path.name != PAGE
    }
    html = (CONSOLE_DIR / PAGE).read_text(encoding="utf-8")
    for name, found in files.items():
        html = html.replace("{{" + name + "}}", found.version)
    files[PAGE] = _file(".html", html)
    return files


def _file(suffix: str, body: str) -> _File:
    return _File(CONTENT_TYPES[suffix], body, hashlib.sha256(body.encode()).hexdigest()[:16])
