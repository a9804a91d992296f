"""``python -m bench.simulate``: callme's dispatch at scale, simulated, and the model checked against
the runs ``make bench`` measures.

The model (bench/simmodel.py) is fed with figures measured on this machine: the dispatcher's CPU per
callback, split into a call, an outcome write and an entry read as the benchmark's HTTP-only and
storage-only runs measure them apart; the local DynamoDB's pace; the look at the shards; the
dispatcher's import time (its cold start). What cannot be measured here (EventBridge Scheduler,
Lambda's invocations, DynamoDB's own latencies and limits, endpoints on the internet) is assumed,
each figure named below.

1. **The check.** The local stack's runs (2,000 fast entries, 1,000 slow ones, one run over all
   shards in one process at concurrency 64, as ``make bench`` makes them) are simulated with the
   figures of the same repetition, and the simulated lateness p99 and duration are set beside the
   measured ones: the model must stay within 25 %. Nothing is taken from the slow run; the fast
   run gives its CPU per callback, so for it the check tests the timing around that CPU (the
   start, the reads, the two pools, the local DynamoDB's queue), not the CPU itself.
2. **At scale.** 2,000, 100,000 and 1,000,000 entries due at second 0 of one minute, with fast
   (50 ms) and slow (1 s) endpoints, dispatched by callme as it is (the template's and the engine's
   defaults), against the goal of issue 14.
3. **What would meet the goal.** The same million under other designs: more shards, slices of a busy
   shard, more concurrency per run, a parallel fan-out.

With no argument it reads bench/results.json; ``python -m bench`` calls ``simulate`` with the
figures of its own run.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "functions"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import cost  # noqa: E402
from bench.capacity import CALLME  # noqa: E402
from bench.report import Figure, figure, median  # noqa: E402
from bench.simmodel import (  # noqa: E402
    BIN,
    Burst,
    Cpu,
    Design,
    Endpoints,
    Latency,
    Platform,
    RunSpec,
    Storage,
    Workload,
    concurrency_peak,
    peak_per_second,
    percentile_of_shifted,
    shifted_sum,
    simulate_burst,
    simulate_run,
)
from callme.dispatch import PEEKERS, READERS, WRITERS  # noqa: E402
from callme.task import TaskDefinition  # noqa: E402
from handlers.fanout import INVOKERS  # noqa: E402
from local.template import load_template  # noqa: E402

SIZES = (2_000, 100_000, 1_000_000)
SIZED_CONCURRENCY = 256  # calls in flight per run in the sized design: a 1 s endpoint's share of a core
TOLERANCE = 0.25  # the check: simulated within 25 % of measured
# The goal's figures of a burst; the partitions' only where writes are sure to be made (a design that
# cannot call anything writes nothing, and a figure must come out positive).
GOAL_FIGURES = ("call_max", "concurrency_peak", "cost_per_million_usd")
PARTITION_FIGURES = ("index_partition_wcu_peak", "table_partition_wcu_peak")
KINDS = ("fast", "slow")
# Every figure the simulation adds to a benchmark run (the smoke run included).
FIGURES = (
    *(f"simulation.check.{case}.{what}" for case in KINDS for what in ("call_p99", "seconds")),
    *(f"simulation.{n}.{k}.{what}" for n in SIZES for k in KINDS for what in ("call_p99", "record_p99")),
    *(f"simulation.{SIZES[-1]}.{kind}.{what}" for kind in KINDS for what in GOAL_FIGURES),
    *(
        f"simulation.sized.{kind}.{what}"
        for kind in KINDS
        for what in ("call_p99", "record_p99", *GOAL_FIGURES, *PARTITION_FIGURES)
    ),
)


@dataclass(frozen=True)
class Goal:
    """Issue 14's goal for a burst."""

    entries: int = 1_000_000
    lateness_p99: float = 30.0
    partition_units: float = 1000.0
    concurrency: int = 1000


GOAL = Goal()

# -- what is assumed (AWS cannot be measured here) ------------------------------------------------

# Endpoints on the internet: lognormal around the two figures.
FAST = Latency(0.050, 0.5)  # median 50 ms, p99 about 160 ms
SLOW = Latency(1.0, 0.25)  # median 1 s, p99 about 1.8 s
HOSTS = 1000
# EventBridge Scheduler invokes a cron(* * * * ? *) target shortly after second 0.
SCHEDULER_DELAY = Latency(1.0)
INVOKE_SECONDS = 0.020  # one Invoke(InvocationType=Event) API call made by the coordinator
ASYNC_START = Latency(0.100)  # an accepted asynchronous invocation reaching its handler
SANDBOX_SECONDS = 0.250  # a new execution environment before the handler's imports start
# DynamoDB, from the same region: "single-digit milliseconds".
WRITE = Latency(0.006, 0.3)
PEEK = Latency(0.006)
PAGE = Latency(0.010)
PAGE_ITEM = 40e-6  # per item of a Query page (a full 1 MB page: about 80 ms)
BATCH_GET = Latency(0.015)

