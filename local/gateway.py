"""API Gateway, locally: each HTTP request becomes a REST API proxy event for the real handler,
and the handler's answer becomes the HTTP response, within the limits API Gateway and Lambda hold.

The HTTP server is werkzeug's threaded WSGI server: maintained (Pallets), already installed (moto's
server is built on it, and the embedded DynamoDB uses it), a listen backlog of 128, one thread per
connection, and chunked request bodies decoded. It answers every request with ``Connection: close``,
so bytes a client sends after a request can never be read as another request. On top of it this
module adds what API Gateway does at the edge: framing rules (RFC 9112: no request with both
``Content-Length`` and ``Transfer-Encoding``, only numeric lengths, only ``chunked``), JSON for every
error including malformed request lines, and the platform's limits:

- a request body over 10,485,760 bytes (API Gateway's payload quota): 413;
- a proxy event over 6,291,456 bytes (Lambda's synchronous invocation request limit): 413, as API
  Gateway answers (``{"message": "Request Too Long"}``: API Gateway does not let it be customised);
- a response over 6,291,556 bytes as Lambda's Python runtime serializes it (json, ``ensure_ascii``
  off), a handler that raises or answers no proxy response, or one still running at the function's
  timeout from template.yaml: 502 "Internal server error", as API Gateway answers a failed invocation;
- past the integration timeout (29 s): 504 "Endpoint request timed out".

API Gateway's own answers are rendered through the template's ``GatewayResponses`` (as a deployed
API renders them: the failed invocation through ``DEFAULT_5XX``, the timeout through
``INTEGRATION_TIMEOUT``), or API Gateway's default ``{"message": ...}`` where it has none. Errors of
the HTTP layer itself (malformed requests) answer ``{"error": ...}``.

The handler runs in a thread of its own so that the gateway answers on time. Unlike Lambda, which
stops a timed-out function's environment, a thread cannot be killed: it runs on in the background,
and any write it makes after the 502 still happens. One invocation runs at a time, as in one Lambda
execution environment: Powertools' resolver keeps the request being served in a class attribute, so
two invocations at once in one process would mix up their requests; the others wait their turn,
within API Gateway's 29 s.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .lambda_context import LocalContext

log = logging.getLogger(__name__)
STAGE = "local"
API_GATEWAY_MAX_BODY = 10 * 1024 * 1024  # API Gateway REST API payload quota: 10,485,760 bytes
LAMBDA_MAX_REQUEST = 6 * 1024 * 1024  # "Request must be smaller than 6291456 bytes for the InvokeFunction operation"
LAMBDA_MAX_RESPONSE = LAMBDA_MAX_REQUEST + 100  # "... exceeded maximum allowed payload size (6291556 bytes)"
INTEGRATION_TIMEOUT = 29.0  # seconds, API Gateway REST API
CLIENT_TIMEOUT = 60.0  # seconds a client may take to send its request
INTERNAL_ERROR = "Internal server error"  # API Gateway's message for a failed invocation (502)
ENDPOINT_TIMED_OUT = "Endpoint request timed out"  # API Gateway's message for an integration timeout (504)
REQUEST_TOO_LONG = "Request Too Long"  # API Gateway's message for an event over Lambda's limit (413)
BODY_TOO_LONG = f"HTTP content length exceeded {API_GATEWAY_MAX_BODY} bytes."  # its message over 10 MB (413)
DEFAULT_TEMPLATE = '{"message":$context.error.messageString}'  # API Gateway's body for its own answers
NOT_CUSTOMISABLE = frozenset({"REQUEST_TOO_LARGE"})  # API Gateway ignores GatewayResponses for these
_TIMEOUT = "INTEGRATION_TIMEOUT"  # the response type of an integration past 29 s
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
Headers = Mapping[str, str] | Iterable[tuple[str, str]]
_TARGET, _HEADERS = "callme.target", "callme.headers"  # the request as sent, kept in the WSGI environ
_DIGITS = re.compile(r"[0-9]+")


def proxy_event(method: str, target: str, headers: Headers, body: bytes, source_ip: str) -> dict[str, Any]:
    """The event API Gateway (REST, proxy integration) would send for this request.

    ``headers`` are a mapping, or the (name, value) pairs as sent: a repeated header keeps its last
    value in ``headers`` and every value in ``multiValueHeaders``, as API Gateway does.
    """
    parts = urlsplit(target)
    path = unquote(parts.path) or "/"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    multi: dict[str, list[str]] = {}
    for key, value in pairs:
        multi.setdefault(key, []).append(value)
    header_pairs = list(headers.items() if isinstance(headers, Mapping) else headers)
    multi_headers: dict[str, list[str]] = {}
    for name, value in header_pairs:
        multi_headers.setdefault(name, []).append(value)
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": {name: values[-1] for name, values in multi_headers.items()} or None,
        "multiValueHeaders": multi_headers or None,
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
            "identity": {"sourceIp": source_ip, "userAgent": multi_headers.get("User-Agent", [None])[-1]},
        },
        "body": text if body else None,
        "isBase64Encoded": encoded,
    }


def payload_size(payload: Any) -> int:
    """Bytes of a Lambda payload as the Python 3.12+ runtime serializes it (json, ensure_ascii off)."""
    return len(json.dumps(payload, ensure_ascii=False).encode("utf-8"))


@dataclass(frozen=True)
class LambdaFunction:
    """A function behind the gateway: its name, its handler and its timeout in seconds."""

    name: str
    handler: Handler
    timeout: float


class GatewayError(Exception):
    """An answer the gateway gives itself, without (or instead of) the function's: API Gateway's own
    answer of ``response_type`` (a GatewayResponses type), or with none an error of the HTTP layer."""

    def __init__(self, status: int, message: str, reason: str = "", response_type: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason or message
        self.response_type = response_type


def render(template: str, message: str, response_type: str) -> str:
    """A gateway response's mapping template filled in as API Gateway fills it: the message as a JSON
    string (``messageString``) or as it is, and the response type."""
    body = template.replace("$context.error.messageString", json.dumps(message))
    body = body.replace("$context.error.message", message)
    return body.replace("$context.error.responseType", response_type)


class GatewayResponses:
    """API Gateway's own answers, customised as SAM's ``GatewayResponses`` of the API say."""

    def __init__(self, configured: Mapping[str, Any] | None = None) -> None:
        self.configured = dict(configured or {})

    def answer(self, error: GatewayError) -> _Answer:
        """The answer to ``error``: its response type's, else DEFAULT_4XX's or DEFAULT_5XX's, else AWS's default."""
        if error.response_type is None:
            return _Answer.error(error.status, error.message)
        fallback = "DEFAULT_5XX" if error.status >= 500 else "DEFAULT_4XX"
        chosen: Mapping[str, Any] = {}
        if error.response_type not in NOT_CUSTOMISABLE:
            chosen = self.configured.get(error.response_type) or self.configured.get(fallback) or {}
        template = (chosen.get("ResponseTemplates") or {}).get("application/json")
        body = render(template if isinstance(template, str) else DEFAULT_TEMPLATE, error.message, error.response_type)
        headers = {"Content-Type": "application/json"}
        for name, value in ((chosen.get("ResponseParameters") or {}).get("Headers") or {}).items():
            if isinstance(value, str) and len(value) > 1 and value[0] == value[-1] == "'":  # static values only
                headers[name] = value[1:-1]
        return _Answer(int(chosen.get("StatusCode") or error.status), list(headers.items()), body.encode())


@dataclass
class _Answer:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @classmethod
    def error(cls, status: int, message: str) -> _Answer:
        return cls(status, [("Content-Type", "application/json")], json.dumps({"error": message}).encode())


class LocalApiGateway:
    """The API's HTTP endpoint: werkzeug's threaded server in front of one Lambda function."""

    def __init__(
        self,
        address: tuple[str, int],
        function: LambdaFunction,
        extra_routes: Mapping[str, Handler] | None = None,
        responses: GatewayResponses | None = None,
    ) -> None:
        self.function = function
        self.extra_routes = dict(extra_routes or {})
        self.responses = responses or GatewayResponses()
        self._environment = threading.Lock()
        self.server: BaseWSGIServer = make_server(
            address[0], address[1], self, threaded=True, request_handler=_RequestHandler
        )

    @property
    def url(self) -> str:
        return f"http://{self.server.host}:{self.server.port}"

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self.server.serve_forever(poll_interval)

    def shutdown(self) -> None:
        self.server.shutdown()

    def server_close(self) -> None:
        self.server.server_close()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The WSGI application: one request, one answer, always JSON when it is the gateway's own."""
        started = time.perf_counter()
        method, target = environ["REQUEST_METHOD"], environ.get(_TARGET, "/")
        try:
            answer = self._answer(method, target, environ)
        except GatewayError as error:
            log.warning("%s %s: %s", method, target, error.reason)
            answer = self.responses.answer(error)
        except Exception:
            log.exception("%s %s: the gateway failed", method, target)
            answer = self.responses.answer(GatewayError(502, INTERNAL_ERROR, response_type="DEFAULT_5XX"))
        headers = [*answer.headers, ("Content-Length", str(len(answer.body)))]
        start_response(f"{answer.status} {HTTP_STATUS_CODES.get(answer.status, 'Unknown')}", headers)
        log.info("%s %s -> %s (%.0f ms)", method, target, answer.status, (time.perf_counter() - started) * 1000)
        return [] if method == "HEAD" else [answer.body]

    def _answer(self, method: str, target: str, environ: dict[str, Any]) -> _Answer:
        body = _read_body(environ)
        event = proxy_event(method, target, environ.get(_HEADERS, []), body, environ.get("REMOTE_ADDR", ""))
        hook = self.extra_routes.get(event["path"])
        if hook:  # a test hook of the local stack, not behind API Gateway: no limits
            return _proxy_answer(hook(event, LocalContext.for_function(self.function.name, self.function.timeout)))
        size = payload_size(event)
        if size > LAMBDA_MAX_REQUEST:
            raise GatewayError(
                413,
                REQUEST_TOO_LONG,
                f"{REQUEST_TOO_LONG}: this request makes a Lambda event of {size:,} bytes; "
                f"a synchronous invocation takes at most {LAMBDA_MAX_REQUEST:,}",
                "REQUEST_TOO_LARGE",
            )
        return _proxy_answer(self._invoke(event))

    def _invoke(self, event: dict[str, Any]) -> Any:
        """Run the function on the event in a thread of its own, within its timeout and API Gateway's."""
        function = self.function
        started = time.monotonic()
        if not self._environment.acquire(timeout=INTEGRATION_TIMEOUT):
            raise GatewayError(504, ENDPOINT_TIMED_OUT, "no execution environment was free within 29 s", _TIMEOUT)
        try:
            left = INTEGRATION_TIMEOUT - (time.monotonic() - started)
            context = LocalContext.for_function(function.name, function.timeout)
            future: Future[Any] = Future()

            def run() -> None:
                try:
                    future.set_result(function.handler(event, context))
                except BaseException as error:
                    future.set_exception(error)

            threading.Thread(target=run, name=f"{function.name}-{context.aws_request_id[:8]}", daemon=True).start()
            try:
                response = future.result(timeout=min(function.timeout, left))
            except TimeoutError:
                if function.timeout <= left:
                    raise _failed(f"Task timed out after {function.timeout:.2f} seconds") from None
                raise GatewayError(504, ENDPOINT_TIMED_OUT, "integration timed out after 29 s", _TIMEOUT) from None
            except Exception as error:
                log.error("%s failed", function.name, exc_info=error)
                raise _failed(f"the function failed: {error!r}") from None
        finally:
            self._environment.release()
        try:
            size = payload_size(response)
        except (TypeError, ValueError) as error:
            raise _failed(f"the response is not JSON: {error}") from None
        if size > LAMBDA_MAX_RESPONSE:
            raise _failed(f"the response is {size:,} bytes; Lambda returns at most {LAMBDA_MAX_RESPONSE:,}")
        return response


