"""``python -m bench.journal``: what the local stack's durable journal costs (a micro-benchmark).

The embedded DynamoDB fsyncs its journal before it answers a write (group commit: writers waiting
at the same time share one fsync). This puts the same items, about 600 bytes each, from 1 and from
16 threads (the dispatcher writes outcomes from up to 16), with the fsync on and then replaced by
a no-op, each in a fresh state folder, and prints writes per second and each write's latency.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "functions"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402

from local.dynamodb import TABLE_NAMES, EmbeddedDynamoDB  # noqa: E402


def run(writes: int, threads: int) -> tuple[float, list[float]]:
    """Writes per second and every write's latency (s), in a fresh embedded DynamoDB."""
    from moto.moto_api._internal import moto_api_backend  # type: ignore[attr-defined]

    moto_api_backend.reset()
    with tempfile.TemporaryDirectory(dir=ROOT) as state:  # the disk `make run` writes to, not a tmpfs
        database = EmbeddedDynamoDB(Path(state))
        database.start()
        latencies: list[float] = []
        lock = threading.Lock()

        def writer(number: int) -> None:
            client: Any = boto3.client(
                "dynamodb",
                endpoint_url=database.endpoint,
                region_name="us-east-1",
                aws_access_key_id="local",
                aws_secret_access_key="local",
            )
            for i in range(number, writes, threads):
                item = {"task_name": {"S": f"journal-bench-{i:06d}"}, "trigger_at": {"N": "60"}, "x": {"S": "x" * 520}}
                began = time.perf_counter()
                client.put_item(TableName=TABLE_NAMES["TasksTable"], Item=item)
                with lock:
                    latencies.append(time.perf_counter() - began)

        workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
        began = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - began
        database.stop()
    return writes / elapsed, sorted(latencies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.journal", description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--repetitions", type=int, default=3, help="on and off alternate; medians are shown")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    print(f"{'threads':>7}  {'fsync':>5}  {'writes/s':>8}  {'p50 ms':>6}  {'p99 ms':>6}")
    for threads in (1, 16):
        runs: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
        for _ in range(args.repetitions):
            for durable in (True, False):
                with mock.patch.object(os, "fsync", os.fsync if durable else lambda fd: None):
                    rate, latencies = run(args.writes, threads)
                runs[durable].append((rate, latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]))
        for durable, figures in runs.items():
            rate, p50, p99 = (statistics.median(values) for values in zip(*figures, strict=True))
            mode = "on" if durable else "off"
            print(f"{threads:>7}  {mode:>5}  {rate:>8.0f}  {p50 * 1000:>6.2f}  {p99 * 1000:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
