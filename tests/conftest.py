"""Fixtures shared by every tier: sample events, Lambda contexts, the moto-backed tables."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import settings as hypothesis_settings
from moto import mock_aws

from callme.egress import EgressPolicy
from callme.service import TaskService
from callme.settings import CallerConfig, DispatchConfig, Limits, PublishConfig, Settings
from callme.task import Task, check_name
from callme.validation import parse_task_request
from local.dynamodb import TABLE_NAMES, EmbeddedDynamoDB, ensure_tables, linearize_moto
from local.gateway import proxy_event
from local.lambda_context import LocalContext

ROOT = Path(__file__).resolve().parent.parent

# Hypothesis's per-example deadline times the machine, not callme: under a loaded CI runner or
# xdist workers it failed correct tests as flaky. Speed goals live in the benchmark.
hypothesis_settings.register_profile("callme", deadline=None)
hypothesis_settings.load_profile("callme")


class ReceiverServer(ThreadingHTTPServer):
    """A loopback receiver of callbacks. The dispatcher opens up to its concurrency (64) connections
    at once: http.server's backlog of 5 would reset some of them on a loaded machine."""

    daemon_threads = True
    request_queue_size = 128


EVENTS = ROOT / "events"


def load_event(name: str) -> dict[str, Any]:
    """A sample event from events/ (the same files `sam local invoke -e` takes)."""
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return event


def settings(**changes: Any) -> Settings:
    """callme's defaults (as with no CALLME_* variable set but the table names), with ``changes``."""
    return Settings(TABLE_NAMES["TasksTable"], TABLE_NAMES["LeasesTable"], TABLE_NAMES["StatsTable"], **changes)


def default_limits(**changes: Any) -> Limits:
    return replace(settings().limits, **changes)


def dispatch_config(**changes: Any) -> DispatchConfig:
    return replace(settings().dispatch, **changes)


def publish_config(**changes: Any) -> PublishConfig:
    return replace(settings().publish, **changes)


def caller_config(**changes: Any) -> CallerConfig:
    return replace(settings().caller, **changes)


def put(service: TaskService, name: str, body: dict[str, Any]) -> tuple[Task, bool]:
    """``PUT /task/<name>`` with ``body`` through ``service``, parsed as the API parses it, now."""
    limits, policy = service.limits, EgressPolicy.from_text("127.0.0.0/8,::1/128")
    return service.put_task(parse_task_request(check_name(name), body, service.clock.now(), limits, policy))


_CURL = load_event("api-get-task")["headers"]  # what curl sends, as in the sample events


def api_event(
    method: str, target: str, body: str | bytes | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """The event API Gateway sends the api function for ``method target`` from curl: the local
    gateway's own (local.gateway.proxy_event), a JSON ``Content-Type`` with a body."""
    sent = {**_CURL, **({"Content-Type": "application/json"} if body is not None else {}), **(headers or {})}
    data = body.encode() if isinstance(body, str) else body or b""
    return proxy_event(method, target, sent, data, "203.0.113.7")


@pytest.fixture
def lambda_context() -> LocalContext:
    return LocalContext.for_function("callme-test", timeout_seconds=60)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's DynamoDB with the tables of template.yaml; the handlers' wiring pointed at it."""
    from handlers import wiring

    handler_environment(monkeypatch)
    linearize_moto()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        ensure_tables(client=client)
        wiring.reset()
        yield client
    wiring.reset()


@pytest.fixture
def served_storage(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The local stack's embedded DynamoDB on a loopback port, the handlers' wiring pointed at it.
    Unlike moto in-process, every request crosses a socket, so the api client's timeouts bound
    each try as they do in AWS: for tests that time requests."""
    from handlers import wiring

    handler_environment(monkeypatch)
    database = EmbeddedDynamoDB(None)
    database.start()
    monkeypatch.setenv("CALLME_DYNAMODB_ENDPOINT", database.endpoint)
    wiring.reset()
    yield boto3.client("dynamodb", endpoint_url=database.endpoint, region_name="us-east-1")
    wiring.reset()
    database.stop()


HEADERS_KEY = "test-headers-key-0123456789-abcdefghijklmnop"  # seals the header values tasks store


def handler_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables the handlers read, as the tests set them (no endpoint: moto in-process)."""
    for name, value in {
        "CALLME_TABLE_NAME": TABLE_NAMES["TasksTable"],
        "CALLME_LEASE_TABLE_NAME": TABLE_NAMES["LeasesTable"],
        "CALLME_STATS_TABLE_NAME": TABLE_NAMES["StatsTable"],
        "CALLME_SCHEDULE_TABLE_NAME": TABLE_NAMES["SchedulesTable"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "CALLME_ALLOW_NETWORKS": "127.0.0.0/8,::1/128",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "CALLME_HEADERS_KEY": HEADERS_KEY,
    }.items():
        monkeypatch.setenv(name, value)
    for name in (
        "CALLME_DYNAMODB_ENDPOINT",
        "CALLME_SIGNING_SECRET",
        "CALLME_SIGNING_SECRET_ID",
        "CALLME_HEADERS_KEY_ID",
    ):
        monkeypatch.delenv(name, raising=False)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Sink:
    """A loopback HTTP server recording every callback; per-path scripts of statuses and delays."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    statuses: dict[str, list[int]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, path: str, *statuses: int, delay: float = 0.0) -> str:
        self.statuses[path] = list(statuses)
        if delay:
            self.delays[path] = delay
        return self.url + path

    def calls(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def wait_for(self, path: str, count: int = 1, timeout: float = 10) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.calls(path)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{path} got {len(self.calls(path))} calls, expected {count}")


@pytest.fixture
def sink() -> Iterator[Sink]:
    with serve_sink() as recorder:
        yield recorder


@contextmanager
def serve_sink() -> Iterator[Sink]:
    """A Sink listening on loopback until the block ends (the ``sink`` fixture, for any scope)."""
    recorder = Sink()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = self.path
            with recorder.lock:
                recorder.received.append(
                    Received(self.command, path, {k.lower(): v for k, v in self.headers.items()}, body, time.time())
                )
                script = recorder.statuses.get(path, [])
                status = script.pop(0) if len(script) > 1 else (script[0] if script else 200)
            delay = recorder.delays.get(path)
            if delay:
                time.sleep(delay)
            payload = b"ok"
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ReceiverServer(("127.0.0.1", 0), Handler)
    recorder.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()


def stored_items(client: Any, table: str = TABLE_NAMES["TasksTable"]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.scan(TableName=table)["Items"]
    return items