def _failed(reason: str) -> GatewayError:
    """A failed invocation, as API Gateway answers it (a 502 rendered through DEFAULT_5XX)."""
    return GatewayError(502, INTERNAL_ERROR, reason, "DEFAULT_5XX")


def _read_body(environ: dict[str, Any]) -> bytes:
    """The request body, whole: chunked (decoded by werkzeug) or Content-Length bytes (already checked)."""
    stream = environ["wsgi.input"]
    try:
        if environ.get("wsgi.input_terminated"):
            parts, size = [], 0
            while chunk := stream.read(64 * 1024):
                parts.append(chunk)
                size += len(chunk)
                if size > API_GATEWAY_MAX_BODY:
                    raise _too_large()
            return b"".join(parts)
        expected = int(environ.get("CONTENT_LENGTH") or 0)
        body: bytes = stream.read(expected) if expected else b""
    except TimeoutError:
        raise GatewayError(408, f"the request body did not arrive within {CLIENT_TIMEOUT:.0f} s") from None
    except OSError as error:  # werkzeug's chunk decoder: a bad chunk size or terminator
        raise GatewayError(400, f"malformed chunked request body: {error}") from None
    if len(body) < expected:
        raise GatewayError(400, f"the request body ended after {len(body)} of {expected} bytes (Content-Length)")
    return body


