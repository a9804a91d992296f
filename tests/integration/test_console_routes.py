"""The console's routes in the api handler: the page, its files, its config, their headers."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from handlers import api, console
from tests.conftest import api_event

CSP = "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'"


def get(context: Any, target: str, **headers: str) -> dict[str, Any]:
    response: dict[str, Any] = api.lambda_handler(api_event("GET", target, headers=headers), context)
    response["headers"] = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    for key, values in (response.get("multiValueHeaders") or {}).items():
        response["headers"][key.lower()] = ", ".join(values)
    return response


def page_files(context: Any) -> dict[str, str]:
    """{file: version} as the page names them."""
    html = get(context, "/console")["body"]
    return dict(re.findall(r'(?:href|src)="console/([a-z.]+)\?v=([0-9a-f]{16})"', html))


def test_the_page_is_html_with_a_strict_policy_and_is_revalidated(aws: Any, lambda_context: Any) -> None:
    response = get(lambda_context, "/console")
    assert response["statusCode"] == 200
    headers = response["headers"]
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["content-security-policy"] == CSP
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-cache"
    assert response["body"].startswith("<!doctype html>")
    assert "{{" not in response["body"], "a file version was left unreplaced"
    # Everything it loads is its own: relative file names (the local stack's address is a link to follow).
    loaded = re.findall(r'(?:src|href)="([^"#]+)"', response["body"])
    assert loaded and all(url.startswith("console/") for url in loaded if url != "http://127.0.0.1:6777/console")
    assert "url(" not in (console.CONSOLE_DIR / "app.css").read_text() and "@import" not in response["body"]


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ],
)
def test_each_file_is_named_by_its_content_and_kept_for_a_year(
    aws: Any, lambda_context: Any, name: str, content_type: str
) -> None:
    version = page_files(lambda_context)[name]
    response = get(lambda_context, f"/console/{name}?v={version}")
    assert response["statusCode"] == 200
    assert response["headers"]["content-type"] == content_type
    assert response["headers"]["cache-control"] == "public, max-age=31536000, immutable"
    assert response["headers"]["etag"] == f'"{version}"'
    assert response["body"] == (console.CONSOLE_DIR / name).read_text()
    # Asked for without (or with an old) version, it is revalidated rather than kept.
    for target in (f"/console/{name}", f"/console/{name}?v=0000000000000000"):
        assert get(lambda_context, target)["headers"]["cache-control"] == "no-cache"


def test_a_file_the_browser_has_is_not_sent_again(aws: Any, lambda_context: Any) -> None:
    version = page_files(lambda_context)["app.js"]
    again = get(lambda_context, "/console/app.js", **{"If-None-Match": f'W/"other", "{version}"'})
    assert (again["statusCode"], again["body"]) == (304, "")
    assert again["headers"]["etag"] == f'"{version}"'
    etag = get(lambda_context, "/console")["headers"]["etag"]
    assert get(lambda_context, "/console", **{"If-None-Match": etag})["statusCode"] == 304
    assert get(lambda_context, "/console/app.js", **{"If-None-Match": '"stale"'})["statusCode"] == 200


@pytest.mark.parametrize("target", ["/console/nothing.js", "/console/index.html", "/console/a/app.js", "/console/.."])
def test_an_unknown_file_is_a_404_in_json(aws: Any, lambda_context: Any, target: str) -> None:
    response = get(lambda_context, target)
    assert response["statusCode"] == 404
    assert response["headers"]["content-type"] == "application/json"
    assert list(json.loads(response["body"])) == ["error"]


def test_a_trailing_slash_goes_to_the_page(aws: Any, lambda_context: Any) -> None:
    """The page names its files relative to /console: from /console/ they would resolve elsewhere."""
    response = get(lambda_context, "/console/")
    assert response["statusCode"] == 308
    assert response["headers"]["location"] == "../console"


def test_other_methods_are_refused(aws: Any, lambda_context: Any) -> None:
    response = api.lambda_handler(api_event("POST", "/console/app.js", "{}"), lambda_context)
    assert response["statusCode"] == 405
    assert json.loads(response["body"])["error"].startswith("method POST is not allowed")


@pytest.mark.parametrize(("value", "auth"), [(None, "none"), ("API_KEY", "api_key"), ("IAM", "iam")])
def test_the_config_says_how_the_api_authenticates(
    aws: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch, value: str | None, auth: str
) -> None:
    if value is None:
        monkeypatch.delenv("CALLME_AUTH_MODE", raising=False)
    else:
        monkeypatch.setenv("CALLME_AUTH_MODE", value)
    response = get(lambda_context, "/console/config.json")
    assert response["statusCode"] == 200
    assert response["headers"]["cache-control"] == "no-store"
    assert json.loads(response["body"]) == {"auth": auth, "features": {"stats": True, "schedules": True}}


def test_the_config_shows_the_optional_views_once_their_routes_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = console.config("none", ["/task/<ident>", "/stats", "/schedule/<ident>", "/schedule"])
    assert json.loads(answer.body)["features"] == {"stats": True, "schedules": True}
    assert json.loads(console.config("none", ["/statistics", "/schedules-x"]).body)["features"] == {
        "stats": False,
        "schedules": False,
    }