ASSUMED = {
    "endpoints, fast": FAST.describe(),
    "endpoints, slow": SLOW.describe(),
    "callback hosts": str(HOSTS),
    "EventBridge Scheduler tick after second 0": SCHEDULER_DELAY.describe(),
    "coordinator's Invoke call (async)": f"{INVOKE_SECONDS * 1000:g} ms each",
    "async invocation to handler start": ASYNC_START.describe(),
    "cold start": f"{SANDBOX_SECONDS * 1000:g} ms sandbox + the measured import, at the function's vCPU share",
    "DynamoDB PutItem": WRITE.describe(),
    "DynamoDB Query page": f"{PAGE.describe()} + {PAGE_ITEM * 1e6:g} us per item",
    "DynamoDB BatchGetItem (100)": BATCH_GET.describe(),
    "has_due Query (peek)": f"{PEEK.describe()}; a count of due entries: {PAGE_ITEM * 1e6:g} us per entry more",
    "partition limits": "1,000 WCU/s and 3,000 RCU/s per partition; new on-demand table and index: 4,000 WCU/s",
    "TLS": "not counted (the measured calls are plain HTTP on loopback)",
}


# -- today's design, from the template and the engine ------------------------------------------------


def today() -> Design:
    """callme as it is: the template's defaults and the dispatch engine's."""
    template = load_template()
    parameters = template["Parameters"]
    function = template["Resources"]["DispatcherFunction"]["Properties"]
    engine = CALLME.dispatch
    return Design(
        shards=int(parameters["DueShards"]["Default"]),
        slices=int(parameters["DispatchSlices"]["Default"]),
        split_at=engine.split_at,
        concurrency=int(parameters["DispatchConcurrency"]["Default"]),
        fanout_parallelism=INVOKERS,
        peekers=PEEKERS,
        writers=WRITERS,
        readers=READERS,
        reserved_concurrency=int(parameters["DispatcherReservedConcurrency"]["Default"]),
        memory_mb=int(function["MemorySize"]),
        timeout=float(function["Timeout"]),
        run_seconds=engine.run_seconds,
        call_budget=engine.call_budget,
        lease_seconds=engine.lease_seconds,
        lease_wait=engine.lease_wait,
        consistent_read="before_call",
        lease_renew_seconds=engine.heartbeat_seconds,
        record_attempts=engine.record_attempts,
    )


# -- what is measured --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """The figures one benchmark repetition gives the model, in seconds."""

    call_cpu: float  # dispatcher CPU per call
    write_cpu: float  # dispatcher CPU per outcome written
    read_page_cpu: float  # a Query request's own CPU
    read_item_cpu: float  # CPU per entry read beyond that
    server_write: float  # the local DynamoDB's pace, per outcome written
    server_read_item: float  # the local DynamoDB's time per entry a Query passes: peek / entries
    lease: float  # one lease write, storage-only run
    peek: float  # the look at every shard, storage-only run
    sink: float  # the local sink's CPU per request, HTTP-only run
    cold_import: float  # import handlers.dispatcher in a fresh interpreter
    item_bytes: int

    @classmethod
    def of(cls, repetition: dict[str, Any], coldstart_ms: float, item_bytes: int) -> Measured:
        """The figures of one repetition.

        CPU: the dispatcher's CPU per callback in the dispatch of the fast entries (the benchmark's
        "dispatcher CPU per callback"), split into a call, an outcome write and a read in the
        proportions the HTTP-only and storage-only runs measure them apart (together they cost a
        little more than apart: more threads take turns on the interpreter lock). A Query request
        is taken to cost what a PutItem does, the rest of a read is the parsing of its items.
        The local DynamoDB: the storage-only run waits on it (one process, one core), so its pace
        there, from the first call to the end, is the server's pace.
        """
        http, storage, fast = repetition["http_only"], repetition["storage_only"], repetition["dispatch"]
        entries = storage["entries"]
        times = storage["storage"]
        page = times["write_cpu_ms_mean"] / 1000
        read_item = max(0.0, times["read_cpu_s"] - times["reads"] * page) / max(1, times["read_items"])
        call = http["cpu_seconds"]["dispatcher"] / http["calls"]
        write = (storage["cpu_seconds"]["dispatcher"] - times["read_cpu_s"]) / entries
        apart = call + write + times["read_cpu_s"] / entries
        together = fast["cpu_seconds"]["dispatcher"] / fast["entries"] / apart
        return cls(
            call_cpu=call * together,
            write_cpu=write * together,
            read_page_cpu=page * together,
            read_item_cpu=read_item * together,
            server_write=(storage["seconds"] - storage["first_call_s"]) / entries,
            server_read_item=storage["peek_seconds"] / entries,
            lease=times["lease_wall_ms_mean"] / 1000,
            peek=storage["peek_seconds"],
            sink=http["cpu_seconds"]["sink"] / http["calls"],
            cold_import=coldstart_ms / 1000,
            item_bytes=item_bytes,
        )

    def cpu(self) -> Cpu:
        return Cpu(call=self.call_cpu, write=self.write_cpu, read_item=self.read_item_cpu, read_page=self.read_page_cpu)