def _too_large() -> GatewayError:
    reason = f"the request body is over API Gateway's {API_GATEWAY_MAX_BODY:,} bytes"
    return GatewayError(413, BODY_TOO_LONG, reason, "REQUEST_TOO_LARGE")


def _proxy_answer(response: Any) -> _Answer:
    """The HTTP answer for a Lambda proxy response, or a 502 if it is not one (as API Gateway)."""
    try:
        status = int(response["statusCode"])
        payload = response.get("body") or ""
        data = base64.b64decode(payload, validate=True) if response.get("isBase64Encoded") else payload.encode()
        single = dict(response.get("headers") or {})
        multi = dict(response.get("multiValueHeaders") or {})
    except (TypeError, KeyError, ValueError, AttributeError, binascii.Error) as error:
        raise _failed(f"malformed Lambda proxy response: {error!r}") from None
    headers = [(str(k), str(v)) for k, v in single.items() if k not in multi]
    headers += [(str(k), str(v)) for k, values in multi.items() for v in values]
    framing = ("content-length", "connection", "transfer-encoding")
    return _Answer(status, [(k, v) for k, v in headers if k.lower() not in framing], data)


def framing_problem(headers: Message) -> GatewayError | None:
    """What is wrong with how a request says where its body ends (RFC 9112, section 6), if anything."""
    lengths = headers.get_all("Content-Length") or []
    encodings = headers.get_all("Transfer-Encoding") or []
    if lengths and encodings:
        return GatewayError(400, "a request may have a Content-Length or a Transfer-Encoding header, not both")
    if encodings:
        codings = [coding.strip().lower() for value in encodings for coding in value.split(",")]
        if codings != ["chunked"]:
            listed = ", ".join(encodings)
            return GatewayError(400, f"Transfer-Encoding {listed!r} is not supported: send chunked or a Content-Length")
        return None
    values = {value.strip() for value in lengths}
    if len(values) > 1 or (values and not _DIGITS.fullmatch(next(iter(values)))):
        return GatewayError(400, f"Content-Length {', '.join(lengths)!r} is not a number of bytes")
    digits = values.pop().lstrip("0") if values else ""
    if len(digits) > 12 or int(digits or "0") > API_GATEWAY_MAX_BODY:  # int() refuses over 4,300 digits
        return _too_large()
    return None


