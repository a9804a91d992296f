"""``python -m bench.features``: what custom headers and a failure hook add to a task's DynamoDB cost.

The same metered lifecycle as the capacity benchmark (bench.capacity.measure: PUT through the
service, one dispatch run, every request priced by DynamoDB's capacity rules), for a task without
either feature, one with two headers and an ``on_failure`` URL that succeeds, and one that fails and
so calls its hook. Prints the units per task, the stored item's size, and what the difference costs
per million tasks at list prices.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "functions"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import capacity, cost  # noqa: E402
from bench.services import DynamoDBService, use_local_credentials  # noqa: E402

FEATURES = {
    "headers": {"Authorization": "Bearer " + "t" * 40, "X-Tenant": "acme-eu-1"},
    "on_failure": "https://hooks.example.com/callme/failed",
}
CASES: dict[str, tuple[dict[str, Any], int]] = {
    "without headers or on_failure": ({}, 200),
    "with 2 headers and on_failure, succeeds": (FEATURES, 200),
    "with 2 headers and on_failure, fails (hook called)": (FEATURES, 404),
}


def measure(entries: int, shards: int, payload_bytes: int) -> dict[str, dict[str, Any]]:
    found = {}
    with DynamoDBService() as database:
        for case, (fields, status) in CASES.items():
            database.reset()
            run = capacity.measure(database.url, entries, shards, payload_bytes, 16, fields, status)
            found[case] = {
                "write_units_per_task": run["write_units_per_task"],
                "read_units_per_task": run["read_units_per_task"],
                "item_bytes_after_dispatch": run["item_bytes"]["after_dispatch"],
            }
    return found


def per_million_usd(units: dict[str, Any]) -> float:
    """DynamoDB's part of a million tasks' cost: requests, and storage for the retention period."""
    return float(
        units["write_units_per_task"] * cost.DYNAMODB_WRITE_PER_MILLION
        + units["read_units_per_task"] * cost.DYNAMODB_READ_PER_MILLION
        + 1e6 * (units["item_bytes_after_dispatch"] + 100) / 1e9 * cost.DYNAMODB_STORAGE_GB_MONTH
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--payload-bytes", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    use_local_credentials()
    found = measure(args.entries, args.shards, args.payload_bytes)
    if args.json:
        print(json.dumps(found, indent=2))
        return
    base = per_million_usd(found[next(iter(CASES))])
    print(f"DynamoDB per task ({args.entries} tasks, {args.payload_bytes}-byte payload, {args.shards} shards):")
    for case, units in found.items():
        usd = per_million_usd(units)
        print(
            f"  {case}: {units['write_units_per_task']:g} WRU, {units['read_units_per_task']:.4f} RRU, "
            f"item {units['item_bytes_after_dispatch']} B; ${usd:.3f} per million (+${usd - base:.3f})"
        )


if __name__ == "__main__":
    main()
