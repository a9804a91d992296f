"""``python -m bench``: callme's benchmark (``make bench``); ``--smoke`` is the tiny run CI makes.

It measures, side by side in one run: DynamoDB request units per task lifecycle, dispatch
throughput against its two ceilings, slow endpoints, lateness, cold start, what a ``GET /status/``
page costs against a table of finished entries, and derives the cost
per million callbacks. It prints a table and writes the figures, targets, every run's raw values
and the machine's details to bench/results.json (bench/results-smoke.json for ``--smoke``).
The README's Performance section says what each figure means and what limits it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "functions"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import apicall, capacity, coldstart, cost, events, listing, schedules, simulate, throughput  # noqa: E402
from bench.report import REQUIRED_FIGURES, Figure, figure, load_now, machine, median, table  # noqa: E402
from bench.services import DynamoDBService, use_local_credentials  # noqa: E402

SECTIONS = ("capacity", "throughput", "coldstart")


@dataclass(frozen=True)
class Sizes:
    repetitions: int
    scenario: throughput.Scenario
    capacity_entries: int
    api_calls: int
    coldstart_repetitions: int
    batch_calls: int  # POST /tasks of apicall.BATCH_SIZE, timed
    outcome_events: int  # published to the local EventBridge, timed
    listing_finished: int  # finished entries a GET /status/ page is listed against (bench.listing)
    schedule_runs: int  # a schedule's runs dispatched through the metered client


FULL = Sizes(3, throughput.Scenario(), 2000, 200, 9, 10, 1000, 10_000, 30)
SMOKE = Sizes(1, throughput.Scenario(entries=40, slow_entries=20, slow_delay=0.5), 16, 10, 1, 2, 50, 300, 3)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and one repetition (CI)")
    parser.add_argument("--repetitions", type=int, help="repetitions of the timed runs (default 3, smoke 1)")
    parser.add_argument("--output", type=Path, help="where to write the results (default bench/results.json)")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    if args.repetitions:
        sizes = replace(sizes, repetitions=args.repetitions)
    output = args.output or ROOT / "bench" / ("results-smoke.json" if args.smoke else "results.json")
    use_local_credentials()

    started = time.perf_counter()
    results: dict[str, Any] = {
        "benchmark": "callme",
        "smoke": args.smoke,
        "machine": machine(),
        "sizes": asdict(sizes),
    }
    scenario = sizes.scenario
    log(f"callme benchmark{' (smoke)' if args.smoke else ''}: {sizes.repetitions} repetition(s)")

    log("capacity: creating and dispatching entries through the metered client")
    with DynamoDBService() as database:
        capacity_runs = []
        for _ in range(sizes.repetitions):
            database.reset()
            capacity_runs.append(
                capacity.measure(
                    database.url, sizes.capacity_entries, scenario.shards, scenario.payload_bytes, scenario.concurrency
                )
            )
        schedule_runs = schedules.repeated(database, sizes.repetitions, sizes.schedule_runs, scenario, log)
        database.reset()
        log("api: timing PUT /task through the api handler")
        api_runs = [
            apicall.measure(database.url, sizes.api_calls, scenario.payload_bytes) for _ in range(sizes.repetitions)
        ]
        batch_runs, event_runs = _feature_runs(database.url, sizes)
        results["listing"] = _listing(database, sizes)
    results.update(capacity={"runs": capacity_runs}, schedules={"runs": schedule_runs})
    results["api"] = {"runs": api_runs, "batch_runs": batch_runs}
    results["outcome_events"] = {"runs": event_runs}

    log(f"throughput: {scenario.entries} fast and {scenario.slow_entries} slow entries per repetition")
    throughput_runs = throughput.run(scenario, sizes.repetitions, log)
    results["throughput"] = {"scenario": asdict(scenario), "runs": throughput_runs}

    log("cold start: importing each handler in fresh interpreters")
    coldstart_result = coldstart.measure(sizes.coldstart_repetitions)
    results["coldstart"] = coldstart_result

    estimate = _cost(capacity_runs, api_runs, throughput_runs, scenario, batch_runs, event_runs)
    results["cost"] = estimate

    log("simulation: the dispatch model, checked against these runs, then at scale")
    results["simulation"] = simulate.simulate(results, with_sweep=not args.smoke)

    figures = [
        *build_figures(capacity_runs, api_runs, throughput_runs, coldstart_result, estimate, scenario),
        *schedules.figures(schedule_runs, capacity_runs),
        *listing.figures(results["listing"]),
        *simulate.figures(results["simulation"]),
    ]
    figures += _feature_figures(batch_runs, estimate)
    missing = (set(REQUIRED_FIGURES) | set(simulate.FIGURES)) - {f.key for f in figures}
    if missing:
        raise RuntimeError(f"figures missing: {sorted(missing)}")
    results["figures"] = {f.key: f.as_dict() for f in figures}
    results["targets"] = {f.key: {"target": f.target, "met": f.met} for f in figures if f.met is not None}
    results["machine"]["load_average_at_end"] = load_now()
    results["seconds"] = round(time.perf_counter() - started, 1)

    output.write_text(json.dumps(results, indent=2) + "\n")
    _print(figures, results)
    print(f"written to {output}")
    return 0


def _listing(database: DynamoDBService, sizes: Sizes) -> dict[str, Any]:
    database.reset()
    log(f"listing: GET /status/ pages against {sizes.listing_finished} finished entries")
    return listing.measure(database.url, sizes.listing_finished, sizes.repetitions, sizes.scenario.payload_bytes)


def _print(figures: list[Figure], results: dict[str, Any]) -> None:
    """The table, the cost's arithmetic, the simulation, and the machine."""
    print(table(figures))
    print()
    print(cost.render(results["cost"]))
    print()
    print(simulate.render(results["simulation"]))
    print()
    m = results["machine"]
    print(
        f"{m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['platform']}; load average "
        f"{m['load_average_at_start']} at start, {m['load_average_at_end']} at end; {results['seconds']} s."
    )


