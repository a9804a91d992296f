"""``python -m bench.cancel``: cancel a task with many pending entries, as ``DELETE /task/<name>``.

The entries are written straight into the local stack's embedded DynamoDB (moto, in a process of
its own, as DynamoDB is elsewhere in AWS). Then the real api handler is called in this process, as
Lambda would call it, with a context of the api function's timeout (10 s in template.yaml), again
and again until it answers 200: each call cancels what it can before its deadline and says how many
(503 and ``cancelled`` when it stopped early). Printed, and written as JSON with ``--output``: each
call's status, entries cancelled and duration, and the totals. Nothing else runs meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "functions"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.capacity import CALLBACK, TASK_TABLE, use_tables  # noqa: E402
from bench.services import DynamoDBService, use_local_credentials  # noqa: E402

API_TIMEOUT = 10  # seconds: the api function's Timeout in template.yaml
NAME = "cancel-bench"
FIRST = 1858809600


def fill(endpoint: str, entries: int) -> None:
    """``entries`` pending entries of one task, a minute apart, written in batches."""
    import boto3

    from callme.dynamodb import to_row
    from callme.task import Task, TaskDefinition, TaskKey

    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    definition = TaskDefinition(callback=CALLBACK, payload="x" * 200)
    now = time.time()
    rows = [to_row(Task.new(TaskKey(NAME, FIRST + 60 * i), definition, now), 8) for i in range(entries)]
    for start in range(0, len(rows), 25):
        batch = {TASK_TABLE: [{"PutRequest": {"Item": row}} for row in rows[start : start + 25]]}
        while batch:
            batch = client.batch_write_item(RequestItems=batch).get("UnprocessedItems") or {}


def cancel_until_done(
    endpoint: str, entries: int, timeout: float = API_TIMEOUT, storage_cpu: Callable[[], float] = lambda: 0.0
) -> dict[str, Any]:
    use_tables(endpoint)
    from handlers import api, wiring
    from local.gateway import proxy_event
    from local.lambda_context import LocalContext

    wiring.reset()
    calls = []
    started, started_cpu, started_storage_cpu = time.perf_counter(), time.process_time(), storage_cpu()
    for _ in range(entries + 1):
        context: Any = LocalContext.for_function("callme-api", timeout_seconds=timeout)
        event = proxy_event("DELETE", f"/task/{NAME}", {"Host": "localhost"}, b"", "127.0.0.1")
        began = time.perf_counter()
        response = api.lambda_handler(event, context)
        seconds = time.perf_counter() - began
        answer = json.loads(response["body"])
        calls.append({"status": response["statusCode"], "cancelled": answer.get("cancelled"), "seconds": seconds})
        if response["statusCode"] == 200:
            break
    total = time.perf_counter() - started
    api_cpu, storage_cpu_used = time.process_time() - started_cpu, storage_cpu() - started_storage_cpu
    still_pending = wiring.api_repository().entries_of(NAME, None, time.time(), 1, active_only=True).tasks
    wiring.reset()
    cancelled = sum(call["cancelled"] or 0 for call in calls)
    return {
        "entries": entries,
        "function_timeout_seconds": timeout,
        "calls": calls,
        "cancelled": cancelled,
        "still_pending": len(still_pending),
        "seconds": round(total, 2),
        "longest_call_seconds": round(max(call["seconds"] for call in calls), 2),
        "entries_per_second": round(cancelled / total, 1),
        "api_cpu_ms_per_entry": round(api_cpu * 1000 / max(cancelled, 1), 2),
        "storage_cpu_ms_per_entry": round(storage_cpu_used * 1000 / max(cancelled, 1), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cancel", description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    use_local_credentials()
    with DynamoDBService() as database:
        fill(database.url, args.entries)
        result = cancel_until_done(database.url, args.entries, storage_cpu=database.cpu_seconds)
    for number, call in enumerate(result["calls"], 1):
        print(f"DELETE #{number}: {call['status']}, {call['cancelled']} cancelled in {call['seconds']:.2f} s")
    print(
        f"{result['cancelled']} of {args.entries} pending entries cancelled in {len(result['calls'])} calls, "
        f"{result['seconds']} s in all ({result['entries_per_second']}/s); longest call "
        f"{result['longest_call_seconds']} s (the function's timeout: {API_TIMEOUT} s); "
        f"still pending: {result['still_pending']}"
    )
    print(
        f"CPU per entry cancelled: {result['api_cpu_ms_per_entry']} ms in the api handler's process, "
        f"{result['storage_cpu_ms_per_entry']} ms in the embedded DynamoDB's; load average {os.getloadavg()[0]:.1f}"
    )
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["still_pending"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
