"""The local API Gateway in-process, in front of stand-in handlers: AWS's limits, held locally."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from local import gateway
from local.gateway import (
    API_GATEWAY_MAX_BODY,
    LAMBDA_MAX_REQUEST,
    LAMBDA_MAX_RESPONSE,
    GatewayError,
    GatewayResponses,
    LambdaFunction,
    LocalApiGateway,
    payload_size,
)
from local.template import function_timeout, gateway_responses, load_template


def ok(body: str = "{}", status: int = 200) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": body}


class Stub:
    """A Lambda handler whose behaviour each test sets; it records the events it was given."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.behaviour: Any = lambda event, context: ok()

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        answer: dict[str, Any] = self.behaviour(event, context)
        return answer


@pytest.fixture
def stub() -> Stub:
    return Stub()


@pytest.fixture
def start(stub: Stub) -> Iterator[Any]:
    """Start a gateway in front of the stub with a given function timeout; answers its URL."""
    gateways: list[LocalApiGateway] = []

    def start_gateway(timeout: float = 10.0, responses: GatewayResponses | None = None) -> str:
        api = LocalApiGateway(("127.0.0.1", 0), LambdaFunction("callme-api", stub, timeout), responses=responses)
        threading.Thread(target=api.serve_forever, args=(0.05,), daemon=True).start()
        gateways.append(api)
        return api.url

    yield start_gateway
    for api in gateways:
        api.shutdown()
        api.server_close()


@pytest.fixture
def url(start: Any) -> str:
    started: str = start()
    return started


def message_of(response: requests.Response) -> str:
    """API Gateway's own answer, in its default shape (no GatewayResponses configured)."""
    assert response.headers["Content-Type"] == "application/json"
    message: str = response.json()["message"]
    return message


def body_of_size(size: int, status: int = 200) -> dict[str, Any]:
    """A proxy response whose serialized form is exactly ``size`` bytes."""
    response = ok("", status)
    response["body"] = "x" * (size - payload_size(response))
    assert payload_size(response) == size
    return response


# -- Lambda's response limit ------------------------------------------------------------------------


def test_a_response_at_lambdas_limit_is_answered(url: str, stub: Stub) -> None:
    stub.behaviour = lambda event, context: body_of_size(LAMBDA_MAX_RESPONSE)
    response = requests.get(f"{url}/task/", timeout=30)
    assert response.status_code == 200
    assert len(response.content) > 6_000_000


def test_a_response_over_lambdas_limit_is_a_502_as_from_api_gateway(url: str, stub: Stub) -> None:
    stub.behaviour = lambda event, context: body_of_size(LAMBDA_MAX_RESPONSE + 1)
    response = requests.get(f"{url}/task/", timeout=30)
    assert response.status_code == 502
    assert message_of(response) == "Internal server error"


def test_the_limit_counts_the_envelope_with_its_escapes(url: str, stub: Stub) -> None:
    # 3.5 MB of quotes: each is escaped once more in the proxy envelope, 7 MB in all.
    quotes = '"' * 3_500_000
    stub.behaviour = lambda event, context: ok(quotes)
    response = requests.get(f"{url}/task/", timeout=30)
    assert response.status_code == 502


# -- request limits ---------------------------------------------------------------------------------


def test_a_body_whose_event_is_over_lambdas_request_limit_gets_413_and_no_invocation(url: str, stub: Stub) -> None:
    body = b"x" * (LAMBDA_MAX_REQUEST - 100)  # under 6 MB itself, over it with the event around it
    response = requests.put(f"{url}/task/big", data=body, timeout=30)
    assert response.status_code == 413
    assert response.json() == {"message": "Request Too Long"}
    assert stub.events == []


def test_a_body_between_6_and_10_mb_gets_413(url: str, stub: Stub) -> None:
    response = requests.put(f"{url}/task/big", data=b"x" * 8_000_000, timeout=30)
    assert response.status_code == 413
    assert stub.events == []


def test_a_body_just_under_the_request_limit_is_passed_on(url: str, stub: Stub) -> None:
    response = requests.put(f"{url}/task/big", data=b"x" * (LAMBDA_MAX_REQUEST - 10_000), timeout=30)
    assert response.status_code == 200
    assert payload_size(stub.events[0]) <= LAMBDA_MAX_REQUEST