def _cost(
    capacity_runs: list[dict[str, Any]],
    api_runs: list[dict[str, Any]],
    throughput_runs: list[dict[str, Any]],
    scenario: throughput.Scenario,
    batch_runs: list[dict[str, Any]],
    event_runs: list[dict[str, Any]],
) -> dict[str, Any]:
    def m(runs: list[dict[str, Any]], *path: str) -> float:
        return throughput.median_of(runs, *path)

    inputs = cost.Inputs(
        write_units_per_task=m(capacity_runs, "write_units_per_task"),
        read_units_per_task=m(capacity_runs, "read_units_per_task"),
        read_units_before_call_per_task=m(capacity_runs, "read_units_before_call_per_task"),
        lease_write_units_per_shard_run=m(capacity_runs, "per_shard_run", "write_units"),
        stats_write_units_per_shard_run=m(capacity_runs, "stats_per_shard_run", "write_units"),
        peek_read_units_per_minute=m(capacity_runs, "per_minute_peek", "read_units"),
        item_bytes=int(m(capacity_runs, "item_bytes", "after_dispatch")),
        api_seconds_per_create=cost.lambda_seconds(
            m(api_runs, "median_ms") / 1000, m(api_runs, "median_cpu_ms") / 1000, cost.API_MEMORY_MB
        ),
        dispatcher_seconds_per_callback=cost.lambda_seconds(
            m(throughput_runs, "dispatch", "seconds") / scenario.entries,
            m(throughput_runs, "dispatch", "cpu_seconds", "dispatcher") / scenario.entries,
            cost.DISPATCHER_MEMORY_MB,
        ),
        slow_dispatcher_seconds_per_callback=cost.lambda_seconds(
            m(throughput_runs, "slow", "seconds") / scenario.slow_entries,
            m(throughput_runs, "slow", "cpu_seconds", "dispatcher") / scenario.slow_entries,
            cost.DISPATCHER_MEMORY_MB,
        ),
        coordinator_seconds_per_minute=m(throughput_runs, "dispatch", "peek_seconds"),
        callbacks_per_minute=scenario.entries,
        shards=scenario.shards,
        api_seconds_per_batch=cost.lambda_seconds(
            m(batch_runs, "median_ms") / 1000, m(batch_runs, "median_cpu_ms") / 1000, cost.API_MEMORY_MB
        ),
        batch_size=apicall.BATCH_SIZE,
        outcome_event_bytes=int(m(event_runs, "event_bytes")),
        # The publisher's thread runs beside the calls: what it adds to a run is its CPU time.
        publisher_seconds_per_event=cost.lambda_seconds(
            0.0, m(event_runs, "cpu_ms_per_event") / 1000, cost.DISPATCHER_MEMORY_MB
        ),
    )
    return cost.estimate(inputs, m(capacity_runs, "original_design", "write_units"))


