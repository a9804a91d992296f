"""The local API as an HTTP server: framing, one JSON answer per request, HEAD, and load.

Requests are written byte by byte on raw sockets, as a hostile client would; every connection is
read until the server closes it, so a request that got no answer, two answers or a hanging
connection all fail the test.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import LocalStack

pytestmark = pytest.mark.e2e

TASK = json.dumps({"trigger_at": "+1h", "callback": "http://example.com/"}).encode()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    started = LocalStack(Path(tmp_path_factory.mktemp("state"))).start()
    yield started
    started.stop()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def exchange(stack: LocalStack, data: bytes, head: bool = False) -> list[Reply]:
    """Send ``data`` on one connection and read until the server closes it: every reply, parsed."""
    host, port = stack.url.removeprefix("http://").split(":")
    received = b""
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(data)
        while chunk := connection.recv(65536):  # a server that never closes times the test out
            received += chunk
    replies = []
    while received:
        top, _, received = received.partition(b"\r\n\r\n")
        status_line, *lines = top.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        length = 0 if head else int(headers.get("content-length", len(received)))
        replies.append(Reply(int(status_line.split()[1]), headers, received[:length]))
        received = received[length:]
    return replies


def request(method: str, target: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: callme", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def smuggled(name: str) -> bytes:
    """A complete PUT, to be hidden where a server that misreads framing would take it for a request."""
    return request("PUT", f"/task/{name}", {"Content-Length": str(len(TASK))}, TASK)


def stored(stack: LocalStack, name: str) -> bool:
    return stack.request("GET", f"/status/{name}").status_code == 200


def test_a_chunked_body_is_read_as_the_body(stack: LocalStack) -> None:
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (TASK[:10], TASK[10:])) + b"0\r\n\r\n"
    [reply] = exchange(stack, request("PUT", "/task/chunky", {"Transfer-Encoding": "chunked"}, chunks))
    assert reply.status == 201, reply
    assert json.loads(reply.body)["callback"] == "http://example.com/"
    assert stored(stack, "chunky")


@pytest.mark.parametrize(
    ("case", "data", "status", "named"),
    [
        (
            "a PUT hidden in a GET's body",
            request("GET", "/status/", {"Transfer-Encoding": "chunked"}, smuggled("hidden")),
            400,
            "chunked",
        ),
        (
            "a Content-Length over the limit, then a request in the unsent body",
            request("PUT", "/task/big", {"Content-Length": "20000000"}, smuggled("after-413")),
            413,
            "10485760",
        ),
        ("Content-Length abc", request("PUT", "/task/abc", {"Content-Length": "abc"}), 400, "Content-Length"),
        ("Content-Length -1", request("PUT", "/task/minus", {"Content-Length": "-1"}), 400, "Content-Length"),
        (
            "two different Content-Lengths",
            request("PUT", "/task/twice", {"Content-Length": str(len(TASK))}).replace(
                b"\r\n\r\n", b"\r\nContent-Length: 1\r\n\r\n"
            )
            + TASK,
            400,
            "Content-Length",
        ),
        (
            "both Content-Length and Transfer-Encoding",
            request("PUT", "/task/both", {"Content-Length": str(len(TASK)), "Transfer-Encoding": "chunked"}, TASK),
            400,
            "not both",
        ),
        (
            "a transfer coding other than chunked",
            request("PUT", "/task/gzip", {"Transfer-Encoding": "gzip"}, TASK),
            400,
            "Transfer-Encoding",
        ),
        (
            "a malformed chunk",
            request("PUT", "/task/badchunk", {"Transfer-Encoding": "chunked"}, b"zz\r\n" + TASK),
            400,
            "chunked",
        ),
        ("a garbled request line", b"GARBAGE\r\n\r\n", 400, "GARBAGE"),
        ("an HTTP/0.9 request line", b"PUT /task/old\r\n\r\n", 400, "HTTP/0.9"),
        ("a bad HTTP version", b"GET /status/ HTTP/9.9\r\n\r\n", 400, "version"),
        ("a header line too long", request("GET", "/status/", {"X-Long": "a" * 70_000}), 431, "too long"),
    ],
)
def test_a_badly_framed_request_gets_one_json_error_and_the_connection_closes(
    stack: LocalStack, case: str, data: bytes, status: int, named: str
) -> None:
    replies = exchange(stack, data)
    assert [reply.status for reply in replies] == [status], case
    answer = json.loads(replies[0].body)
    assert replies[0].headers["content-type"] == "application/json"
    assert named in (answer.get("error") or answer["message"])  # "message": API Gateway's own 413
    for name in ("hidden", "after-413", "abc", "minus", "twice", "both", "gzip", "badchunk", "old"):
        assert not stored(stack, name), f"{case}: {name} was stored"


def test_head_is_get_without_the_body(stack: LocalStack) -> None:
    stack.put("headed", trigger_at="+1h", callback="http://example.com/")
    for target in ("/status/headed", "/task/", "/status/nobody", "/openapi.json"):
        [get] = exchange(stack, request("GET", target, {}))
        [head] = exchange(stack, request("HEAD", target, {}), head=True)
        assert head.status == get.status != 405
        assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.body))
        assert head.headers["content-type"] == get.headers["content-type"]
        assert head.body == b""


def test_the_stack_logs_every_request_and_why_the_gateway_refused_one(stack: LocalStack) -> None:
    assert stack.request("GET", "/status/logged").status_code == 404
    too_long = stack.request("PUT", "/task/huge", "x" * 7_000_000)
    assert (too_long.status_code, too_long.json()) == (413, {"message": "Request Too Long"})
    expected = ("GET /status/logged -> 404", "PUT /task/huge: Request Too Long", "PUT /task/huge -> 413")
    deadline = time.monotonic() + 10
    while not all(line in "".join(stack.output) for line in expected) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [line for line in expected if line not in "".join(stack.output)] == []


def test_fifty_parallel_clients_get_every_answer_right(stack: LocalStack) -> None:
    """50 clients at once, each 2 PUTs and 2 GETs with and without ?pretty: no reset, no 5xx, and each
    answer is its own request's (a PUT's is its entry, a GET's is indented only when asked). It holds
    no speed goal: on a loaded machine it only takes longer."""
    failures: list[str] = []
    done: list[int] = []
    start = threading.Barrier(50)

    def client(number: int) -> None:
        session, count = requests.Session(), 0
        start.wait()
        while count < 4:
            name = f"load-{number}-{count}"
            try:
                if count % 2 == 0:
                    response = session.put(f"{stack.url}/task/{name}", data=TASK, timeout=30)
                    if response.status_code != 201 or response.json()["task_name"] != name:
                        failures.append(f"PUT {name}: {response.status_code} {response.text[:100]}")
                else:
                    pretty = number % 2 == 0
                    target = f"{stack.url}/status/load-{number}-{count - 1}" + ("?pretty" if pretty else "")
                    response = session.get(target, timeout=30)
                    if response.status_code != 200 or response.text.startswith("{\n") != pretty:
                        failures.append(f"GET {target}: {response.status_code} {response.text[:100]}")
            except requests.RequestException as error:
                failures.append(f"{name}: {error!r}")
            count += 1
        done.append(count)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert done == [4] * 50
