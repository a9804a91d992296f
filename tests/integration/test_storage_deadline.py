"""Storage that hangs or crawls: the api answers 503 with Retry-After in time, never a Lambda timeout.

The api function has 10 s (template.yaml). Past it Lambda kills the invocation and API Gateway
answers 502. The handler gives the request a deadline (the time the context has left, minus a
margin to answer); no DynamoDB try starts, and no retry is made, that could end after it.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from handlers import api, wiring
from local.lambda_context import LocalContext
from tests.conftest import api_event

TASK = {"trigger_at": "1858809600", "callback": "http://example.com/x"}
API_TIMEOUT = 10  # the api function's Timeout in template.yaml


@pytest.fixture
def hanging_storage(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A DynamoDB endpoint that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
    monkeypatch.setenv("CALLME_DYNAMODB_ENDPOINT", endpoint)
    wiring.reset()
    yield endpoint
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()
    wiring.reset()


def timed_call(context: Any, method: str, target: str, body: Any = None) -> tuple[int, Any, dict[str, Any], float]:
    started = time.monotonic()
    raw = None if body is None else json.dumps(body)
    response = api.lambda_handler(api_event(method, target, raw), context)
    elapsed = time.monotonic() - started
    headers = {k.lower(): v for k, v in (response.get("multiValueHeaders") or {}).items()}
    return response["statusCode"], json.loads(response["body"]), headers, elapsed


def test_a_hanging_storage_answers_503_before_the_functions_timeout(hanging_storage: str) -> None:
    context = LocalContext.for_function("callme-api", timeout_seconds=API_TIMEOUT)
    status, answer, headers, elapsed = timed_call(context, "PUT", "/task/job", TASK)
    assert status == 503, answer
    assert headers["retry-after"] == ["1"]
    assert "storage" in answer["error"] and "retry" in answer["error"]
    assert elapsed < API_TIMEOUT - wiring.settings().answer_margin_seconds, f"answered after {elapsed:.1f} s"


@pytest.mark.parametrize(
    ("method", "target", "body"),
    [
        ("GET", "/status/job@1858809600", None),
        ("GET", "/status/job", None),
        ("GET", "/status/", None),
        ("DELETE", "/task/job@1858809600", None),
        ("DELETE", "/task/job", None),
        ("POST", "/reschedule/job", None),
    ],
)
def test_every_route_answers_503_in_time_when_storage_hangs(
    hanging_storage: str, method: str, target: str, body: Any
) -> None:
    context = LocalContext.for_function("callme-api", timeout_seconds=5)
    status, answer, headers, elapsed = timed_call(context, method, target, body)
    assert status == 503, answer
    assert headers["retry-after"] == ["1"]
    assert elapsed < 5 - wiring.settings().answer_margin_seconds, f"answered after {elapsed:.1f} s"


def crawl(delay: float) -> None:
    """From now on, every DynamoDB request of the api takes ``delay`` seconds, then succeeds."""

    def wait(**_: Any) -> None:
        time.sleep(delay)

    wiring.api_repository()._client.meta.events.register("before-send.dynamodb", wait)


def test_a_slow_storage_cannot_keep_a_long_request_past_its_deadline(served_storage: Any) -> None:
    # Given a task with many pending entries, and a storage that takes 0.4 s a request
    context = LocalContext.for_function("callme-api", timeout_seconds=60)
    for i in range(40):
        assert timed_call(context, "PUT", "/task/job", {**TASK, "trigger_at": str(1858809600 + 60 * i)})[0] == 201
    crawl(0.4)
    # When the whole task is cancelled with 5 s left
    context = LocalContext.for_function("callme-api", timeout_seconds=5)
    status, answer, headers, elapsed = timed_call(context, "DELETE", "/task/job")
    # Then the answer comes in time, and says how far it got
    assert elapsed < 5 - wiring.settings().answer_margin_seconds, f"answered after {elapsed:.1f} s"
    assert status == 503, answer
    assert headers["retry-after"] == ["1"]
    assert 0 < answer["cancelled"] < 40
