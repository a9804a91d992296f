"""The floor under the dispatcher's CPU per callback: a bare botocore PutItem and a bare requests GET.

``python -m bench.floor`` runs one repetition of the throughput runs (2,000 fast entries; 64 slow
ones of 0.5 s, to keep it short) and prints the dispatcher's CPU per callback beside the floor.
Measured in the benchmark's process, in each repetition of the throughput runs, on the same services
as the dispatch it is set beside: ``calls`` PutItem requests of an entry's item (a plain boto3
client, botocore's default configuration) to the embedded DynamoDB, then ``calls`` GET requests to
the sink on one ``requests.Session``; the process's CPU per request. A callback cannot cost the
dispatcher less than one of each; what it spends above their sum is callme's own work and the
libraries it adds (the scheduling loop, the consistent read before the call, signing, egress
checks, the outcome's conditional write and its recording).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "functions"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from bench.capacity import TASK_TABLE, client_for, payload_of  # noqa: E402
from callme.dynamodb import to_row  # noqa: E402
from callme.task import Task, TaskDefinition, TaskKey  # noqa: E402

WARMUP = 20


def measure(database_url: str, sink_url: str, calls: int) -> dict[str, Any]:
    client = client_for(database_url)
    now = time.time()
    definition = TaskDefinition(callback=f"{sink_url}/fast/floor", payload=payload_of(200))
    items = [to_row(Task.new(TaskKey(f"floor-{i:06d}", 1858809600), definition, now), 8) for i in range(calls + WARMUP)]

    def put(item: dict[str, Any]) -> None:
        client.put_item(TableName=TASK_TABLE, Item=item)

    put_cpu = _cpu_per_call(put, items)
    session = requests.Session()
    urls = [f"{sink_url}/fast/floor-{i}" for i in range(calls + WARMUP)]

    def get(url: str) -> None:
        session.get(url, timeout=10).raise_for_status()

    get_cpu = _cpu_per_call(get, urls)
    session.close()
    return {"calls": calls, "put_item_cpu_ms": round(put_cpu * 1000, 4), "get_cpu_ms": round(get_cpu * 1000, 4)}


def _cpu_per_call(call: Any, arguments: list[Any]) -> float:
    """CPU of this process per ``call``, after WARMUP calls (connections made, caches filled)."""
    for argument in arguments[:WARMUP]:
        call(argument)
    started = time.process_time()
    for argument in arguments[WARMUP:]:
        call(argument)
    return (time.process_time() - started) / (len(arguments) - WARMUP)


def main() -> int:
    from bench import throughput  # imported here: it measures the floor in each of its repetitions
    from bench.services import DynamoDBService, SinkService, use_local_credentials

    use_local_credentials()
    scenario = throughput.Scenario(slow_entries=64, slow_delay=0.5)
    with DynamoDBService() as database, SinkService() as sink:
        run = throughput.repetition(1, scenario, database, sink)
    used = run["dispatch"]["cpu_seconds"]
    dispatcher = used["dispatcher"] * 1000 / scenario.entries
    found = run["floor"]
    floor_sum = found["put_item_cpu_ms"] + found["get_cpu_ms"]
    print(
        json.dumps(
            {
                "dispatch_seconds": run["dispatch"]["seconds"],
                "dispatcher_cpu_ms_per_callback": round(dispatcher, 3),
                # not the dispatcher's: the embedded DynamoDB and the sink, each in its own process
                "dynamodb_cpu_ms_per_callback": round(used["dynamodb"] * 1000 / scenario.entries, 3),
                "sink_cpu_ms_per_callback": round(used["sink"] * 1000 / scenario.entries, 3),
                "storage_only_cpu_ms_per_callback": round(
                    run["storage_only"]["cpu_seconds"]["dispatcher"] * 1000 / scenario.entries, 3
                ),
                "http_only_cpu_ms_per_callback": round(
                    run["http_only"]["cpu_seconds"]["dispatcher"] * 1000 / scenario.entries, 3
                ),
                **found,
                "floor_cpu_ms": round(floor_sum, 4),
                "dispatcher_over_floor": round(dispatcher / floor_sum, 2),
                "load_average": os.getloadavg()[0],
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
