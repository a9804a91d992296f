"""One slow callback host cannot take every caller of a run (moto's DynamoDB, real HTTP receivers).

A run of concurrency 4 finds 4 entries for a host that answers after 1 s, read first, then 8 for
a host that answers at once. Without a share per host the 4 slow calls take every caller and the
fast entries wait a whole second; with ``host_share`` 25 the slow host has one caller at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from callme.clock import SystemClock, minute_of
from callme.dispatch import DispatchEngine
from callme.dynamodb import DynamoDBLeaseStore, DynamoDBTaskRepository
from callme.task import Task, TaskDefinition, TaskKey, TaskState
from handlers import wiring
from local.dynamodb import TABLE_NAMES
from tests.conftest import ReceiverServer, Sink, dispatch_config

SLOW_SECONDS = 1.0


class SlowHost:
    """A receiver on another loopback address that answers after SLOW_SECONDS, counting the calls
    in flight at once."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most_in_flight = 0
        self.ended: list[float] = []
        self.lock = threading.Lock()
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with host.lock:
                    host.in_flight += 1
                    host.most_in_flight = max(host.most_in_flight, host.in_flight)
                time.sleep(SLOW_SECONDS)
                with host.lock:
                    host.in_flight -= 1
                    host.ended.append(time.time())
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ReceiverServer(("127.0.0.2", 0), Handler)
        self.url = f"http://127.0.0.2:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def slow_host() -> Iterator[SlowHost]:
    host = SlowHost()
    yield host
    host.server.shutdown()
    host.server.server_close()


def test_a_slow_host_takes_only_its_share_and_the_fast_ones_are_not_kept_waiting(
    aws: Any, sink: Sink, slow_host: SlowHost
) -> None:
    repository = DynamoDBTaskRepository(aws, TABLE_NAMES["TasksTable"], shards=1)
    minute = minute_of(time.time())
    slow = [TaskKey(f"slow{i}", minute - 60) for i in range(4)]  # a minute earlier: read first
    fast = [TaskKey(f"fast{i}", minute) for i in range(8)]
    for key in slow:
        repository.insert(Task.new(key, TaskDefinition(callback=f"{slow_host.url}/{key.name}"), minute - 3600))
    for key in fast:
        repository.insert(Task.new(key, TaskDefinition(callback=sink.on(f"/{key.name}")), minute - 3600))
    leases = DynamoDBLeaseStore(aws, TABLE_NAMES["LeasesTable"])
    config = dispatch_config(concurrency=4, host_share=25)
    report = DispatchEngine(repository, leases, wiring.caller(), SystemClock(), config).run([0])

    assert report.succeeded == 12
    assert slow_host.most_in_flight == 1, "25 % of 4 callers: one at a time for the slow host"
    fast_arrivals = [call.at for call in sink.received]
    assert len(fast_arrivals) == 8
    assert max(fast_arrivals) < min(slow_host.ended), "every fast entry is called before a slow one answers"
    assert all(t.state is TaskState.SUCCESSFUL for t in repository.get_many(slow + fast))