def _feature_runs(endpoint: str, sizes: Sizes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """POST /tasks timed through the api handler, and outcome events published to the local EventBridge."""
    payload_bytes = sizes.scenario.payload_bytes
    log(f"api: timing POST /tasks of {apicall.BATCH_SIZE} through the api handler")
    batch_runs = [apicall.measure_batch(endpoint, sizes.batch_calls, payload_bytes) for _ in range(sizes.repetitions)]
    log("outcome events: publishing finished entries to the local EventBridge")
    event_runs = [events.measure(endpoint, sizes.outcome_events, payload_bytes) for _ in range(sizes.repetitions)]
    return batch_runs, event_runs


def _feature_figures(batch_runs: list[dict[str, Any]], estimate: dict[str, Any]) -> list[Figure]:
    """POST /tasks and outcome events: a batch's time, and the cost per million with each."""
    return [
        figure(
            "api.post_tasks_ms",
            f"api handler, one POST /tasks of {apicall.BATCH_SIZE} (warm, wall)",
            throughput.values_at(batch_runs, "median_ms"),
            "ms",
        ),
        figure(
            "cost.batched_per_million_usd",
            f"cost per million callbacks created in batches of {apicall.BATCH_SIZE}",
            [estimate["batched_per_million_usd"]],
            "USD",
        ),
        figure(
            "cost.outcome_events_per_million_usd",
            "  added by outcome events (OutcomeEvents=Enabled)",
            [estimate["outcome_events_per_million_usd"]],
            "USD",
        ),
    ]


def build_figures(
    capacity_runs: list[dict[str, Any]],
    api_runs: list[dict[str, Any]],
    throughput_runs: list[dict[str, Any]],
    coldstart_result: dict[str, Any],
    estimate: dict[str, Any],
    scenario: throughput.Scenario,
) -> list[Figure]:
    runs = throughput.values_at
    c, t = capacity_runs, throughput_runs
    batch = f"{scenario.entries // scenario.shards} entries per shard run"
    slow = runs(t, "slow", "seconds")
    bound = runs(t, "slow", "bound_seconds")
    slack = [b - max(1.0, scenario.slow_entries / scenario.concurrency) * scenario.slow_delay for b in bound]
    excess = runs(t, "slow", "queue_excess_s")
    cold = coldstart_result["samples_ms"]
    cores = os.cpu_count() or 1
    figures = [
        figure(
            "capacity.write_units_per_task",
            "write units per task (create + dispatch)",
            runs(c, "write_units_per_task"),
            "WRU",
            "<= 4 (original: 6)",
            4.0,
        ),
        figure(
            "capacity.write_units_base_per_task", "  of which base table", runs(c, "write_units_base_per_task"), "WRU"
        ),
        figure("capacity.write_units_gsi_per_task", "  of which GSI due", runs(c, "write_units_gsi_per_task"), "WRU"),
        figure(
            "capacity.lease_write_units_per_shard_run",
            "lease writes per shard run",
            runs(c, "per_shard_run", "write_units"),
            "WRU",
            f"amortised: {batch}",
        ),
        figure(
            "capacity.stats_write_units_per_shard_run",
            "stats writes per shard run and minute",
            runs(c, "stats_per_shard_run", "write_units"),
            "WRU",
            "1 (one item of counts and lateness buckets)",
        ),
        figure(
            "capacity.read_units_per_task",
            "read units per task",
            runs(c, "read_units_per_task"),
            "RRU",
            "<= 1.1 (1 per call: the read before it)",
            1.1,
        ),
        figure(
            "capacity.read_units_before_call_per_task",
            "  of which the consistent read before the call",
            runs(c, "read_units_before_call_per_task"),
            "RRU",
        ),
        figure(
            "capacity.original_write_units_per_task",
            "original design, write units per task",
            runs(c, "original_design", "write_units"),
            "WRU",
            "for comparison",
        ),
        figure(
            "throughput.callbacks_per_second",
            f"dispatch throughput ({scenario.entries} due)",
            runs(t, "dispatch", "callbacks_per_second"),
            "callbacks/s",
        ),
        figure("throughput.dispatch_seconds", "  dispatch time", runs(t, "dispatch", "seconds"), "s"),
        figure(
            "throughput.storage_only_seconds",
            "  ceiling: storage only (no HTTP)",
            runs(t, "storage_only", "seconds"),
            "s",
        ),
        figure(
            "throughput.http_only_seconds", "  ceiling: HTTP only (no storage)", runs(t, "http_only", "seconds"), "s"
        ),
        figure(
            "throughput.ratio_to_slower_ceiling",
            "  dispatch time / slower ceiling",
            runs(t, "ratio_to_slower_ceiling"),
            "x",
            "<= 1.5",
            1.5,
        ),
        figure(
            "throughput.sink_alone_rps",
            "  sink alone (plain client)",
            runs(t, "sink_alone", "requests_per_second"),
            "req/s",
        ),
        figure(
            "throughput.dispatcher_cpu_ms_per_callback",
            "  dispatcher CPU per callback",
            [r["dispatch"]["cpu_seconds"]["dispatcher"] * 1000 / scenario.entries for r in t],
            "ms",
        ),
        figure(
            "floor.put_item_cpu_ms",
            "    floor: a bare botocore PutItem",
            runs(t, "floor", "put_item_cpu_ms"),
            "ms",
        ),
        figure("floor.get_cpu_ms", "    floor: a bare requests GET", runs(t, "floor", "get_cpu_ms"), "ms"),
        figure(
            "floor.dispatcher_over_floor",
            "    dispatcher CPU per callback / the floor's sum",
            [
                r["dispatch"]["cpu_seconds"]["dispatcher"]
                * 1000
                / scenario.entries
                / (r["floor"]["put_item_cpu_ms"] + r["floor"]["get_cpu_ms"])
                for r in t
            ],
            "x",
        ),
        figure(
            "throughput.storage_cpu_ms_per_callback",
            "    of which storage (storage-only run)",
            [r["storage_only"]["cpu_seconds"]["dispatcher"] * 1000 / scenario.entries for r in t],
            "ms",
        ),
        figure(
            "throughput.http_cpu_ms_per_callback",
            "    of which HTTP (HTTP-only run)",
            [r["http_only"]["cpu_seconds"]["dispatcher"] * 1000 / scenario.entries for r in t],
            "ms",
        ),
        figure(
            "throughput.dynamodb_cpu_ms_per_callback",
            "  local DynamoDB (moto) CPU per callback",
            [r["dispatch"]["cpu_seconds"]["dynamodb"] * 1000 / scenario.entries for r in t],
            "ms",
        ),
        figure(
            "throughput.machine_busy",
            "  CPU busy during dispatch, all processes",
            [sum(r["dispatch"]["cpu_seconds"].values()) / (r["dispatch"]["seconds"] * cores) * 100 for r in t],
            "%",
        ),
        figure(
            "slow.dispatch_seconds",
            f"slow endpoints: {scenario.slow_entries} x {scenario.slow_delay:g} s answers",
            slow,
            "s",
            f"<= {median(bound):.1f} s (1.3 x N/C + fast time)",
            median(bound),
        ),
        figure(
            "slow.queue_excess_seconds",
            "  worst start beyond its place in the queue",
            excess,
            "s",
            f"<= {median(slack):.1f} s (no entry late because of another)",
            median(slack),
        ),
    ]
    for name, path in (("fast", "dispatch"), ("slow", "slow")):
        for what, label in (("call", "to the call"), ("record", "to the recorded outcome")):
            for p in (50, 99):
                figures.append(
                    figure(
                        f"lateness.{name}.{what}_p{p}",
                        f"lateness, {name} run, {label}, p{p}",
                        runs(t, path, f"{what}_lateness_p{p}_s"),
                        "s",
                    )
                )
    figures += [
        figure("coldstart.boto3_ms", "cold start: import boto3", cold["boto3"], "ms"),
        figure("coldstart.api_ms", "  import handlers.api", cold["api"], "ms"),
        figure("coldstart.dispatcher_ms", "  import handlers.dispatcher", cold["dispatcher"], "ms"),
        figure("coldstart.api_ratio", "  api / boto3", [coldstart_result["api_ratio"]], "x", "<= 2.0", 2.0),
        figure(
            "coldstart.dispatcher_ratio",
            "  dispatcher / boto3",
            [coldstart_result["dispatcher_ratio"]],
            "x",
            "<= 1.6",
            1.6,
        ),
        figure("api.put_task_ms", "api handler, PUT /task (warm)", runs(api_runs, "median_ms"), "ms"),
        figure(
            "cost.callme_per_million_usd",
            "cost per million callbacks, callme",
            [estimate["callme_per_million_usd"]],
            "USD",
        ),
        figure(
            "cost.original_design_per_million_usd",
            "  same, original design (6 WRU)",
            [estimate["original_design_per_million_usd"]],
            "USD",
        ),
        figure(
            "cost.read_before_call_per_million_usd",
            "  of which the read before each call",
            [estimate["read_before_call_per_million_usd"]],
            "USD",
        ),
        figure(
            "cost.without_read_before_call_per_million_usd",
            "  same, without the read before each call",
            [estimate["without_read_before_call_per_million_usd"]],
            "USD",
        ),
        figure("cost.fixed_per_month_usd", "  fixed, nothing due", [estimate["fixed_per_month_usd"]], "USD/month"),
    ]
    for line, key in zip(
        estimate["alternatives"],
        ("eventbridge_scheduler", "eventbridge_api_destination", "cloud_tasks", "qstash"),
        strict=True,
    ):
        figures.append(figure(f"cost.{key}_per_million_usd", f"  {line['item']}", [line["usd"]], "USD"))
    return figures


if __name__ == "__main__":
    raise SystemExit(main())
