"""API Gateway, locally: each HTTP request becomes a REST API proxy event for the real handler,
and the handler's answer becomes the HTTP response."""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .lambda_context import LocalContext

log = logging.getLogger("callme-local")
STAGE = "local"
MAX_BODY = 10 * 1024 * 1024  # API Gateway's own payload limit
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def proxy_event(method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str) -> dict[str, Any]:
    """The event API Gateway (REST, proxy integration) would send for this request."""
    parts = urlsplit(target)
    path = unquote(parts.path) or "/"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    multi: dict[str, list[str]] = {}
    for key, value in pairs:
        multi.setdefault(key, []).append(value)
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers or None,
        "multiValueHeaders": {k: [v] for k, v in headers.items()} or None,
        "queryStringParameters": {k: v[-1] for k, v in multi.items()} or None,
        "multiValueQueryStringParameters": multi or None,
        "pathParameters": {"proxy": path.lstrip("/")} if path != "/" else None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/{STAGE}{path}",
            "stage": STAGE,
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(time.time() * 1000),
            "accountId": "000000000000",
            "apiId": "local",
            "protocol": "HTTP/1.1",
            "identity": {"sourceIp": source_ip, "userAgent": headers.get("User-Agent")},
        },
        "body": text if body else None,
        "isBase64Encoded": encoded,
    }


class LocalApiGateway(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: Handler, extra_routes: Mapping[str, Handler] | None = None
    ) -> None:
        super().__init__(address, _RequestHandler)
        self.handler = handler
        self.extra_routes = extra_routes or {}


class _RequestHandler(BaseHTTPRequestHandler):
    server: LocalApiGateway
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        started = time.perf_counter()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(413, {"Content-Type": "application/json"}, b'{"error": "request body too large"}')
            return
        body = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items()}
        event = proxy_event(self.command, self.path, headers, body, self.client_address[0])
        handler = self.server.extra_routes.get(event["path"], self.server.handler)
        response = handler(event, LocalContext.for_function("callme-api", timeout_seconds=10))
        payload = response.get("body") or ""
        data = base64.b64decode(payload) if response.get("isBase64Encoded") else payload.encode()
        out_headers = dict(response.get("headers") or {})
        for key, values in (response.get("multiValueHeaders") or {}).items():
            out_headers[key] = ", ".join(values)
        self._send(response["statusCode"], out_headers, data)
        log.info(
            "%s %s -> %s (%.0f ms)",
            self.command,
            self.path,
            response["statusCode"],
            (time.perf_counter() - started) * 1000,
        )

    def _send(self, status: int, headers: dict[str, str], data: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            if key.lower() not in ("content-length", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, PROPFIND, ...) also goes to the handler, which answers 405/404.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request is logged by _serve
