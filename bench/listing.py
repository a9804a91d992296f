"""What a ``GET /status/`` page costs against a table of finished entries, beside a plain page.

``finished`` finished entries (cancelled in past minutes, kept, not expired) and 3 future ones are
written straight into the local stack's embedded DynamoDB. Then the real api handler is called in
this process, as Lambda would call it, its DynamoDB client hooked by the benchmark's meter
(bench.capacity, which prices a filtered Scan by the items it evaluated): a plain page
(``?limit=100``: 100 finished entries), and ``?future_only&limit=100``, whose filter hides every
finished entry, page after page until no ``next``. Each is timed (wall clock) and priced.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "functions"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.capacity import CALLBACK, TASK_TABLE, CapacityMeter, client_for, payload_of, use_tables  # noqa: E402
from bench.report import Figure, figure, table  # noqa: E402
from bench.services import DynamoDBService, use_local_credentials  # noqa: E402
from callme.clock import minute_of  # noqa: E402
from callme.dynamodb import to_row  # noqa: E402
from callme.ports import LIST_REQUESTS  # noqa: E402
from callme.task import Task, TaskDefinition, TaskKey  # noqa: E402
from local.gateway import proxy_event  # noqa: E402
from local.lambda_context import LocalContext  # noqa: E402

FUTURE = 3
PAGE = 100


def fill(endpoint: str, finished: int, payload_bytes: int) -> list[str]:
    """``finished`` finished entries in past minutes and FUTURE pending ones; the future ones' keys."""
    client = client_for(endpoint)
    now = time.time()
    definition = TaskDefinition(callback=CALLBACK, payload=payload_of(payload_bytes))
    past = minute_of(now) - 3600
    done = [
        Task.new(TaskKey(f"done-{i:06d}", past - 60 * (i % 1000)), definition, now - 7200).cancelled(now, 86400)
        for i in range(finished)
    ]
    later = [Task.new(TaskKey(f"later-{i}", minute_of(now) + 86400), definition, now) for i in range(FUTURE)]
    rows = [to_row(task, 8) for task in done + later]
    for start in range(0, len(rows), 25):
        batch = {TASK_TABLE: [{"PutRequest": {"Item": row}} for row in rows[start : start + 25]]}
        while batch:
            batch = client.batch_write_item(RequestItems=batch).get("UnprocessedItems") or {}
    return sorted(str(task.key) for task in later)


def measure(endpoint: str, finished: int, repetitions: int, payload_bytes: int) -> dict[str, Any]:
    """Fill the table once, then time and price each kind of page ``repetitions`` times."""
    use_tables(endpoint)
    from handlers import api, wiring

    future = fill(endpoint, finished, payload_bytes)
    wiring.reset()
    meter = CapacityMeter(client_for(endpoint))
    meter.attach(wiring.api_repository()._client)

    def page(target: str, phase: str) -> tuple[dict[str, Any], float]:
        meter.phase = phase
        context: Any = LocalContext.for_function("callme-api", timeout_seconds=10)
        event = proxy_event("GET", target, {"Host": "localhost"}, b"", "127.0.0.1")
        began = time.perf_counter()
        response = api.lambda_handler(event, context)
        seconds = time.perf_counter() - began
        if response["statusCode"] != 200:
            raise RuntimeError(f"GET {target} answered {response['statusCode']}: {response['body']}")
        return json.loads(response["body"]), seconds

    runs: list[dict[str, Any]] = []
    for repetition in range(repetitions):
        plain, plain_seconds = page(f"/status/?limit={PAGE}", f"plain{repetition}")
        target = f"/status/?future_only&limit={PAGE}"
        seen: list[str] = []
        pages: list[dict[str, float]] = []
        first: dict[str, float] | None = None
        while True:
            answer, seconds = page(target, f"future{repetition}.{len(pages)}")
            totals = meter.totals(f"future{repetition}.{len(pages)}")
            pages.append({"seconds": seconds, "read_units": totals.base_read, "requests": totals.requests})
            seen += [f"{t['task_name']}@{t['trigger_at']}" for t in answer["tasks"]]
            if first is None:
                first = {**pages[0], "entries": len(answer["tasks"])}
            if "next" not in answer:
                break
            target = f"/status/?future_only&limit={PAGE}&start_from={quote(answer['next'])}"
        if sorted(seen) != future:
            raise RuntimeError(f"future_only listed {sorted(seen)}, expected {future}")
        plain_totals = meter.totals(f"plain{repetition}")
        runs.append(
            {
                "plain_page": {
                    "seconds": plain_seconds,
                    "read_units": plain_totals.base_read,
                    "requests": plain_totals.requests,
                    "entries": len(plain["tasks"]),
                },
                "future_first_page": first,
                "future_pages": len(pages),
                "future_page_seconds_max": max(p["seconds"] for p in pages),
                "future_page_read_units_max": max(p["read_units"] for p in pages),
                "future_page_requests_max": max(p["requests"] for p in pages),
                "future_all_seconds": sum(p["seconds"] for p in pages),
                "future_all_read_units": sum(p["read_units"] for p in pages),
            }
        )
    wiring.reset()
    return {
        "finished": finished,
        "future": FUTURE,
        "page": PAGE,
        "runs": runs,
        "median_plain_ms": round(statistics.median(r["plain_page"]["seconds"] for r in runs) * 1000, 1),
    }


def figures(result: dict[str, Any]) -> list[Figure]:
    """A plain ``GET /status/`` page beside ``?future_only`` pages over the finished entries."""
    runs = result["runs"]
    finished, page = result["finished"], result["page"]
    bound = LIST_REQUESTS * 128  # read units: a request reads at most 1 MB, eventually consistent
    return [
        figure(
            "listing.plain_page_ms",
            f"GET /status/?limit={page}, {finished:,} finished entries: time",
            [r["plain_page"]["seconds"] * 1000 for r in runs],
            "ms",
        ),
        figure(
            "listing.plain_page_read_units",
            "  read units",
            [r["plain_page"]["read_units"] for r in runs],
            "RRU",
        ),
        figure(
            "listing.future_first_page_ms",
            f"  ?future_only&limit={page} (3 future entries), first page: time",
            [r["future_first_page"]["seconds"] * 1000 for r in runs],
            "ms",
        ),
        figure(
            "listing.future_page_read_units_max",
            "    read units, the costliest page",
            [r["future_page_read_units_max"] for r in runs],
            "RRU",
            f"<= {bound} ({LIST_REQUESTS} requests of at most 1 MB)",
            bound,
        ),
        figure(
            "listing.future_page_requests_max",
            "    Scan requests, the most of a page",
            [r["future_page_requests_max"] for r in runs],
            "",
            f"<= {LIST_REQUESTS}",
            LIST_REQUESTS,
        ),
        figure("listing.future_pages", "    pages to list the 3", [r["future_pages"] for r in runs], ""),
        figure(
            "listing.future_all_ms",
            "    time, all pages",
            [r["future_all_seconds"] * 1000 for r in runs],
            "ms",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.listing", description=__doc__.splitlines()[0])
    parser.add_argument("--finished", type=int, default=10_000)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    use_local_credentials()
    with DynamoDBService() as database:
        result = measure(database.url, args.finished, args.repetitions, 200)
    print(table(figures(result)))
    print(f"load average {os.getloadavg()[0]:.1f}")
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
