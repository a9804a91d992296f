"""The outbound HTTP caller against real, hostile loopback servers.

Every test starts its own servers (threads with plain sockets, so that they can misbehave at will)
and calls them through an ``HttpCaller`` as the dispatcher builds it, with short timeouts. What is
asserted is the ``CallResult`` the engine would record: a status (and the start of the body), or
an error; ``refused`` for an address the egress policy refuses, which is never retried.
"""

from __future__ import annotations

import email.utils
import json
import socket
import socketserver
import ssl
import struct
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3.util.connection
from standardwebhooks import Webhook
from urllib3.response import HTTPResponse

from callme import callback
from callme.callback import READ_CAP, USER_AGENT, HttpCaller
from callme.egress import EgressPolicy
from callme.headers import HeaderSet, SealedHeaders
from callme.ports import CallResult
from callme.sealing import HeaderVault
from callme.settings import CallerConfig
from callme.signing import Signer, new_secret
from callme.task import RESPONSE_BODY_LIMIT, Attempt, Task, TaskDefinition, TaskKey, Verdict
from callme.views import failure_notice

pytestmark = pytest.mark.timeout(20)

LOOPBACK = EgressPolicy.from_text("127.0.0.0/8,::1/128")  # as on the local stack
NOTHING = EgressPolicy()  # as deployed: public addresses only
CONFIG = CallerConfig(connect_timeout=1.0, read_timeout=1.5, call_budget=3.0)
SHORT = CallerConfig(connect_timeout=1.0, read_timeout=1.0, call_budget=1.5)  # keeps the slow tests short
SECRET = new_secret()
SIGNER = Signer((SECRET,))
PUBLIC_IP = "8.8.8.8"  # a public address; tests map connections to it onto a loopback server


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


HAS_IPV6 = _has_ipv6_loopback()


# -- servers ------------------------------------------------------------------------------------


@dataclass
class Received:
    method: str
    target: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    lines: list[tuple[str, str]] = field(default_factory=list)  # every header line as sent, in order


Behaviour = Callable[[socket.socket, "Server"], None]