def measured_figures(results: dict[str, Any]) -> list[Measured]:
    """One ``Measured`` per throughput repetition of a benchmark's results."""
    coldstart = results["coldstart"]["median_ms"]["dispatcher"]
    item_bytes = int(statistics.median(r["item_bytes"]["after_dispatch"] for r in results["capacity"]["runs"]))
    runs = results["throughput"]["runs"]
    if "storage" not in runs[0]["storage_only"]:
        raise SystemExit("these results predate the simulation's figures: run `python -m bench` first")
    return [Measured.of(r, coldstart, item_bytes) for r in runs]


def median_measured(all_: list[Measured]) -> Measured:
    values = {f: statistics.median(getattr(m, f) for m in all_) for f in Measured.__dataclass_fields__}
    values["item_bytes"] = int(values["item_bytes"])
    return Measured(**values)


# -- 1. the check against the local runs ------------------------------------------------------------


def local_run(m: Measured, entries: int, delay: float, scenario: dict[str, Any]) -> dict[str, float]:
    """The local stack's run as ``make bench`` makes it: the look at every shard, then one run over
    all of them in one process (one core for the dispatcher, the local DynamoDB on another)."""
    shards = scenario["shards"]
    storage = Storage(
        write=Latency(0.0),
        page=Latency(0.0),
        page_item=0.0,
        batch_get=Latency(0.0),
        lease=Latency(m.lease),
        item_bytes=m.item_bytes,
        server_write=m.server_write,
        server_read_item=m.server_read_item,
    )
    counts = [entries // shards + (1 if s < entries % shards else 0) for s in range(shards)]
    engine = CALLME.dispatch
    spec = RunSpec(
        shards=tuple((n,) for n in counts),
        endpoints=(Endpoints(1.0, Latency(delay + m.sink), hosts=1),),
        cpu=m.cpu(),
        storage=storage,
        concurrency=scenario["concurrency"],
        writers=min(WRITERS, scenario["concurrency"]),
        readers=READERS,
        window=engine.run_seconds,
        call_budget=engine.call_budget,
        read_before_call=True,
    )
    result = simulate_run(spec)
    calls = [m.peek + t for t in result.calls]
    return {
        "call_p50_s": _percentile(calls, 50),
        "call_p99_s": _percentile(calls, 99),
        "seconds": m.peek + result.end,
    }


def _percentile(values: list[float], p: float) -> float:
    """Nearest rank, as bench/throughput.py computes the measured ones."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(p * len(ordered) / 100))) - 1]


def check(results: dict[str, Any], measured: list[Measured]) -> dict[str, Any]:
    """Each repetition's fast and slow runs, simulated from that repetition's other figures."""
    scenario = results["throughput"]["scenario"]
    cases: dict[str, Any] = {}
    for case, path, entries, delay in (
        ("fast", "dispatch", scenario["entries"], 0.0),
        ("slow", "slow", scenario["slow_entries"], scenario["slow_delay"]),
    ):
        rows = []
        for m, repetition in zip(measured, results["throughput"]["runs"], strict=True):
            simulated = local_run(m, entries, delay, scenario)
            run = repetition[path]
            rows.append(
                {
                    "simulated": {k: round(v, 4) for k, v in simulated.items()},
                    "measured": {
                        "call_p50_s": run["call_lateness_p50_s"],
                        "call_p99_s": run["call_lateness_p99_s"],
                        "seconds": run["seconds"],
                    },
                }
            )
        cases[case] = {"entries": entries, "delay_s": delay, "repetitions": rows}
    return cases


# -- 2. and 3. bursts in AWS ---------------------------------------------------------------------------


def platform(m: Measured, design: Design) -> Platform:
    share = min(design.memory_mb, 1769) / 1769
    return Platform(
        scheduler_delay=SCHEDULER_DELAY,
        invoke=INVOKE_SECONDS,
        async_start=ASYNC_START,
        cold_start=SANDBOX_SECONDS + m.cold_import / share,
        peek=PEEK,
    )


def aws_run(m: Measured, endpoints: Latency) -> RunSpec:
    """The run's fixed parts in AWS; ``simulate_burst`` puts the design's into it."""
    storage = Storage(
        write=WRITE, page=PAGE, page_item=PAGE_ITEM, batch_get=BATCH_GET, lease=WRITE, item_bytes=m.item_bytes
    )
    return RunSpec(shards=(), endpoints=(Endpoints(1.0, endpoints, HOSTS),), cpu=m.cpu(), storage=storage)


def workload(entries: int, endpoints: Latency) -> Workload:
    max_delay = TaskDefinition(callback="https://example.com/").max_delay  # the default
    return Workload(entries, (Endpoints(1.0, endpoints, HOSTS),), max_delay)


def burst(m: Measured, design: Design, entries: int, endpoints: Latency) -> Burst:
    return simulate_burst(design, platform(m, design), aws_run(m, endpoints), workload(entries, endpoints))


def summarize(b: Burst, m: Measured, cost_inputs: cost.Inputs, today_usd: float | None) -> dict[str, Any]:
    """A burst's figures: lateness, what is left undone, partitions, concurrency, cost (against
    ``today_usd``, or against itself when None: it is today's)."""
    design, entries = b.design, b.workload.entries
    # Runs that are the same run at the same time are summed up once, counted as many times. A run's
    # writes go to the index partition of its (first) slot: each slice is an index partition of its own.
    same = Counter((run.key, round(run.leased / BIN), run.chain[0]) for run, _ in b.instances())
    by_time: Counter[tuple[Any, int]] = Counter()
    by_slot: dict[tuple[int, int], Counter[tuple[Any, int]]] = {}
    for (key, shift, slot), n in same.items():
        by_time[(key, shift)] += n
        by_slot.setdefault(slot, Counter())[(key, shift)] += n
    calls = [(b.results[key].calls, shift * BIN, n) for (key, shift), n in by_time.items()]
    records = [(b.results[key].records, shift * BIN, n) for (key, shift), n in by_time.items()]
    results = [(b.results[key], n) for (key, _), n in by_time.items()]
    called = sum(len(r.calls) * n for r, n in results)
    skipped = sum(r.skipped * n for r, n in results)
    repeated = sum(r.unrecorded * n for r, n in results)
    # Entries never called (or never recorded) in the minutes simulated count as late as their end:
    # the percentiles are over every entry due, and a lower bound when some never were.
    never_called = entries - (called - repeated)
    never_recorded = entries - sum(len(r.records) * n for r, n in results)
    end = [max(b.horizon, 60.0 * b.minutes)]
    calls += [(end, 0.0, never_called)] if never_called > 0 else []
    records += [(end, 0.0, never_recorded)] if never_recorded > 0 else []
    table = shifted_sum((b.results[key].demand, shift, n) for (key, shift), n in by_time.items())
    shard_peaks: dict[frozenset[tuple[tuple[Any, int], int]], float] = {}
    for runs in by_slot.values():
        alike = frozenset(runs.items())  # slots whose runs are alike have the same peak
        if alike not in shard_peaks:
            shard_peaks[alike] = peak_per_second(
                shifted_sum((b.results[key].demand, shift, n) for (key, shift), n in runs.items())
            )
    table_partitions = max(1.0, design.table_write_units / 1000)
    index_peak = max(shard_peaks.values(), default=0.0)
    table_peak = peak_per_second(table)
    cpu_scale = 1769 / min(design.memory_mb, 1769)
    intervals = [(run.executing, run.ended) for run in b.runs] + [(a, e) for a, e, _ in b.coordinators]
    run_seconds = sum(run.ended - run.executing for run in b.runs)
    coordinator_seconds = sum(e - a for a, e, _ in b.coordinators)
    minutes = max(1, b.minutes)
    # Lease writes: each slot a run holds is taken, renewed every heartbeat, and released.
    leases = sum(len(run.chain) for run in b.runs) * cost_inputs.lease_write_units_per_shard_run
    if design.lease_renew_seconds:
        leases += sum(len(run.chain) * ((run.ended - run.leased) // design.lease_renew_seconds) for run in b.runs)
    # The coordinator's look: a one-item Query per slot, and a sliced busy shard's count up to split_at + 1.
    counted = 0 if design.slices == 1 else min(entries, design.split_at + 1) * design.shards
    look_units = (
        cost_inputs.peek_read_units_per_minute / cost_inputs.shards * design.runs
        + math.ceil(counted * m.item_bytes / 4096) * 0.5 / minutes
    )
    consistent_units = sum(r.consistent_read_units * n for r, n in results)
    inputs = replace(
        cost_inputs,
        dispatcher_seconds_per_callback=run_seconds / entries * design.memory_mb / cost.DISPATCHER_MEMORY_MB,
        coordinator_seconds_per_minute=coordinator_seconds / minutes * design.memory_mb / cost.DISPATCHER_MEMORY_MB,
        callbacks_per_minute=max(1, round(entries / minutes)),
        shards=max(1, round(len(b.runs) / minutes)),
        lease_write_units_per_shard_run=leases / max(1, len(b.runs)),
        peek_read_units_per_minute=look_units,
        # the model's own consistent reads stand for the measured run's
        read_units_per_task=cost_inputs.read_units_per_task
        - cost_inputs.read_units_before_call_per_task
        + consistent_units / entries,
    )
    usd = sum(line.usd for line in cost.callme_lines(inputs))
    summary = {
        "design": design.label(),
        "entries": entries,
        "called": called,
        "skipped": skipped,
        "left": b.left,
        "repeated_calls": repeated,
        "call_p50_s": round(percentile_of_shifted(calls, 50), 3),
        "call_p99_s": round(percentile_of_shifted(calls, 99), 3),
        "call_max_s": round(max((v[-1] + s for v, s, _ in calls if v), default=0.0), 3),
        "record_p50_s": round(percentile_of_shifted(records, 50), 3),
        "record_p99_s": round(percentile_of_shifted(records, 99), 3),
        "record_max_s": round(max((v[-1] + s for v, s, _ in records if v), default=0.0), 3),
        "minutes": b.minutes,
        "runs": len(b.runs),
        "cold_starts": sum(run.cold for run in b.runs) + sum(c for _, _, c in b.coordinators),
        "index_partition_wcu_peak": round(index_peak, 1),
        "table_wcu_peak": round(table_peak, 1),
        "table_partitions": table_partitions,
        "table_partition_wcu_peak": round(table_peak / table_partitions, 1),
        "throttled_writes": sum(r.throttled_writes * n for r, n in results),
        "throttled_reads": sum(r.throttled_reads * n for r, n in results),
        "concurrency_peak": concurrency_peak(intervals),
        "lambda_gb_seconds": round((run_seconds + coordinator_seconds) * design.memory_mb / 1024, 1),
        "run_cpu_busy_share": round(
            sum(r.cpu_busy * n for r, n in results) / max(1e-9, sum(r.end * n for r, n in results)), 3
        ),
        "cpu_ms_per_callback": round((m.call_cpu + m.write_cpu + m.read_item_cpu) * cpu_scale * 1000, 3),
        "timed_out_runs": sum(1 for _, r in b.instances() if r.timed_out),
        "cost_per_million_usd": round(usd, 4),
        "today_cost_per_million_usd": round(usd if today_usd is None else today_usd, 4),
    }
    summary["goal"] = meets(summary)
    return summary


def meets(s: dict[str, Any], goal: Goal = GOAL) -> dict[str, bool]:
    """Issue 14's goal, item by item."""
    return {
        "lateness_p99": s["call_p99_s"] < goal.lateness_p99,
        "none_skipped": s["skipped"] == 0 and s["left"] == 0 and s["called"] >= s["entries"],
        "index_partitions": s["index_partition_wcu_peak"] < goal.partition_units,
        "table_partitions": s["table_partition_wcu_peak"] < goal.partition_units,
        "no_throttling": s["throttled_writes"] == 0 and s["throttled_reads"] == 0,
        "concurrency": s["concurrency_peak"] <= goal.concurrency,
        "cost": s["cost_per_million_usd"] <= s["today_cost_per_million_usd"] + 1e-9,
    }


def scaled(base: Design, shards: int, slices: int, concurrency: int, memory_mb: int = 1024) -> Design:
    """A design for a burst, with what it needs around it: the account's concurrency instead of a
    reservation, the index pre-warmed to a whole partition per slot (each slice of each shard), the
    table to 100,000 writes a second. The fan-out and the look at the shards are callme's own."""
    return replace(
        base,
        shards=shards,
        slices=slices,
        concurrency=concurrency,
        memory_mb=memory_mb,
        reserved_concurrency=0,
        index_write_units=1000.0 * shards * slices,
        index_read_units=3000.0 * shards * slices,
        table_write_units=100_000.0,
        table_read_units=100_000.0,
    )


def sweep_designs(base: Design) -> list[Design]:
    """Designs for a million in a minute: shards, slices, concurrency and memory."""
    grid = [
        (shards, slices, concurrency)
        for shards, slices in ((8, 16), (8, 32), (8, 64), (32, 8), (64, 4), (90, 4), (128, 1), (128, 2))
        for concurrency in (64, 256)
    ]
    designs = [scaled(base, *point) for point in grid]
    # A whole vCPU: one run calls about twice as fast.
    return [*designs, scaled(base, 8, 24, 256, 1769), scaled(base, 8, 32, 256, 1769)]


def cost_inputs(results: dict[str, Any]) -> cost.Inputs:
    return cost.Inputs(**results["cost"]["inputs"])


HEADROOM = 0.8  # runs keep their core about 80 % busy over the goal's 30 s; partitions are kept to 80 %


def sizing(
    m: Measured, entries: int, latency: float, concurrency: int, shards: int, memory_mb: int = 1024
) -> dict[str, Any]:
    """The arithmetic the model's runs bear out: how many runs, and slices of ``shards``, a burst needs.

    A run calls at most ``rate`` callbacks a second: its one core's worth (the measured CPU per
    callback stretched to the function's vCPU share), or ``concurrency / latency`` if that is less,
    and about ``HEADROOM`` of it on the whole (its start, its reads, calls waiting for the core).
    To call ``entries`` by the goal's p99, the runs have the goal less the start (the tick, a cold
    start, the fan-out and the reads) to call them in. The shards stay what the everyday minutes
    need (``shards``, so that a light minute is one run per busy shard, as without slices), and
    each is split into enough slices for the burst. Each slice is an index partition of its own,
    which takes 1,000 writes a second, and a run's writes come in bursts: while its core has only
    outcomes to write, one every ``write`` CPU; that must stay under ``HEADROOM`` of the limit
    (entries are not hashed exactly evenly, and the api writes new entries into the index
    meanwhile), and the table's warm throughput must take every run's bursts at once. Every run is
    one concurrent execution."""
    scale = 1769 / min(memory_mb, 1769)
    # an entry read from the index, then again just before its call (its share of that request)
    cpu = (m.call_cpu + m.write_cpu + 2 * m.read_item_cpu + m.read_page_cpu / concurrency) * scale
    rate = min(1 / cpu, concurrency / latency)
    write_burst = 1 / (m.write_cpu * scale)
    start = SCHEDULER_DELAY.median + SANDBOX_SECONDS + m.cold_import * scale + 1.0  # 1 s to fan out and read
    seconds = GOAL.lateness_p99 - start
    runs = math.ceil(entries / (HEADROOM * rate * seconds))
    return {
        "concurrency": concurrency,
        "cpu_ms_per_callback": round(cpu * 1000, 3),
        "run_rate_per_second": round(rate, 1),
        "write_burst_per_second": round(write_burst, 1),
        "one_run_fits_a_partition": write_burst <= HEADROOM * GOAL.partition_units,
        "seconds_to_call": round(seconds, 1),
        "runs": runs,
        "shards": shards,
        "slices_at_least": math.ceil(runs / shards),
        "table_write_units": round(runs * write_burst / HEADROOM),  # the runs' bursts, at 80 % of it
        "lambda_concurrency": runs + 1,
    }


def measured_costs(inputs: cost.Inputs) -> dict[str, float]:
    """Today's cost per million as the benchmark estimates it from this machine's figures
    (bench/cost.py), with fast and with slow endpoints: shown beside the model's."""
    fast = sum(line.usd for line in cost.callme_lines(inputs))
    slow_inputs = replace(inputs, dispatcher_seconds_per_callback=inputs.slow_dispatcher_seconds_per_callback)
    return {"fast": round(fast, 4), "slow": round(sum(line.usd for line in cost.callme_lines(slow_inputs)), 4)}


def simulate(results: dict[str, Any], with_sweep: bool = True) -> dict[str, Any]:
    """Everything: the check, the bursts with today's design, the sweep. ``results`` is a benchmark's
    results (bench/results.json, or the run ``python -m bench`` is making)."""
    started = time.process_time()
    measured = measured_figures(results)
    m = median_measured(measured)
    inputs = cost_inputs(results)
    design = today()
    kinds = {"fast": FAST, "slow": SLOW}
    out: dict[str, Any] = {
        "measured": asdict(m),
        "measured_cost_per_million_usd": measured_costs(inputs),
        "assumed": ASSUMED,
        "today": asdict(design),
        "check": check(results, measured),
        "bursts": {},
    }
    for size in SIZES:
        for kind, latency in kinds.items():
            b = burst(m, design, size, latency)
            # Today's cost per million is the model's for today's design at the load it was
            # measured with (2,000 a minute): the same assumptions on both sides of the comparison.
            reference = out["bursts"][f"{SIZES[0]}.{kind}"]["cost_per_million_usd"] if size != SIZES[0] else None
            out["bursts"][f"{size}.{kind}"] = summarize(b, m, inputs, reference)
    out["sizing"] = {
        kind: sizing(m, GOAL.entries, latency.median, concurrency, design.shards)
        for kind, latency, concurrency in (("fast", FAST, design.concurrency), ("slow", SLOW, SIZED_CONCURRENCY))
    }
    # The design the arithmetic gives, for slow endpoints (it serves fast ones too), simulated; and the
    # same design on an ordinary minute (2,000 due), which must cost what today's does.
    z = out["sizing"]["slow"]
    sized = scaled(design, z["shards"], z["slices_at_least"], SIZED_CONCURRENCY)
    today_usd = {kind: out["bursts"][f"{SIZES[0]}.{kind}"]["cost_per_million_usd"] for kind in kinds}
    out["sized"] = {"design": asdict(sized)} | {
        kind: summarize(burst(m, sized, GOAL.entries, latency), m, inputs, today_usd[kind])
        for kind, latency in kinds.items()
    }
    out["sized_light"] = {
        kind: summarize(burst(m, sized, SIZES[0], latency), m, inputs, today_usd[kind])
        for kind, latency in kinds.items()
    }
    if with_sweep:
        rows = []
        for candidate in sweep_designs(design):
            row: dict[str, Any] = {"design": asdict(candidate)}
            for kind, latency in kinds.items():
                row[kind] = summarize(burst(m, candidate, GOAL.entries, latency), m, inputs, today_usd[kind])
            rows.append(row)
        out["sweep"] = rows
    out["cpu_seconds"] = round(time.process_time() - started, 2)
    return out


# -- figures and text ---------------------------------------------------------------------------------


def _within(ratios: list[float]) -> bool:
    return abs(median(ratios) - 1) <= TOLERANCE


def figures(sim: dict[str, Any]) -> list[Figure]:
    """The simulation's figures for the benchmark's table and results.json."""
    out = []
    for case, label in (("fast", "fast entries"), ("slow", "slow entries")):
        c = sim["check"][case]
        for what, name in (("call_p99_s", "lateness p99"), ("seconds", "dispatch time")):
            ratios = [r["simulated"][what] / r["measured"][what] for r in c["repetitions"]]
            simulated = median([r["simulated"][what] for r in c["repetitions"]])
            measured = median([r["measured"][what] for r in c["repetitions"]])
            f = figure(
                f"simulation.check.{case}.{what.removesuffix('_s')}",
                f"simulated / measured, {c['entries']:,} {label}, {name}: {simulated:.2f} s / {measured:.2f} s",
                ratios,
                "x",
                "within 25 %",
            )
            f.met = _within(ratios)
            out.append(f)
    for size in SIZES:
        for kind in ("fast", "slow"):
            s = sim["bursts"][f"{size}.{kind}"]
            key = f"simulation.{size}.{kind}"
            goal = size == GOAL.entries
            p99 = figure(
                f"{key}.call_p99",
                f"simulated, {size:,} due, {kind}: lateness p99 (to the call)",
                [s["call_p99_s"]],
                "s",
                "< 30 s" if goal else "",
            )
            if goal:
                p99.met = s["goal"]["lateness_p99"]
            out.append(p99)
            out.append(figure(f"{key}.record_p99", "  to the recorded outcome, p99", [s["record_p99_s"]], "s"))
            if goal:
                out += _goal_figures(key, s, GOAL_FIGURES)
    design = Design(**sim["sized"]["design"])
    for kind in KINDS:
        s = sim["sized"][kind]
        key = f"simulation.sized.{kind}"
        p99 = figure(
            f"{key}.call_p99",
            f"simulated, {GOAL.entries:,} due, {kind}, sized: {design.label()}: lateness p99",
            [s["call_p99_s"]],
            "s",
            "< 30 s",
        )
        p99.met = s["goal"]["lateness_p99"]
        out.append(p99)
        out.append(figure(f"{key}.record_p99", "  to the recorded outcome, p99", [s["record_p99_s"]], "s"))
        out += _goal_figures(key, s, (*GOAL_FIGURES, *PARTITION_FIGURES))
    return out


def _never_called(s: dict[str, Any]) -> str:
    missed = s["skipped"] + s["left"]
    return f" ({missed:,} skipped or never called, counted at {s['call_max_s']:g} s)" if missed else ""


def _goal_figures(key: str, s: dict[str, Any], which: tuple[str, ...]) -> list[Figure]:
    """A burst's figures against the goal, each met or not: those named in ``which``."""
    goal = s["goal"]
    rows = (
        (
            "call_max",
            f"  latest call{_never_called(s)}",
            s["call_max_s"],
            "s",
            "every entry called",
            goal["none_skipped"],
        ),
        (
            "index_partition_wcu_peak",
            "  peak write units/s, one index partition",
            s["index_partition_wcu_peak"],
            "WCU/s",
            "< 1,000, no throttling",
            goal["index_partitions"] and goal["no_throttling"],
        ),
        (
            "table_partition_wcu_peak",
            "  peak write units/s, one table partition",
            s["table_partition_wcu_peak"],
            "WCU/s",
            "< 1,000",
            goal["table_partitions"],
        ),
        ("concurrency_peak", "  peak Lambda concurrency", s["concurrency_peak"], "", "<= 1,000", goal["concurrency"]),
        (
            "cost_per_million_usd",
            "  cost per million",
            s["cost_per_million_usd"],
            "USD",
            f"<= {s['today_cost_per_million_usd']:.2f} (today's, simulated)",
            goal["cost"],
        ),
    )
    named = {row[0]: row for row in rows}
    out = []
    for suffix, label, value, unit, target, met in (named[name] for name in which):
        f = figure(f"{key}.{suffix}", label, [value], unit, target)
        f.met = met
        out.append(f)
    return out


def render(sim: dict[str, Any]) -> str:
    """The simulation's tables, as text."""
    lines = ["Simulation (bench/simulate.py): modelled, not measured, except where it says measured."]
    lines.append("Check against the local runs (simulated / measured, each repetition):")
    for case, c in sim["check"].items():
        for n, r in enumerate(c["repetitions"], 1):
            s, m = r["simulated"], r["measured"]
            lines.append(
                f"  {case} {c['entries']:>5,} #{n}: lateness p50 {s['call_p50_s']:.2f} / {m['call_p50_s']:.2f} s,"
                f" p99 {s['call_p99_s']:.2f} / {m['call_p99_s']:.2f} s,"
                f" duration {s['seconds']:.2f} / {m['seconds']:.2f} s"
            )
    today_ = Design(**sim["today"])
    lines.append(f"Bursts due at second 0 of one minute, callme as it is ({today_.label()}, in AWS):")
    lines.append(_burst_header())
    for key, s in sim["bursts"].items():
        size, kind = key.split(".")
        lines.append(_burst_row(f"{int(size):,} {kind}", s))
    lines += _render_sizing(sim)
    if "sweep" in sim:
        lines += _render_sweep(sim["sweep"])
    lines.append("Assumed (not measured here): " + "; ".join(f"{k}: {v}" for k, v in sim["assumed"].items()))
    lines.append(f"The simulation took {sim['cpu_seconds']} s of CPU.")
    return "\n".join(lines)


def _render_sizing(sim: dict[str, Any]) -> list[str]:
    lines = []
    for kind, z in sim["sizing"].items():
        lines.append(
            f"Sizing, a million due, {kind} endpoints: a run at concurrency {z['concurrency']} calls"
            f" {z['run_rate_per_second']:g}/s at most ({z['cpu_ms_per_callback']:g} ms of CPU each at 1,024 MB),"
            f" {HEADROOM:.0%} of it on the whole; in {z['seconds_to_call']:g} s that is {z['runs']} runs;"
            f" {z['shards']} shards (the everyday's) x >= {z['slices_at_least']} slices; a run's writes come"
            f" in bursts of up to {z['write_burst_per_second']:g}/s, on an index partition of its own"
            f" ({'within' if z['one_run_fits_a_partition'] else 'past'} {HEADROOM:.0%} of 1,000 WCU/s);"
            f" the table warm for {z['table_write_units']:,} WCU/s, {z['lambda_concurrency']} concurrent executions"
        )
    sized = Design(**sim["sized"]["design"])
    lines.append(
        f"That design, a million due ({sized.label()}, fan-out {sized.fanout_parallelism} at once, the account's"
        " concurrency, the index and the table pre-warmed), and on an ordinary minute:"
    )
    lines.append(_burst_header())
    lines += [_burst_row(f"{GOAL.entries:,} {kind}", sim["sized"][kind]) for kind in KINDS]
    lines += [_burst_row(f"{SIZES[0]:,} {kind}", sim["sized_light"][kind]) for kind in KINDS]
    return lines


def _render_sweep(sweep: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"A million due in one minute, other designs (the account's concurrency, the index"
        f" pre-warmed to a partition per slot, the table to 100,000 WCU/s); goal: p99 < {GOAL.lateness_p99:g} s,"
        f" none skipped, partitions < 1,000 WCU/s, concurrency <= {GOAL.concurrency:,}, cost <= today's"
        " (the model's, at 2,000 a minute):",
        f"  {'design':<44} {'p99 fast':>8} {'slow':>6} {'not called':>10} {'index':>6} {'table':>7}"
        f" {'thrott':>7} {'conc':>5} {'USD/M':>11}  goal (fast, slow)",
    ]
    for row in sweep:
        fast, slow = row["fast"], row["slow"]
        design = Design(**row["design"])
        name = design.label() + (f", {design.memory_mb} MB" if design.memory_mb != 1024 else "")
        lines.append(
            f"  {name:<44} {fast['call_p99_s']:>8.1f} {slow['call_p99_s']:>6.1f}"
            f" {fast['skipped'] + fast['left'] + slow['skipped'] + slow['left']:>10,}"
            f" {max(fast['index_partition_wcu_peak'], slow['index_partition_wcu_peak']):>6.0f}"
            f" {max(fast['table_wcu_peak'], slow['table_wcu_peak']):>7,.0f}"
            f" {fast['throttled_writes'] + slow['throttled_writes']:>7,}"
            f" {max(fast['concurrency_peak'], slow['concurrency_peak']):>5}"
            f" {fast['cost_per_million_usd']:>5.2f}/{slow['cost_per_million_usd']:.2f}"
            f"  {_goal(fast)}, {_goal(slow)}"
        )
    return lines


def _burst_header() -> str:
    return (
        f"  {'case':<48} {'p50':>7} {'p99':>7} {'max':>7} {'rec p99':>7} {'not called':>10} {'minutes':>7}"
        f" {'index':>6} {'table':>6} {'thrott':>7} {'conc':>5} {'USD/M':>6}  goal"
    )


def _goal(s: dict[str, Any]) -> str:
    return "MET" if all(s["goal"].values()) else "no: " + " ".join(k for k, v in s["goal"].items() if not v)


def _burst_row(name: str, s: dict[str, Any]) -> str:
    met = _goal(s)
    return (
        f"  {name:<48} {s['call_p50_s']:>7.1f} {s['call_p99_s']:>7.1f} {s['call_max_s']:>7.1f}"
        f" {s['record_p99_s']:>7.1f} {s['skipped'] + s['left']:>8,} {s['minutes']:>7}"
        f" {s['index_partition_wcu_peak']:>6.0f} {s['table_partition_wcu_peak']:>6.0f}"
        f" {s['throttled_writes']:>7,} {s['concurrency_peak']:>5} {s['cost_per_million_usd']:>6.2f}  {met}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simulate", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results.json", help="a benchmark's results")
    parser.add_argument("--no-sweep", action="store_true", help="leave out the other designs")
    parser.add_argument("--output", type=Path, help="also write the simulation's figures here (JSON)")
    parser.add_argument(
        "--update",
        action="store_true",
        help="write the simulation and its figures back into the results file (its measurements unchanged)",
    )
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    sim = simulate(results, with_sweep=not args.no_sweep)
    print(render(sim))
    if args.output:
        args.output.write_text(json.dumps(sim, indent=2) + "\n")
    if args.update:
        update(results, sim)
        args.results.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def update(results: dict[str, Any], sim: dict[str, Any]) -> None:
    """Put a new simulation and its figures into a benchmark's results, in place of the old ones."""
    results["simulation"] = sim
    for section in ("figures", "targets"):
        results[section] = {k: v for k, v in results.get(section, {}).items() if not k.startswith("simulation.")}
    for f in figures(sim):
        results["figures"][f.key] = f.as_dict()
        if f.met is not None:
            results["targets"][f.key] = {"target": f.target, "met": f.met}


if __name__ == "__main__":
    raise SystemExit(main())
