"""Concurrent clients of one entry, and the API's edge cases, over HTTP on the local stack."""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.e2e.conftest import LocalStack, Sink, next_minute

pytestmark = pytest.mark.e2e
PARALLEL = 20


def at_once(
    stack: LocalStack, count: int, request: Callable[[requests.Session, int], requests.Response]
) -> list[requests.Response]:
    """``count`` requests from as many clients, released together. Each client's connection is opened
    first, one after another, so that what runs at once is the requests (the API), not the connects."""
    clients = [requests.Session() for _ in range(count)]
    for client in clients:
        assert client.get(stack.url + "/openapi.json", timeout=30).status_code == 200
    start = threading.Barrier(count)

    def one(i: int) -> requests.Response:
        start.wait()
        return request(clients[i], i)

    try:
        with ThreadPoolExecutor(max_workers=count) as pool:
            return list(pool.map(one, range(count)))
    finally:
        for client in clients:
            client.close()


def send(client: requests.Session, stack: LocalStack, method: str, path: str, body: Any = None) -> requests.Response:
    return client.request(method, stack.url + path, data=None if body is None else json.dumps(body), timeout=30)


def failed_entries(stack: LocalStack, sink: Sink, name: str, count: int) -> int:
    """``count`` entries of ``name`` called and failed (404, no retry); their first minute."""
    trigger = next_minute()
    for i in range(count):
        stack.put(name, trigger_at=trigger + 60 * i, callback=sink.on(f"/{name}", 404), retry=0)
    report = stack.tick(trigger + 60 * (count - 1) + 1)
    assert report["failed"] == count, report
    return trigger


def pending(stack: LocalStack, name: str) -> list[str]:
    tasks = stack.request("GET", f"/status/{name}").json()["tasks"]
    return [f"{name}@{t['trigger_at']}" for t in tasks if t["task_state"] == "pending"]


def test_parallel_reschedules_of_one_entry_make_one_successor(stack: LocalStack, sink: Sink) -> None:
    trigger = failed_entries(stack, sink, "once", 1)

    answers = at_once(
        stack,
        PARALLEL,
        lambda client, i: send(
            client, stack, "POST", f"/reschedule/once@{trigger}", {"trigger_at": trigger + 3600 + 60 * i}
        ),
    )

    statuses = Counter(a.status_code for a in answers)
    assert statuses == {201: 1, 409: PARALLEL - 1}, [a.text for a in answers]
    [created] = [a.json()["tasks"][0] for a in answers if a.status_code == 201]
    successor = f"once@{created['trigger_at']}"
    assert all(
        a.json()["error"].startswith(f"entry once@{trigger} was already rescheduled to {successor}")
        for a in answers
        if a.status_code == 409
    )
    assert pending(stack, "once") == [successor]


def test_parallel_reschedules_by_name_make_one_successor(stack: LocalStack, sink: Sink) -> None:
    trigger = failed_entries(stack, sink, "byname", 3)

    answers = at_once(
        stack,
        PARALLEL,
        lambda client, _: send(client, stack, "POST", "/reschedule/byname", {"trigger_at": trigger + 3600}),
    )

    assert Counter(a.status_code for a in answers) == {201: 1, 200: PARALLEL - 1}, [a.text for a in answers]
    assert all(a.json() == {"tasks": []} for a in answers if a.status_code == 200)
    [created] = [a.json()["tasks"][0] for a in answers if a.status_code == 201]
    assert pending(stack, "byname") == [f"byname@{created['trigger_at']}"]


def test_parallel_writers_of_one_entry_never_get_a_503(stack: LocalStack) -> None:
    trigger = next_minute() + 3600
    body = {"trigger_at": trigger, "callback": "http://example.com/x"}

    puts = at_once(stack, PARALLEL, lambda client, _: send(client, stack, "PUT", "/task/busy", body))
    assert sorted(a.status_code for a in puts) == [200] * (PARALLEL - 1) + [201], [a.text for a in puts]

    def put_or_cancel(client: requests.Session, i: int) -> requests.Response:
        if i % 2:
            return send(client, stack, "DELETE", f"/task/busy@{trigger}")
        return send(client, stack, "PUT", "/task/busy", body)

    mixed = at_once(stack, PARALLEL, put_or_cancel)
    assert {a.status_code for a in mixed} <= {200, 201, 409}, [a.text for a in mixed]


def raw(stack: LocalStack, method: str, path: str, body: str | None = None) -> tuple[int, Any]:
    """A request whose path is sent exactly as written (clients like requests resolve dot segments)."""
    address = urlsplit(stack.url)
    connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_names_are_refused(stack: LocalStack, name: str) -> None:
    status, answer = raw(stack, "PUT", f"/task/{name}", '{"trigger_at": "+1h", "callback": "http://example.com/"}')
    assert status == 400
    assert f"task name {name!r} is invalid" in answer["error"]


@pytest.mark.parametrize(
    ("method", "target", "body", "status", "named"),
    [
        ("GET", "/task/a/b", None, 404, "no route GET /task/a/b"),
        ("GET", "/status/x?limit=1&limit=2", None, 400, "'limit' (2 times) repeated"),
        ("GET", "/task/x@1858809600?limit=abc", None, 400, "limit must be an integer"),
        (
            "PUT",
            "/task/now",
            {"trigger_at": "+0m", "callback": "http://example.com/", "max_delay": 1},
            400,
            "can never be called",
        ),
        ("PUT", "/task/host", {"trigger_at": "+1h", "callback": "https://[v7.abc]/"}, 400, "invalid host"),
    ],
)
def test_edge_requests_get_their_documented_answer(
    stack: LocalStack, method: str, target: str, body: Any, status: int, named: str
) -> None:
    response = stack.request(method, target, body)
    assert response.status_code == status, response.text
    assert named in response.json()["error"]