class Server:
    """A threaded TCP server whose every connection is handed to ``behaviour``."""

    def __init__(self, behaviour: Behaviour, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.stop = threading.Event()
        self.connections = 0
        self.requests: list[Received] = []
        self.sent = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock = self.request
                try:
                    if tls is not None:
                        sock = tls.wrap_socket(sock, server_side=True)
                    behaviour(sock, outer)
                except OSError:
                    pass  # the client went away (or was never going to finish a handshake)
                finally:
                    sock.close()

        class TCPServer(socketserver.ThreadingTCPServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
            daemon_threads = True
            block_on_close = False
            allow_reuse_address = True
            request_queue_size = 128  # socketserver's 5 resets connections when many calls start at once

            def verify_request(self, request: Any, client_address: Any) -> bool:
                with outer._lock:
                    outer.connections += 1
                return True

        self._server = TCPServer((host, 0), Handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook", scheme: str = "http", host: str | None = None) -> str:
        host = host or (f"[{self.host}]" if ":" in self.host else self.host)
        return f"{scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self.stop.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(behaviour: Behaviour, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> Server:
        server = Server(behaviour, host, tls)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def read_request(sock: socket.socket, server: Server) -> Received | None:
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers = {}
    sent = []
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
        sent.append((name, value.strip()))
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    received = Received(method, target, headers, body, sent)
    server.requests.append(received)
    return received


def http_response(status: int = 200, body: bytes = b"", headers: tuple[str, ...] = (), reason: str = "X") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def answer(status: int = 200, body: bytes = b"ok", headers: tuple[str, ...] = ()) -> Behaviour:
    def behaviour(sock: socket.socket, server: Server) -> None:
        if read_request(sock, server) is not None:
            sock.sendall(http_response(status, body, headers))

    return behaviour


def echo_entry(sock: socket.socket, server: Server) -> None:
    """Answers with the ``callme-entry`` header it was sent, and keeps the connection alive."""
    while (received := read_request(sock, server)) is not None:
        body = received.headers["callme-entry"].encode()
        sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)


def silent(sock: socket.socket, server: Server) -> None:
    read_request(sock, server)
    server.stop.wait(10)


def reset(sock: socket.socket, server: Server) -> None:
    read_request(sock, server)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def send_raw(data: bytes) -> Behaviour:
    def behaviour(sock: socket.socket, server: Server) -> None:
        if read_request(sock, server) is not None:
            sock.sendall(data)
            server.stop.wait(0.2)

    return behaviour


def endless(head: bytes, chunk: bytes) -> Behaviour:
    def behaviour(sock: socket.socket, server: Server) -> None:
        if read_request(sock, server) is None:
            return
        sock.sendall(head)
        while not server.stop.is_set():
            sock.sendall(chunk)  # raises once the client has closed
            server.sent += len(chunk)

    return behaviour


def dribble(data: bytes, interval: float = 0.5, first: bytes = b"") -> Behaviour:
    """Sends ``first`` at once, then ``data`` one byte every ``interval`` seconds."""

    def behaviour(sock: socket.socket, server: Server) -> None:
        if read_request(sock, server) is None:
            return
        sock.sendall(first)
        for byte in data:
            if server.stop.wait(interval):
                return
            sock.sendall(bytes([byte]))
        server.stop.wait(10)

    return behaviour


# -- the network seen by the caller -------------------------------------------------------------


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int]]]:
    """Every address urllib3 connects to. Connections to ``PUBLIC_IP`` go to the loopback port
    registered in ``PUBLIC_PORT`` (a simulated public server), when one is."""
    seen: list[tuple[str, int]] = []
    real = urllib3.util.connection.create_connection

    def spy(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        seen.append((address[0], int(address[1])))
        if address[0] == PUBLIC_IP and PUBLIC_PORT:
            return real(("127.0.0.1", PUBLIC_PORT[0]), *args, **kwargs)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", spy)
    PUBLIC_PORT.clear()
    yield seen
    PUBLIC_PORT.clear()


PUBLIC_PORT: list[int] = []


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names answered from this table, in order (the last answer repeats); others resolve as usual."""
    table: dict[str, list[str]] = {}
    asked: dict[str, int] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in table:
            return real(host, port, family, type, proto, flags)
        count = asked[name] = asked.get(name, 0) + 1
        address = table[name][min(count, len(table[name])) - 1]
        number = int(port or 0)
        if ":" in address:
            return [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, number, 0, 0))]
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, number))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


def caller(policy: EgressPolicy = LOOPBACK, config: CallerConfig = CONFIG) -> HttpCaller:
    return HttpCaller(policy, lambda: SIGNER, config)


def task(url: str, method: str = "GET", payload: str = "", name: str = "hook") -> Task:
    definition = TaskDefinition(callback=url, callback_method=method, payload=payload)
    return Task.new(TaskKey(name, 1_800_000_000), definition, time.time())


def timed_call(http: HttpCaller, entry: Task) -> tuple[CallResult, float]:
    start = time.monotonic()
    result = http.call(entry)
    return result, time.monotonic() - start


def assert_untouched(server: Server) -> None:
    time.sleep(0.2)  # an accepted connection is counted by the server's own thread
    assert server.connections == 0
    assert server.requests == []


# -- what arrives -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "payload", "content_type"),
    [
        ("POST", '{"order": 42, "note": "caf\u00e9"}', "application/json"),
        ("PUT", "[1, 2, 3]", "application/json"),
        ("PATCH", "plain words", "text/plain; charset=utf-8"),
        ("POST", "42", "text/plain; charset=utf-8"),
        ("DELETE", '"a JSON string"', "text/plain; charset=utf-8"),
        ("GET", "", None),
        ("POST", "", None),
    ],
)
def test_method_payload_and_headers_arrive(
    serve: Callable[..., Server], method: str, payload: str, content_type: str | None
) -> None:
    server = serve(answer(204, b""))
    entry = task(server.url("/hook?x=1"), method, payload, name="orders.nightly")
    http = caller()

    result = http.call(entry)

    assert result == replace(result, status=204, body="", error=None, refused=False)
    (received,) = server.requests
    assert received.method == method
    assert received.target == "/hook?x=1"
    assert received.body == payload.encode()
    headers = received.headers
    assert headers["user-agent"] == USER_AGENT
    assert "callme" in headers["user-agent"]
    assert headers.get("content-type") == content_type
    assert headers["host"] == f"127.0.0.1:{server.port}"
    assert headers["callme-entry"] == "orders.nightly@1800000000"
    assert headers["callme-attempt"] == "1"
    assert headers["accept-encoding"] == "identity"  # the recorded body start is readable text
    assert headers["webhook-id"] == entry.webhook_id
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5
    Webhook(SECRET).verify(received.body, headers, json_parse=False)

    # a retry of the same entry: same webhook-id (receivers deduplicate), next attempt number
    again = http.call(replace(entry, attempts=1))
    assert again.status == 204
    retried = server.requests[1].headers
    assert retried["webhook-id"] == entry.webhook_id
    assert retried["callme-attempt"] == "2"
    Webhook(SECRET).verify(server.requests[1].body, retried, json_parse=False)


def test_signature_during_a_key_rotation_verifies_with_either_key(serve: Callable[..., Server]) -> None:
    server = serve(answer())
    previous = new_secret()
    http = HttpCaller(LOOPBACK, lambda: Signer((SECRET, previous)), CONFIG)

    assert http.call(task(server.url(), "POST", '{"a": 1}')).status == 200

    (received,) = server.requests
    assert len(received.headers["webhook-signature"].split(" ")) == 2
    assert Webhook(SECRET).verify(received.body, received.headers) == {"a": 1}
    assert Webhook(previous).verify(received.body, received.headers) == {"a": 1}


def test_without_a_signer_no_signature_headers(serve: Callable[..., Server]) -> None:
    server = serve(answer())
    http = HttpCaller(LOOPBACK, lambda: None, CONFIG)

    assert http.call(task(server.url())).status == 200

    assert not any(name.startswith("webhook-") for name in server.requests[0].headers)


# -- what comes back ----------------------------------------------------------------------------


# -- a task's own headers ---------------------------------------------------------------------------

HEADERS_KEY = "a-test-headers-key-of-forty-characters!!"
VAULT = HeaderVault(lambda: HEADERS_KEY)
TOKEN = "Bearer s3cr3t-t0k3n"


def with_headers(entry: Task, *pairs: tuple[str, str], sealed: bool = True) -> Task:
    """``entry`` carrying ``pairs`` as its own headers, sealed as storage keeps them."""
    headers: HeaderSet | SealedHeaders = HeaderSet(pairs)
    if sealed:
        headers = VAULT.seal(entry.key.name, headers)
    return replace(entry, definition=replace(entry.definition, headers=headers))


def vault_caller(policy: EgressPolicy = LOOPBACK, config: CallerConfig = CONFIG) -> HttpCaller:
    return HttpCaller(policy, lambda: SIGNER, config, vault=VAULT)


def test_a_tasks_headers_arrive_on_every_attempt(serve: Callable[..., Server]) -> None:
    server = serve(answer())
    entry = with_headers(task(server.url(), "POST", '{"a": 1}'), ("Authorization", TOKEN), ("X-Tenant", "acme"))
    http = vault_caller()

    assert http.call(entry).status == 200
    assert http.call(replace(entry, attempts=1)).status == 200

    for received in server.requests:
        assert received.headers["authorization"] == TOKEN
        assert received.headers["x-tenant"] == "acme"
        assert received.headers["content-type"] == "application/json"
        Webhook(SECRET).verify(received.body, received.headers, json_parse=False)
    assert [r.headers["callme-attempt"] for r in server.requests] == ["1", "2"]


def test_content_type_and_user_agent_given_by_the_task_replace_callmes(serve: Callable[..., Server]) -> None:
    server = serve(answer())
    entry = with_headers(
        task(server.url(), "POST", "a=1&b=2"),
        ("content-type", "application/x-www-form-urlencoded"),
        ("User-Agent", "acme-bot/2"),
    )

    assert vault_caller().call(entry).status == 200

    (received,) = server.requests
    named = [name.lower() for name, _ in received.lines]
    assert named.count("content-type") == 1 and named.count("user-agent") == 1
    assert received.headers["content-type"] == "application/x-www-form-urlencoded"
    assert received.headers["user-agent"] == "acme-bot/2"


SMUGGLED = (
    ("HOST", "evil.example"),
    ("content-LENGTH", "1"),
    ("Transfer-Encoding", "chunked"),
    ("Connection", "upgrade"),
    ("Upgrade", "h2c"),
    ("TE", "trailers"),
    ("Expect", "100-continue"),
    ("Proxy-Authorization", "Basic eA=="),
    ("Webhook-Id", "msg_forged"),
    ("WEBHOOK-SIGNATURE", "v1,Zm9yZ2Vk"),
    ("webhook-timestamp", "1"),
    ("Callme-Entry", "someone-else@60"),
    ("callme-attempt", "99"),
    ("Accept-Encoding", "gzip"),
    ("X-Fine", "yes"),
)


@pytest.mark.parametrize("sealed", [True, False], ids=["as stored", "in clear"])
def test_headers_past_validation_cannot_change_host_framing_or_signature(
    serve: Callable[..., Server], sealed: bool
) -> None:
    # Given an entry whose stored headers hold everything validation refuses (storage tampered
    # with, or rules changed since it was registered)
    server = serve(answer())
    payload = '{"order": 42}'
    entry = with_headers(task(server.url("/in"), "POST", payload, name="guarded"), *SMUGGLED, sealed=sealed)

    result = vault_caller().call(entry)

    # Then the request on the wire is callme's: one Host, the real length, no other framing, the
    # entry's own signature, and only the harmless header of the lot
    assert result.status == 200
    (received,) = server.requests
    named = [name.lower() for name, _ in received.lines]
    assert named.count("host") == 1 and received.headers["host"] == f"127.0.0.1:{server.port}"
    assert named.count("content-length") == 1 and received.headers["content-length"] == str(len(payload))
    for absent in ("transfer-encoding", "upgrade", "te", "expect", "proxy-authorization"):
        assert absent not in named
    assert received.headers["connection"] == "keep-alive"
    assert received.body == payload.encode()
    for own in ("webhook-id", "webhook-signature", "webhook-timestamp", "callme-entry", "callme-attempt"):
        assert named.count(own) == 1
    assert received.headers["webhook-id"] == entry.webhook_id
    assert received.headers["callme-entry"] == f"guarded@{entry.key.trigger_at}"
    assert received.headers["callme-attempt"] == "1"
    assert received.headers["accept-encoding"] == "identity"
    assert Webhook(SECRET).verify(received.body, received.headers) == {"order": 42}
    assert received.headers["x-fine"] == "yes"


@pytest.mark.parametrize(
    "vault",
    [HeaderVault(lambda: None), HeaderVault(lambda: "another-key-of-at-least-thirty-two-chars")],
    ids=["no key", "another key"],
)
def test_headers_that_cannot_be_opened_are_not_sent_and_the_call_is_refused(
    serve: Callable[..., Server], vault: HeaderVault
) -> None:
    server = serve(answer())
    entry = with_headers(task(server.url()), ("Authorization", TOKEN))

    result = HttpCaller(LOOPBACK, lambda: SIGNER, CONFIG, vault=vault).call(entry)

    assert result.refused is True and result.status is None
    assert result.error is not None and result.error.startswith("headers not sent: ")
    assert TOKEN not in result.error
    assert_untouched(server)


# -- the failure hook -------------------------------------------------------------------------------


def failed_with_hook(callback: str, hook: str) -> Task:
    entry = with_headers(task(callback, "POST", '{"secret payload": 1}'), ("Authorization", TOKEN))
    entry = replace(entry, definition=replace(entry.definition, on_failure=hook, retry=0))
    attempt = Attempt(at=time.time(), duration_ms=12, status=404)
    return entry.after_attempt(attempt, "not here", Verdict.FAIL, None, 86400)


def test_the_failure_hook_is_a_signed_post_of_the_notice_with_its_own_webhook_id(
    serve: Callable[..., Server],
) -> None:
    server = serve(answer(204, b""))
    failed = failed_with_hook("https://receiver.example/run", server.url("/failed"))
    assert failed.on_failure_call is not None

    result = vault_caller().call_on_failure(failed)

    assert (result.status, result.error, result.refused) == (204, None, False)
    (received,) = server.requests
    assert (received.method, received.target) == ("POST", "/failed")
    assert received.headers["content-type"] == "application/json"
    assert received.headers["webhook-id"] == failed.on_failure_call.webhook_id != failed.webhook_id
    assert received.headers["callme-entry"] == str(failed.key)
    assert received.headers["callme-attempt"] == "1"
    assert "authorization" not in received.headers, "the task's headers are for its callback's receiver only"
    notice = Webhook(SECRET).verify(received.body, received.headers)
    assert notice == json.loads(json.dumps(failure_notice(failed)))
    assert notice["type"] == "task.failed" and notice["data"]["response_status"] == 404
    assert b"secret payload" not in received.body and TOKEN.encode() not in received.body


def test_a_later_call_of_the_hook_keeps_its_webhook_id_and_counts_its_attempt(serve: Callable[..., Server]) -> None:
    server = serve(answer())
    failed = failed_with_hook("https://receiver.example/run", server.url())
    assert failed.on_failure_call is not None
    again = failed.after_hook_call(failed.on_failure_call.after_call(time.time(), 5, 503, None), time.time())

    assert vault_caller().call_on_failure(again).status == 200

    (received,) = server.requests
    assert received.headers["webhook-id"] == failed.on_failure_call.webhook_id
    assert received.headers["callme-attempt"] == "2"


def test_a_failure_hook_at_a_private_address_is_refused_without_connecting(
    serve: Callable[..., Server], connects: list[tuple[str, int]]
) -> None:
    server = serve(answer())
    failed = failed_with_hook("https://receiver.example/run", server.url())

    result = vault_caller(NOTHING).call_on_failure(failed)

    assert result.refused is True
    assert result.error == "refused to connect: 127.0.0.1 is a loopback address"
    assert connects == []
    assert_untouched(server)


def test_a_failure_hook_that_never_answers_is_cut_by_the_call_budget(serve: Callable[..., Server]) -> None:
    server = serve(silent)
    failed = failed_with_hook("https://receiver.example/run", server.url())
    start = time.monotonic()

    result = vault_caller(config=SHORT).call_on_failure(failed)

    assert result.status is None and result.error in ("read timeout", "no complete answer within the 1.5 s call budget")
    assert time.monotonic() - start < SHORT.call_budget + 1


@pytest.mark.parametrize("status", [200, 201, 302, 404, 500, 503])
def test_status_and_the_start_of_the_body_are_recorded(serve: Callable[..., Server], status: int) -> None:
    body = ("\u00e9" * 100 + "x" * 1000).encode()  # 1200 bytes, multi-byte characters first
    server = serve(answer(status, body))

    result = caller().call(task(server.url()))

    assert result.status == status
    assert result.error is None
    assert result.refused is False
    assert result.body == "\u00e9" * 100 + "x" * (RESPONSE_BODY_LIMIT - 200)
    assert len(result.body.encode()) == RESPONSE_BODY_LIMIT
    assert result.duration_ms < 1000


def test_a_body_that_is_not_utf8_is_recorded_with_replacement_characters(serve: Callable[..., Server]) -> None:
    server = serve(answer(200, b"\xff\xfe ok \x80"))

    result = caller().call(task(server.url()))

    assert (result.status, result.body) == (200, "\ufffd\ufffd ok \ufffd")


def test_chunked_body(serve: Callable[..., Server]) -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    server = serve(send_raw(head + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"))

    result = caller().call(task(server.url()))

    assert (result.status, result.body, result.error) == (200, "hello world", None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("  7 ", 7.0),
        ("0", 0.0),
        ("in a while", None),
        ("-5", None),
        ("1.5", None),
        ("\u00b2", None),  # a Latin-1 digit that str.isdigit() accepts and float() does not
        ("\u00b9\u00b2\u00b3", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: now
    ],
)
def test_retry_after(serve: Callable[..., Server], value: str, expected: float | None) -> None:
    server = serve(answer(503, b"busy", (f"Retry-After: {value}",)))

    result = caller().call(task(server.url()))

    assert (result.status, result.error) == (503, None)
    assert result.retry_after == expected


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A local time zone far from UTC, so that a date read as local time shows."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("usegmt", [True, False], ids=["GMT", "-0000"])
def test_retry_after_as_an_http_date(serve: Callable[..., Server], far_from_utc: None, usegmt: bool) -> None:
    when = email.utils.formatdate(time.time() + 120, usegmt=usegmt)
    server = serve(answer(429, b"slow down", (f"Retry-After: {when}",)))

    result = caller().call(task(server.url()))

    assert result.status == 429
    assert result.retry_after is not None
    assert 115 <= result.retry_after <= 121


def test_cookies_are_not_carried_from_one_call_to_the_next(serve: Callable[..., Server]) -> None:
    server = serve(answer(200, b"ok", ("Set-Cookie: session=abc; Path=/",)))
    http = caller()

    assert http.call(task(server.url(), name="first")).status == 200
    assert http.call(task(server.url(), name="second")).status == 200

    assert [r.headers.get("cookie") for r in server.requests] == [None, None]


# -- hostile and broken servers -----------------------------------------------------------------


def test_a_server_that_never_answers_is_cut_by_the_read_timeout(serve: Callable[..., Server]) -> None:
    server = serve(silent)

    result, elapsed = timed_call(caller(), task(server.url()))

    assert result.status is None
    assert result.refused is False
    assert result.error == "read timeout"
    assert CONFIG.read_timeout - 0.1 <= elapsed < CONFIG.call_budget + 1


def test_a_server_that_never_answers_is_cut_by_the_budget_when_it_is_shorter(serve: Callable[..., Server]) -> None:
    server = serve(silent)
    config = CallerConfig(connect_timeout=1.0, read_timeout=10.0, call_budget=1.0)

    result, elapsed = timed_call(caller(config=config), task(server.url()))

    assert result.status is None
    assert result.error is not None
    assert "call budget" in result.error
    assert config.call_budget - 0.1 <= elapsed < config.call_budget + 1


def test_a_tls_handshake_that_never_completes_is_cut_by_the_budget(serve: Callable[..., Server]) -> None:
    """The handshake happens before the request is written: the watchdog must cover it too."""
    server = serve(silent)  # accepts, never says a word of TLS
    config = CallerConfig(connect_timeout=10.0, read_timeout=10.0, call_budget=1.0)

    result, elapsed = timed_call(caller(config=config), task(server.url(scheme="https")))

    assert result.status is None
    assert result.error is not None
    assert "call budget" in result.error
    assert elapsed < config.call_budget + 1


def test_a_connection_reset(serve: Callable[..., Server]) -> None:
    server = serve(reset)

    result, elapsed = timed_call(caller(), task(server.url()))

    assert result.status is None
    assert result.refused is False
    assert result.error == "connection reset"
    assert elapsed < 1


def test_a_closed_port_is_a_network_error_not_a_refusal(serve: Callable[..., Server]) -> None:
    server = serve(silent)
    url = server.url()
    server.close()

    result, elapsed = timed_call(caller(), task(url))

    assert (result.status, result.error, result.refused) == (None, "connection refused", False)
    assert elapsed < 1


@pytest.mark.parametrize(
    "garbage",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"\x00\x01\x02\x03\xff\xfe\xfd" * 50,
        b"HTTP/1.1 abc Nope\r\n\r\n",
        b"HTTP/1.1 20 Short\r\n\r\n",
        b"HTTP/9.9 200 OK\r\n\r\n",
        b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X-Many: 1\r\n" * 200 + b"\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot a chunk\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
        b"",
    ],
    ids=[
        "ssh",
        "binary",
        "bad-status",
        "short-status",
        "bad-version",
        "blank",
        "long-header",
        "many-headers",
        "bad-chunk",
        "truncated",
        "nothing",
    ],
)
def test_garbage_is_an_error_not_an_exception(serve: Callable[..., Server], garbage: bytes) -> None:
    server = serve(send_raw(garbage))

    result, elapsed = timed_call(caller(), task(server.url()))

    assert result.status is None
    assert result.refused is False
    assert result.error
    assert elapsed < CONFIG.call_budget + 1


def test_a_response_with_an_invalid_content_length_is_read_to_the_close(serve: Callable[..., Server]) -> None:
    server = serve(send_raw(b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\nConnection: close\r\n\r\nhello"))

    result = caller().call(task(server.url()))

    assert (result.status, result.body, result.error) == (200, "hello", None)


@pytest.mark.parametrize(
    ("garbage", "error"),
    [
        (b"", "connection closed without a response"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "invalid HTTP response: BadStatusLine: SSH-2.0-OpenSSH_9.6"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "response body cut short or malformed"),
    ],
)
def test_what_went_wrong_is_said_plainly(serve: Callable[..., Server], garbage: bytes, error: str) -> None:
    server = serve(send_raw(garbage))

    assert caller().call(task(server.url())).error == error


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data/", "loopback"])
def test_a_redirect_is_recorded_not_followed(
    serve: Callable[..., Server], connects: list[tuple[str, int]], target: str
) -> None:
    elsewhere = serve(answer(200, b"you should not be here"))
    location = elsewhere.url("/secret") if target == "loopback" else target
    server = serve(answer(302, b"moved", (f"Location: {location}",)))

    result = caller().call(task(server.url()))

    assert (result.status, result.body, result.error) == (302, "moved", None)
    assert connects == [("127.0.0.1", server.port)]
    assert_untouched(elsewhere)


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",  # until the connection closes
        b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nConnection: close\r\n\r\n",
    ],
    ids=["close-delimited", "huge-length", "chunked", "redirect"],
)
def test_an_endless_body_is_read_up_to_the_cap(
    serve: Callable[..., Server], monkeypatch: pytest.MonkeyPatch, head: bytes
) -> None:
    chunk = b"4000\r\n" + b"x" * 0x4000 + b"\r\n" if b"chunked" in head else b"x" * 0x4000
    server = serve(endless(head, chunk))
    read = []
    real_read1 = HTTPResponse.read1
    real_read = HTTPResponse.read

    def read1(self: HTTPResponse, *args: Any, **kwargs: Any) -> bytes:
        data = real_read1(self, *args, **kwargs)
        read.append(len(data))
        return data

    def read_all(self: HTTPResponse, *args: Any, **kwargs: Any) -> bytes:
        data = real_read(self, *args, **kwargs)
        read.append(len(data))
        return data

    monkeypatch.setattr(HTTPResponse, "read1", read1)
    monkeypatch.setattr(HTTPResponse, "read", read_all)
    tracemalloc.start()
    try:
        result, elapsed = timed_call(caller(), task(server.url()))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert (result.status, result.error) == (int(head[9:12]), None)
    assert result.body == "x" * RESPONSE_BODY_LIMIT
    assert sum(read) <= READ_CAP
    assert peak < 4 * READ_CAP + 512 * 1024  # bounded, whatever the server sends
    assert elapsed < 1


def test_a_status_line_dribbled_byte_by_byte_is_cut_at_the_budget(serve: Callable[..., Server]) -> None:
    server = serve(dribble(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0.5))

    result, elapsed = timed_call(caller(), task(server.url()))

    assert result.status is None
    assert result.error is not None
    assert "call budget" in result.error
    assert CONFIG.call_budget - 0.1 <= elapsed < CONFIG.call_budget + 1


def test_headers_dribbled_forever_are_cut_at_the_budget(serve: Callable[..., Server]) -> None:
    server = serve(dribble(b"X-Slow: " + b"a" * 100, 0.3, first=b"HTTP/1.1 200 OK\r\n"))

    result, elapsed = timed_call(caller(config=SHORT), task(server.url()))

    assert result.status is None
    assert result.error is not None
    assert "call budget" in result.error
    assert elapsed < SHORT.call_budget + 1


@pytest.mark.parametrize("framing", ["Content-Length: 100", "Connection: close", "Transfer-Encoding: chunked"])
def test_a_body_dribbled_slowly_is_cut_at_the_budget(serve: Callable[..., Server], framing: str) -> None:
    first = f"HTTP/1.1 200 OK\r\n{framing}\r\n\r\n".encode()
    data = b"1\r\nx\r\n" * 100 if "chunked" in framing else b"x" * 100
    server = serve(dribble(data, 0.3, first=first))

    result, elapsed = timed_call(caller(config=SHORT), task(server.url()))

    assert result.status is None
    assert result.refused is False
    assert result.error is not None
    assert "call budget" in result.error
    assert SHORT.call_budget - 0.1 <= elapsed < SHORT.call_budget + 1


def test_a_cut_call_leaves_the_caller_usable(serve: Callable[..., Server]) -> None:
    slow = serve(dribble(b"HTTP/1.1 200 OK\r\n", 0.3))
    fine = serve(echo_entry)
    config = CallerConfig(connect_timeout=1.0, read_timeout=1.0, call_budget=0.8)
    http = caller(config=config)

    assert "call budget" in (http.call(task(slow.url())).error or "")
    for _ in range(3):  # the keep-alive connection is reused; no earlier watchdog cuts it
        assert http.call(task(fine.url())).status == 200
        time.sleep(0.3)
    assert fine.connections == 1


# -- the address policy -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "named"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("localhost", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("[::ffff:127.0.0.1]", "127.0.0.1"),
    ],
)
def test_loopback_is_refused_without_connecting(
    serve: Callable[..., Server], connects: list[tuple[str, int]], dns: dict[str, list[str]], host: str, named: str
) -> None:
    dns["localhost"] = ["127.0.0.1"]  # whatever the machine's hosts file says first
    server = serve(answer())

    result, elapsed = timed_call(caller(NOTHING), task(server.url(host=host)))

    assert result.refused is True
    assert result.status is None
    assert result.error is not None
    assert named in result.error
    assert result.error == f"refused to connect: {named} is a loopback address"
    assert elapsed < 1
    assert connects == []
    assert_untouched(server)


@pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 loopback here")
def test_ipv6_loopback_is_refused_without_connecting(
    serve: Callable[..., Server], connects: list[tuple[str, int]]
) -> None:
    server = serve(answer(), host="::1")

    result = caller(NOTHING).call(task(server.url()))

    assert result.refused is True
    assert result.error is not None
    assert "::1" in result.error
    assert connects == []
    assert_untouched(server)


@pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 loopback here")
def test_ipv6_loopback_is_reached_when_allowed(serve: Callable[..., Server]) -> None:
    server = serve(answer(200, b"six"), host="::1")

    result = caller().call(task(server.url()))

    assert (result.status, result.body, result.refused) == (200, "six", False)
    assert server.requests[0].headers["host"] == f"[::1]:{server.port}"


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "169.254.169.254",
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",
        "0.0.0.0",
        "fd00:ec2::254",
        "fe80::1",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
    ],
)
def test_a_name_resolving_to_a_private_address_is_refused_without_connecting(
    connects: list[tuple[str, int]], dns: dict[str, list[str]], address: str
) -> None:
    dns["hooks.example.com"] = [address]

    result = caller(NOTHING).call(task("http://hooks.example.com/hook"))

    assert result.refused is True
    assert result.status is None
    assert result.error is not None
    assert result.error.startswith("refused to connect: ")
    assert address.removeprefix("::ffff:") in result.error
    assert connects == []


def test_the_callme_policy_applies_on_top_of_requests_hardened(
    serve: Callable[..., Server], connects: list[tuple[str, int]]
) -> None:
    """requests-hardened lets any loopback address through once loopback is allowed; callme's
    policy only allows the networks it lists."""
    server = serve(answer())
    only_one = EgressPolicy.from_text("127.0.0.1/32")

    result = caller(only_one).call(task(server.url(host="127.0.0.2")))

    assert result.refused is True
    assert result.error is not None
    assert "127.0.0.2" in result.error
    assert connects == []
    assert caller(only_one).call(task(server.url())).status == 200


def test_dns_rebinding_connects_to_the_address_that_was_checked(
    serve: Callable[..., Server], connects: list[tuple[str, int]], dns: dict[str, list[str]]
) -> None:
    """The name answers a public address first and loopback on every later lookup. The caller
    must connect to the address it checked: the (simulated) public server gets the call, the
    loopback one never sees a connection."""
    internal = serve(answer(200, b"internal secrets"))
    public = serve(answer(200, b"public"))
    PUBLIC_PORT.append(public.port)
    dns["rebind.example.com"] = [PUBLIC_IP, "127.0.0.1"]

    result = caller(NOTHING).call(task(f"http://rebind.example.com:{internal.port}/hook"))

    assert (result.status, result.body, result.refused) == (200, "public", False)
    assert connects == [(PUBLIC_IP, internal.port)]
    assert public.requests[0].headers["host"] == f"rebind.example.com:{internal.port}"
    assert_untouched(internal)


def test_a_rebinding_name_is_checked_again_on_a_later_call(
    serve: Callable[..., Server], connects: list[tuple[str, int]], dns: dict[str, list[str]]
) -> None:
    """A pooled connection is keyed by the pinned address: the next call resolves again, and the
    loopback answer is refused rather than sent down the old connection or a new one."""
    internal = serve(answer())
    public = serve(echo_entry)
    PUBLIC_PORT.append(public.port)
    dns["rebind.example.com"] = [PUBLIC_IP, "127.0.0.1"]
    http = caller(NOTHING)
    url = f"http://rebind.example.com:{internal.port}/hook"

    assert http.call(task(url)).status == 200
    second = http.call(task(url))

    assert second.refused is True
    assert second.error is not None
    assert "127.0.0.1" in second.error
    assert connects == [(PUBLIC_IP, internal.port)]
    assert len(public.requests) == 1
    assert_untouched(internal)


def test_a_name_that_takes_the_whole_budget_to_resolve_is_not_called(
    monkeypatch: pytest.MonkeyPatch, connects: list[tuple[str, int]]
) -> None:
    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.2)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (PUBLIC_IP, 80))]

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    config = CallerConfig(connect_timeout=1.0, read_timeout=1.0, call_budget=1.0)

    result = caller(NOTHING, config).call(task("http://slow-dns.example.com/hook"))

    assert (result.status, result.refused) == (None, False)
    assert "call budget" in (result.error or "")
    assert connects == []


def test_an_unresolvable_name_is_a_network_error(dns: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)

    result = caller(NOTHING).call(task("http://nowhere.example.com/hook"))

    assert (result.status, result.refused) == (None, False)
    assert result.error == "could not resolve the callback's host"


# -- concurrency --------------------------------------------------------------------------------


def test_many_calls_in_parallel_on_one_caller(serve: Callable[..., Server]) -> None:
    servers = [serve(echo_entry) for _ in range(3)]
    http = caller()
    entries = [task(servers[i % 3].url(), "POST", f'{{"n": {i}}}', name=f"t{i}") for i in range(96)]

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(http.call, entries))

    assert [r.status for r in results] == [200] * len(entries)
    assert [r.body for r in results] == [str(e.key) for e in entries]
    assert sum(len(s.requests) for s in servers) == len(entries)
    for server in servers:
        for received in server.requests:
            Webhook(SECRET).verify(received.body, received.headers)


def test_a_slow_call_does_not_hold_up_parallel_ones(serve: Callable[..., Server]) -> None:
    slow = serve(dribble(b"HTTP/1.1 200 OK\r\n", 0.3))
    fast = serve(echo_entry)
    http = caller(config=SHORT)

    with ThreadPoolExecutor(max_workers=4) as pool:
        cut = pool.submit(http.call, task(slow.url()))
        time.sleep(0.2)
        start = time.monotonic()
        quick = [pool.submit(http.call, task(fast.url(), name=f"q{i}")) for i in range(6)]
        assert [f.result().status for f in quick] == [200] * 6
        assert time.monotonic() - start < 1
        assert "call budget" in (cut.result().error or "")


# -- TLS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def authority() -> Any:
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture
def trusting(monkeypatch: pytest.MonkeyPatch, authority: Any, tmp_path: Path) -> None:
    """The caller's sessions trust the test authority (and nothing else)."""
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    real = callback.new_session

    def new_session(*args: Any, **kwargs: Any) -> requests.Session:
        session = real(*args, **kwargs)
        session.verify = str(bundle)
        return session

    monkeypatch.setattr(callback, "new_session", new_session)


def tls_server(serve: Callable[..., Server], authority: Any, *names: str) -> Server:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(*names).configure_cert(context)
    return serve(answer(200, b"over tls"), tls=context)


def test_tls_with_a_matching_certificate_succeeds_on_the_pinned_address(
    serve: Callable[..., Server], authority: Any, trusting: None, dns: dict[str, list[str]]
) -> None:
    server = tls_server(serve, authority, "hooks.example.com")
    dns["hooks.example.com"] = ["127.0.0.1"]

    result = caller().call(task(server.url(scheme="https", host="hooks.example.com"), "POST", "{}"))

    assert (result.status, result.body, result.error) == (200, "over tls", None)
    assert server.requests[0].headers["host"] == f"hooks.example.com:{server.port}"


@pytest.mark.parametrize("host", ["hooks.example.com", "127.0.0.1"])
def test_tls_with_a_certificate_for_another_name_fails_verification(
    serve: Callable[..., Server], authority: Any, trusting: None, dns: dict[str, list[str]], host: str
) -> None:
    """The connection goes to the resolved address, but the certificate is still checked against
    the callback's own host name."""
    server = tls_server(serve, authority, "other.example.com")
    dns["hooks.example.com"] = ["127.0.0.1"]

    result = caller().call(task(server.url(scheme="https", host=host)))

    assert (result.status, result.refused) == (None, False)
    assert result.error is not None
    assert "certificate" in result.error
    assert server.requests == []


def test_tls_with_an_unknown_authority_fails_verification(
    serve: Callable[..., Server], authority: Any, dns: dict[str, list[str]]
) -> None:
    server = tls_server(serve, authority, "hooks.example.com")
    dns["hooks.example.com"] = ["127.0.0.1"]

    result = caller().call(task(server.url(scheme="https", host="hooks.example.com")))

    assert result.status is None
    assert result.error is not None
    assert "certificate" in result.error
    assert server.requests == []
