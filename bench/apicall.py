"""How long the api Lambda handler takes for one ``PUT /task``, and for one ``POST /tasks`` of 100,
warm, against the local DynamoDB.

The real handler (handlers.api.lambda_handler) is called in this process with the API Gateway
proxy event the local stack builds, as Lambda would call it once its module is loaded. Both the
wall time and the CPU time are kept: Lambda bills the one, and gives a 512 MB function only a share of
a vCPU for the other. The CPU time is the process's, since a batch writes its items from a pool of
threads (the embedded DynamoDB runs in a process of its own, so its work is not counted).
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from local.gateway import proxy_event
from local.lambda_context import LocalContext

from .capacity import CALLBACK, payload_of, use_tables

BATCH_SIZE = 100


def measure(endpoint: str, calls: int, payload_bytes: int, warmup: int = 5) -> dict[str, Any]:
    """``calls`` timed PUT /task, each creating one entry."""
    run = uuid.uuid4().hex[:8]
    body = json.dumps({"trigger_at": "+1h", "callback": CALLBACK, "payload": payload_of(payload_bytes)}).encode()
    requests = (("PUT", f"/task/api-bench-{run}-{i:06d}", body, 201) for i in range(warmup + calls))
    return _timed(endpoint, requests, warmup)


def measure_batch(endpoint: str, calls: int, payload_bytes: int, warmup: int = 2) -> dict[str, Any]:
    """``calls`` timed POST /tasks, each creating BATCH_SIZE entries (each item answered 201)."""
    run = uuid.uuid4().hex[:8]
    task = {"trigger_at": "+1h", "callback": CALLBACK, "payload": payload_of(payload_bytes)}

    def batch(i: int) -> bytes:
        tasks = [{"task_name": f"batch-bench-{run}-{i:05d}-{j:03d}", **task} for j in range(BATCH_SIZE)]
        return json.dumps({"tasks": tasks}).encode()

    requests = (("POST", "/tasks", batch(i), 200) for i in range(warmup + calls))
    result = _timed(endpoint, requests, warmup, check=_all_created)
    return {**result, "batch_size": BATCH_SIZE}


def _all_created(answer: dict[str, Any]) -> None:
    statuses = [item["status"] for item in json.loads(answer["body"])["results"]]
    if statuses != [201] * BATCH_SIZE:
        raise RuntimeError(f"POST /tasks answered items {sorted(set(statuses))}: {answer['body'][:500]}")


def _timed(
    endpoint: str,
    requests: Iterator[tuple[str, str, bytes, int]],
    warmup: int,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Each request through the real handler, in this thread: wall and CPU time of all but the first
    ``warmup``; each must answer its expected status (and pass ``check``)."""
    use_tables(endpoint, "WARNING")
    from handlers import api, wiring

    wiring.reset()
    context: Any = LocalContext.for_function("callme-api", timeout_seconds=10)
    headers = {"Content-Type": "application/json", "Host": "localhost"}
    durations = []
    cpu = []
    for i, (method, path, body, expected) in enumerate(requests):
        event = proxy_event(method, path, headers, body, "127.0.0.1")
        started, started_cpu = time.perf_counter(), time.process_time()
        answer = api.lambda_handler(event, context)
        elapsed, elapsed_cpu = time.perf_counter() - started, time.process_time() - started_cpu
        if answer["statusCode"] != expected:
            raise RuntimeError(f"{method} {path} answered {answer['statusCode']}: {answer.get('body')}")
        if check is not None:
            check(answer)
        if i >= warmup:
            durations.append(elapsed)
            cpu.append(elapsed_cpu)
    wiring.reset()
    return {
        "calls": len(durations),
        "median_ms": round(statistics.median(durations) * 1000, 3),
        "median_cpu_ms": round(statistics.median(cpu) * 1000, 3),
        "samples_ms": [round(d * 1000, 3) for d in durations],
    }
