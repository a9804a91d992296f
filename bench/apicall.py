"""How long the api Lambda handler takes for one ``PUT /task``, warm, against the local DynamoDB.

The real handler (handlers.api.lambda_handler) is called in this process with the API Gateway
proxy event the local stack builds, as Lambda would call it once its module is loaded. Both the
wall time and the CPU time of the calling thread are kept: Lambda bills the one, and gives a 512 MB
function only a share of a vCPU for the other.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from typing import Any

from local.gateway import proxy_event
from local.lambda_context import LocalContext

from .capacity import CALLBACK, LEASE_TABLE, STATS_TABLE, TASK_TABLE, payload_of


def measure(endpoint: str, calls: int, payload_bytes: int, warmup: int = 5) -> dict[str, Any]:
    os.environ.update(
        {
            "CALLME_TABLE_NAME": TASK_TABLE,
            "CALLME_LEASE_TABLE_NAME": LEASE_TABLE,
            "CALLME_STATS_TABLE_NAME": STATS_TABLE,
            "CALLME_DYNAMODB_ENDPOINT": endpoint,
            "POWERTOOLS_SERVICE_NAME": "callme",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
    )
    from handlers import api, wiring

    wiring.reset()
    context: Any = LocalContext.for_function("callme-api", timeout_seconds=10)
    body = json.dumps({"trigger_at": "+1h", "callback": CALLBACK, "payload": payload_of(payload_bytes)}).encode()
    headers = {"Content-Type": "application/json", "Host": "localhost"}
    durations = []
    cpu = []
    run = uuid.uuid4().hex[:8]
    for i in range(warmup + calls):
        event = proxy_event("PUT", f"/task/api-bench-{run}-{i:06d}", headers, body, "127.0.0.1")
        started, started_cpu = time.perf_counter(), time.thread_time()
        answer = api.lambda_handler(event, context)
        elapsed, elapsed_cpu = time.perf_counter() - started, time.thread_time() - started_cpu
        if answer["statusCode"] != 201:
            raise RuntimeError(f"PUT /task answered {answer['statusCode']}: {answer.get('body')}")
        if i >= warmup:
            durations.append(elapsed)
            cpu.append(elapsed_cpu)
    wiring.reset()
    return {
        "calls": calls,
        "median_ms": round(statistics.median(durations) * 1000, 3),
        "median_cpu_ms": round(statistics.median(cpu) * 1000, 3),
        "samples_ms": [round(d * 1000, 3) for d in durations],
    }