class _RequestHandler(WSGIRequestHandler):
    """werkzeug's request handler with API Gateway's framing rules, and JSON for its own errors."""

    default_request_version = "HTTP/1.0"  # so that even a garbled request line gets a status line
    timeout = CLIENT_TIMEOUT

    def parse_request(self) -> bool:
        if len(self.raw_requestline.split()) == 2:  # HTTP/0.9 has no status line for a JSON answer
            self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
            self.command, self.request_version = "", self.default_request_version
            self.send_error(400, f"bad request line {self.requestline!r}: HTTP/0.9 is not supported")
            return False
        if not super().parse_request():
            return False
        problem = framing_problem(self.headers)
        if problem:
            self.log_error("%s", problem.reason)
            gateway = cast("LocalApiGateway", self.server.app)
            self._refuse(gateway.responses.answer(problem))
            return False
        return True

    def handle_expect_100(self) -> bool:
        return True  # werkzeug's run_wsgi sends the one "100 Continue", after the framing checks

    def make_environ(self) -> Any:
        environ = super().make_environ()
        environ[_TARGET] = self.path
        environ[_HEADERS] = list(self.headers.items())
        return environ

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """A JSON error instead of http.server's HTML; then the connection closes."""
        if code == HTTPStatus.HTTP_VERSION_NOT_SUPPORTED:
            code = 400  # nothing a client sends gets a 5xx
        text = message or HTTP_STATUS_CODES.get(code, "Bad Request")
        self.log_error("code %d, message %s", code, text)
        self._refuse(_Answer.error(code, f"{text}: {explain}" if explain else text))

    def _refuse(self, answer: _Answer) -> None:
        """Answer a request refused before the application saw it; then the connection closes."""
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)
        self._linger()

    def _linger(self) -> None:
        """Drop what the client still sends (a body refused unread), so that it reads the answer
        rather than a connection reset."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + 2
            self.connection.settimeout(0.5)
            while time.monotonic() < deadline and self.connection.recv(64 * 1024):
                pass
        except OSError:
            pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # the gateway logs one line per request