@pytest.mark.parametrize("length", [str(API_GATEWAY_MAX_BODY + 1), "9" * 5000])
def test_a_content_length_over_api_gateways_limit_gets_413_before_the_body_is_sent(
    url: str, stub: Stub, length: str
) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(f"PUT /task/big HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode())
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert json.loads(body) == {"message": "HTTP content length exceeded 10485760 bytes."}
    assert stub.events == []


def test_a_chunked_body_over_api_gateways_limit_gets_413(url: str, stub: Stub) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(11):
            yield b"x" * (1024 * 1024)

    response = requests.put(f"{url}/task/big", data=chunks(), timeout=30)
    assert response.status_code == 413
    assert stub.events == []


# -- timeouts ---------------------------------------------------------------------------------------


def test_a_handler_past_the_function_timeout_is_a_502_on_time(start: Any, stub: Stub) -> None:
    remaining: list[int] = []

    def slow(event: dict[str, Any], context: Any) -> dict[str, Any]:
        remaining.append(context.get_remaining_time_in_millis())
        time.sleep(3)
        return ok()

    stub.behaviour = slow
    url = start(timeout=1.0)
    began = time.monotonic()
    response = requests.get(f"{url}/task/", timeout=30)
    assert response.status_code == 502
    assert message_of(response) == "Internal server error"
    assert time.monotonic() - began < 2.5  # not the 3 s the handler takes
    assert 0 < remaining[0] <= 1000  # the handler's context counts down the same timeout


def test_a_handler_past_the_integration_timeout_is_a_504(
    start: Any, stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway, "INTEGRATION_TIMEOUT", 0.5)
    stub.behaviour = lambda event, context: time.sleep(3) or ok()
    url = start(timeout=60)
    began = time.monotonic()
    response = requests.get(f"{url}/task/", timeout=30)
    assert response.status_code == 504
    assert message_of(response) == "Endpoint request timed out"
    assert time.monotonic() - began < 2.5


def test_the_api_functions_timeout_comes_from_the_template() -> None:
    template = load_template()
    assert function_timeout(template, "ApiFunction") == template["Resources"]["ApiFunction"]["Properties"]["Timeout"]
    assert function_timeout({"Resources": {"F": {}}, "Globals": {"Function": {"Timeout": 7}}}, "F") == 7
    assert function_timeout({"Resources": {"F": {"Properties": {}}}}, "F") == 3  # SAM's default


# -- failures of the function -------------------------------------------------------------------------


def test_a_handler_that_raises_is_a_502(url: str, stub: Stub) -> None:
    def fail(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("boom")

    stub.behaviour = fail
    response = requests.get(f"{url}/task/", timeout=30)
    assert response.status_code == 502
    assert message_of(response) == "Internal server error"


@pytest.mark.parametrize(
    "answer",
    [None, {"body": "{}"}, {"statusCode": "abc"}, {"statusCode": 200, "body": "%%", "isBase64Encoded": True}],
)
def test_a_malformed_proxy_response_is_a_502(url: str, stub: Stub, answer: Any) -> None:
    stub.behaviour = lambda event, context: answer
    response = requests.get(f"{url}/task/", timeout=30)
    assert response.status_code == 502


# -- how requests reach the function ----------------------------------------------------------------


def test_one_invocation_runs_at_a_time_as_in_one_execution_environment(url: str, stub: Stub) -> None:
    running, most = [0], [0]
    lock = threading.Lock()

    def counted(event: dict[str, Any], context: Any) -> dict[str, Any]:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return ok()

    stub.behaviour = counted
    threads = [threading.Thread(target=requests.get, args=(f"{url}/task/",), kwargs={"timeout": 30}) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(stub.events) == 8
    assert most[0] == 1


def test_repeated_headers_reach_the_event_as_api_gateway_sends_them(url: str, stub: Stub) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(b"GET /task/?a=1&a=2 HTTP/1.1\r\nHost: x\r\nX-Thing: one\r\nX-Thing: two\r\n\r\n")
        while connection.recv(65536):
            pass
    event = stub.events[0]
    assert event["headers"]["X-Thing"] == "two"
    assert event["multiValueHeaders"]["X-Thing"] == ["one", "two"]
    assert event["queryStringParameters"] == {"a": "2"}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"]}


def test_head_answers_the_status_and_headers_of_get_without_a_body(url: str, stub: Stub) -> None:
    stub.behaviour = lambda event, context: ok('{"tasks": []}', 200)
    get = requests.get(f"{url}/task/", timeout=30)
    head = requests.head(f"{url}/task/", timeout=30)
    assert head.status_code == get.status_code == 200
    assert head.headers["Content-Length"] == get.headers["Content-Length"] == str(len(get.content))
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
    assert head.content == b""


# -- API Gateway's own answers, as the template customises them ---------------------------------------


def test_api_gateways_own_answers_take_the_templates_shape(start: Any, stub: Stub) -> None:
    url = start(timeout=0.5, responses=GatewayResponses(gateway_responses(load_template())))
    stub.behaviour = lambda event, context: time.sleep(2) or ok()
    timed_out = requests.get(f"{url}/task/", timeout=30)
    stub.behaviour = lambda event, context: None
    malformed = requests.get(f"{url}/task/", timeout=30)
    too_long = requests.put(f"{url}/task/big", data=b"x" * 7_000_000, timeout=30)
    assert (timed_out.status_code, malformed.status_code) == (502, 502)
    assert set(timed_out.json()) == set(malformed.json()) == {"error"}  # callme's shape, from DEFAULT_5XX
    assert too_long.status_code == 413
    assert too_long.json() == {"message": "Request Too Long"}  # API Gateway lets no one customise this one


def test_a_gateway_response_is_rendered_from_its_template() -> None:
    responses = GatewayResponses(
        {
            "INTEGRATION_TIMEOUT": {
                "ResponseParameters": {"Headers": {"Retry-After": "'1'", "X-Asked": "method.request.header.x"}},
                "ResponseTemplates": {
                    "application/json": '{"error": $context.error.messageString, "type": "$context.error.responseType"}'
                },
            },
            "DEFAULT_5XX": {"StatusCode": "500", "ResponseTemplates": {"application/json": '{"failed": true}'}},
        }
    )
    timeout = responses.answer(GatewayError(504, 'timed "out"', response_type="INTEGRATION_TIMEOUT"))
    assert timeout.status == 504
    assert json.loads(timeout.body) == {"error": 'timed "out"', "type": "INTEGRATION_TIMEOUT"}
    assert dict(timeout.headers) == {"Content-Type": "application/json", "Retry-After": "1"}
    other = responses.answer(GatewayError(502, "Internal server error", response_type="API_CONFIGURATION_ERROR"))
    assert (other.status, json.loads(other.body)) == (500, {"failed": True})  # DEFAULT_5XX, its status too
    local = responses.answer(GatewayError(400, "bad framing"))  # the HTTP layer's own: callme's shape
    assert (local.status, json.loads(local.body)) == (400, {"error": "bad framing"})
