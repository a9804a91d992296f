"""The dispatch simulation (bench/simmodel.py, bench/simulate.py): the model behaves as the engine
it describes, and the benchmark gets its figures from it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from bench import simulate
from bench.simmodel import (
    Cpu,
    Design,
    Endpoints,
    Latency,
    Limits,
    Platform,
    RunSpec,
    Storage,
    Workload,
    partition_limits,
    peak_per_second,
    percentile_of_shifted,
    simulate_burst,
    simulate_run,
)

INSTANT = Latency(0.0)
NO_STORAGE = Storage(write=INSTANT, page=INSTANT, page_item=0.0, batch_get=INSTANT, lease=INSTANT)
NO_CPU = Cpu(call=0.0, write=0.0, read_item=0.0)


def run_of(entries: int, latency: Latency, **changes: Any) -> RunSpec:
    spec = RunSpec(
        shards=((entries,),),
        endpoints=(Endpoints(1.0, latency, hosts=100),),
        cpu=NO_CPU,
        storage=NO_STORAGE,
    )
    return replace(spec, **changes)


def instant_platform(**changes: Any) -> Platform:
    platform = Platform(scheduler_delay=Latency(0.5), invoke=0.0, async_start=INSTANT, cold_start=0.0, peek=INSTANT)
    return replace(platform, **changes)


# -- one run ----------------------------------------------------------------------------------------


def test_with_no_cost_and_room_for_all_lateness_is_the_latencies_alone() -> None:
    """Every call starts at once; every outcome is recorded one call and one write later."""
    storage = replace(NO_STORAGE, write=Latency(0.006))
    result = simulate_run(run_of(500, Latency(0.05), storage=storage, concurrency=1000, writers=1000))

    assert result.calls == [0.0] * 500
    assert result.records == pytest.approx([0.056] * 500)
    assert result.leftover == (0,)
    assert result.end == pytest.approx(0.056)


def test_in_a_burst_with_no_cost_lateness_is_the_scheduler_delay_then_the_latencies() -> None:
    design = Design(shards=4, concurrency=1000, writers=1000, reserved_concurrency=0)
    burst = simulate_burst(
        design,
        instant_platform(),
        run_of(0, INSTANT, storage=replace(NO_STORAGE, write=Latency(0.006))),
        Workload(2000, (Endpoints(1.0, Latency(0.05)),)),
    )
    calls = [(r.calls, run.leased, 1) for run, r in burst.instances()]
    records = [(r.records, run.leased, 1) for run, r in burst.instances()]

    assert percentile_of_shifted(calls, 0.1) == pytest.approx(0.5, abs=1e-3)
    assert percentile_of_shifted(calls, 100) == pytest.approx(0.5, abs=1e-3)
    assert percentile_of_shifted(records, 50) == pytest.approx(0.556, abs=1e-3)
    assert burst.left == 0 and len(burst.runs) == 4


def test_doubling_the_concurrency_halves_a_slow_endpoint_run() -> None:
    slow = Latency(1.0)
    at_32 = simulate_run(run_of(1000, slow, concurrency=32))
    at_64 = simulate_run(run_of(1000, slow, concurrency=64))

    assert at_32.end == pytest.approx(2 * at_64.end, rel=0.05)
    assert at_64.end == pytest.approx(1000 / 64, rel=0.05)


def test_one_core_bounds_a_run_by_its_cpu_per_callback_stretched_to_its_share() -> None:
    cpu = Cpu(call=0.001, write=0.002, read_item=0.0)
    here = simulate_run(run_of(1000, INSTANT, cpu=cpu))
    in_lambda = simulate_run(run_of(1000, INSTANT, cpu=replace(cpu, scale=2.0)))

    assert here.end == pytest.approx(1000 * 0.003, rel=0.02)
    assert here.cpu_busy == pytest.approx(3.0)
    assert in_lambda.end == pytest.approx(2 * here.end, rel=0.02)


def test_a_partition_over_its_limit_throttles_and_the_writes_spread_out() -> None:
    storage = replace(NO_STORAGE, write=Latency(0.005))
    fast = run_of(3000, Latency(0.01), storage=storage, concurrency=256)

    unlimited = simulate_run(replace(fast, limits=Limits(index_write=100_000)))
    limited = simulate_run(replace(fast, limits=Limits(index_write=500)))

    assert unlimited.throttled_writes == 0
    assert limited.throttled_writes > 0
    assert limited.end > 3000 / 500 - 1  # no faster than the partition allows (and its 1 s burst)
    assert peak_per_second({k: v for k, v in unlimited.demand.items()}) > 1000
    recorded_per_second = {int(t) for t in limited.records}
    assert max(sum(1 for t in limited.records if int(t) == s) for s in recorded_per_second) <= 1000


def test_writes_throttled_past_every_retry_stay_pending_to_be_called_again() -> None:
    storage = replace(NO_STORAGE, write=Latency(0.005))
    result = simulate_run(run_of(2000, INSTANT, storage=storage, concurrency=256, limits=Limits(index_write=5)))

    assert result.unrecorded > 0
    assert result.leftover == (2000 - len(result.records),)
    assert len(result.calls) > len(result.records)


def test_no_call_starts_after_the_window_and_what_is_left_stays_pending() -> None:
    result = simulate_run(run_of(1000, Latency(1.0), concurrency=10, window=40.0))

    assert max(result.calls) < 40.0
    assert len(result.calls) == 400
    assert result.deferred == 600 and result.leftover == (600,)


def test_entries_past_their_max_delay_are_skipped_without_a_call() -> None:
    result = simulate_run(run_of(100, Latency(0.05), skip_after=0.0))

    assert result.calls == [] and result.skipped == 100
    assert len(result.records) == 100 and result.leftover == (0,)


def test_the_lambda_timeout_cuts_a_run_and_keeps_its_entries_pending() -> None:
    cpu = Cpu(call=0.0, write=0.0, read_item=0.001)  # reading 100,000 entries takes 100 s
    whole_read_first = run_of(100_000, Latency(0.05), cpu=cpu, deadline=75.0, read_ahead=0)
    result = simulate_run(whole_read_first)

    assert result.timed_out and result.end == 75.0
    assert result.calls == [] and result.leftover == (100_000,)


def test_a_shard_too_large_to_read_in_the_window_is_called_while_it_is_read() -> None:
    cpu = Cpu(call=0.0, write=0.0, read_item=0.001)  # reading 100,000 entries takes 100 s
    result = simulate_run(run_of(100_000, Latency(0.05), cpu=cpu, deadline=75.0))

    assert not result.timed_out and result.end < 40.0 + 1.8, "reading stops at the window, its last page parsed"
    assert min(result.calls) < 2.0, "the first page's entries are called at once"
    assert 36_000 < len(result.calls) < 40_000, "as fast as the reading goes, no faster"
    assert result.leftover == (100_000 - len(result.calls),)
    assert result.due - len(result.calls) <= 2000 + 64 + 1721, "read ahead of the calls: a backlog and a page"


def test_a_host_share_keeps_one_slow_host_from_taking_every_slot() -> None:
    endpoints = (Endpoints(0.5, Latency(10.0), hosts=1), Endpoints(0.5, Latency(0.01), hosts=100))
    spec = replace(run_of(0, INSTANT), shards=((500, 500),), endpoints=endpoints, concurrency=20)

    shared = simulate_run(spec)
    capped = simulate_run(replace(spec, per_host_share=0.25))

    # Without a share the slow host soon holds all 20 slots and the fast entries wait behind it;
    # with 5 slots at most for it, every fast entry is called within the run's window.
    assert shared.leftover[1] > 100
    assert capped.leftover[1] == 0
    assert len(capped.calls) > len(shared.calls)


def test_a_consistent_read_before_the_calls_costs_a_read_unit_an_entry_and_time() -> None:
    storage = replace(NO_STORAGE, batch_get=Latency(0.015))
    plain = simulate_run(run_of(1000, INSTANT, storage=storage))
    consistent = simulate_run(run_of(1000, INSTANT, storage=storage, consistent=True))

    assert plain.consistent_read_units == 0
    assert consistent.consistent_read_units == 1000
    assert min(consistent.calls) == pytest.approx(min(plain.calls) + 10 * 0.015)


def test_a_run_is_the_same_with_the_same_seed_and_differs_with_another() -> None:
    spec = run_of(2000, Latency(0.05, 0.5), storage=replace(NO_STORAGE, write=Latency(0.006, 0.3)))

    assert simulate_run(spec) == simulate_run(spec)
    assert simulate_run(spec).records != simulate_run(replace(spec, seed=7)).records


# -- bursts -----------------------------------------------------------------------------------------


def test_a_concurrency_limit_delays_runs_and_is_never_exceeded() -> None:
    from bench.simmodel import concurrency_peak

    design = Design(shards=8, reserved_concurrency=3)
    burst = simulate_burst(
        design, instant_platform(), run_of(0, INSTANT), Workload(800, (Endpoints(1.0, Latency(1.0)),))
    )
    intervals = [(run.executing, run.ended) for run in burst.runs] + [(a, e) for a, e, _ in burst.coordinators]

    assert concurrency_peak(intervals) <= 3
    assert burst.left == 0
    assert max(run.started for run in burst.runs) > 1.0  # some had to wait for a slot


def test_a_heavy_shard_runs_one_run_per_split_s_worth_and_a_light_one_a_single_run() -> None:
    design = Design(shards=2, slices=4, split_at=1000, concurrency=1000, writers=1000, reserved_concurrency=0)
    design = replace(design, table_write_units=1e6, index_write_units=1e6)  # nothing throttled
    for entries, runs in ((12000, 8), (4000, 4), (2000, 2)):  # 6,000, 2,000 or 1,000 due in each shard
        workload = Workload(entries, (Endpoints(1.0, INSTANT),))
        burst = simulate_burst(design, instant_platform(), run_of(0, INSTANT), workload)
        assert len(burst.runs) == runs and burst.left == 0
        assert sum(len(r.calls) for _, r in burst.instances()) == entries
    assert {len(run.chain) for run in burst.runs} == {4}, "a light shard's run holds every slice"


def test_each_slice_has_an_index_partition_of_its_own() -> None:
    platform = instant_platform()
    design = Design(shards=2, slices=4, index_write_units=8000.0, index_read_units=24000.0, table_write_units=8000.0)
    limits = partition_limits(design, platform)
    assert (limits.index_write, limits.index_read, limits.table_write) == (1000.0, 3000.0, 1000.0)


def test_a_run_waits_for_the_lease_the_previous_minute_still_holds() -> None:
    """A run of slow calls that outlasts its minute: the next minute's run of that shard waits."""
    design = Design(shards=1, concurrency=10, run_seconds=58.0)  # calls start up to 58 s, last 14 s
    burst = simulate_burst(
        design, instant_platform(), run_of(0, INSTANT), Workload(1000, (Endpoints(1.0, Latency(14.0)),))
    )
    first, second = burst.runs[0], burst.runs[1]

    assert first.ended > 60.5
    assert second.leased >= first.ended


def test_today_is_the_template_and_the_engine_as_they_are() -> None:
    from callme.dispatch import PEEKERS, READ_AHEAD, READERS, WRITERS
    from handlers.fanout import INVOKERS
    from local.template import load_template
    from tests.conftest import settings

    template = load_template()
    design = simulate.today()

    assert design.shards == template["Parameters"]["DueShards"]["Default"]
    assert design.slices == template["Parameters"]["DispatchSlices"]["Default"]
    assert design.concurrency == template["Parameters"]["DispatchConcurrency"]["Default"]
    assert design.reserved_concurrency == template["Parameters"]["DispatcherReservedConcurrency"]["Default"]
    assert design.memory_mb == template["Resources"]["DispatcherFunction"]["Properties"]["MemorySize"]
    assert design.timeout == template["Resources"]["DispatcherFunction"]["Properties"]["Timeout"]
    assert (design.writers, design.readers, design.read_ahead) == (WRITERS, READERS, READ_AHEAD)
    engine = settings().dispatch  # callme's defaults, from their one home
    assert design.run_seconds == engine.run_seconds and design.split_at == engine.split_at
    assert (design.fanout_parallelism, design.peekers) == (INVOKERS, PEEKERS)
    assert (design.call_budget, design.lease_renew_seconds) == (engine.call_budget, engine.heartbeat_seconds)
    assert (design.lease_seconds, design.lease_wait) == (engine.lease_seconds, engine.lease_wait)
    assert design.record_attempts == engine.record_attempts
    assert design.per_host_share == engine.host_share / 100
    assert Design() == design, "the model's defaults are callme as it is"


# -- fed with a benchmark's results -------------------------------------------------------------------


def benchmark_results() -> dict[str, Any]:
    """A benchmark's results, as much of them as the simulation reads (figures like this machine's)."""

    def run(entries: int, seconds: float, p99: float, dispatcher_cpu: float) -> dict[str, Any]:
        return {
            "entries": entries,
            "seconds": seconds,
            "first_call_s": 0.3,
            "peek_seconds": 0.11,
            "cpu_seconds": {"dispatcher": dispatcher_cpu, "dynamodb": entries * 0.0019, "sink": 0.2},
            "call_lateness_p50_s": p99 / 2,
            "call_lateness_p99_s": p99,
            "storage": {  # 8 index Queries, then each entry read again before its call (32 BatchGetItem)
                "reads": 8 + 32,
                "read_items": 2 * entries,
                "read_cpu_s": 2 * entries * 0.0001,
                "write_cpu_ms_mean": 1.2,
                "lease_wall_ms_mean": 5.0,
            },
        }

    repetition = {
        "http_only": {"calls": 2000, "cpu_seconds": {"dispatcher": 1.86, "dynamodb": 0.0, "sink": 0.18}},
        "storage_only": run(2000, 4.56, 4.27, 3.03),
        "dispatch": run(2000, 5.95, 5.70, 5.09),
        "slow": run(1000, 16.41, 15.34, 2.76),
    }
    inputs = {
        "write_units_per_task": 4.0,
        "read_units_per_task": 0.068,
        "lease_write_units_per_shard_run": 2.0,
        "peek_read_units_per_minute": 4.0,
        "item_bytes": 609,
        "api_seconds_per_create": 0.0043,
        "dispatcher_seconds_per_callback": 0.0044,
        "slow_dispatcher_seconds_per_callback": 0.0164,
        "coordinator_seconds_per_minute": 0.11,
        "callbacks_per_minute": 2000,
        "shards": 8,
    }
    return {
        "capacity": {"runs": [{"item_bytes": {"after_dispatch": 609}}]},
        "throughput": {
            "scenario": {"entries": 2000, "slow_entries": 1000, "slow_delay": 1.0, "concurrency": 64, "shards": 8},
            "runs": [repetition],
        },
        "coldstart": {"median_ms": {"dispatcher": 161.0}},
        "cost": {"inputs": inputs},
    }


def test_the_model_takes_the_measured_cpu_per_callback_split_as_the_parts_measure_it() -> None:
    results = benchmark_results()
    m = simulate.measured_figures(results)[0]

    per_callback = m.call_cpu + m.write_cpu + 40 * m.read_page_cpu / 2000 + 2 * m.read_item_cpu
    assert per_callback == pytest.approx(5.09 / 2000)  # the dispatch's dispatcher CPU per callback
    assert m.call_cpu / m.write_cpu == pytest.approx(0.00093 / (3.03 / 2000 - 0.0002))
    assert m.server_write == pytest.approx((4.56 - 0.3) / 2000)  # the storage-only run's pace


@pytest.fixture(scope="module")
def simulated() -> dict[str, Any]:
    return simulate.simulate(benchmark_results(), with_sweep=False)


def test_the_check_sets_each_simulated_run_beside_the_measured_one(simulated: dict[str, Any]) -> None:
    fast = simulated["check"]["fast"]["repetitions"][0]

    assert fast["measured"] == {"call_p50_s": 2.85, "call_p99_s": 5.70, "seconds": 5.95}
    # 2,000 callbacks at the measured 2.545 ms of CPU on one core, after the look at the shards, at
    # least; and the run's other waits (its start, the writes' queue) keep it within 10 % of the run.
    assert 0.11 + 2000 * 0.002545 <= fast["simulated"]["seconds"] <= fast["measured"]["seconds"] * 1.1
    slow = simulated["check"]["slow"]["repetitions"][0]
    assert slow["simulated"]["seconds"] == pytest.approx(1000 / 64, rel=0.1)


def test_a_model_that_drifts_from_the_measurement_fails_its_figure(simulated: dict[str, Any]) -> None:
    figures = {f.key: f for f in simulate.figures(simulated)}
    assert figures["simulation.check.slow.seconds"].met

    drifted = benchmark_results()
    drifted["throughput"]["runs"][0]["slow"]["seconds"] = 30.0
    check = simulate.check(drifted, simulate.measured_figures(drifted))
    figures = {f.key: f for f in simulate.figures({**simulated, "check": check})}
    assert figures["simulation.check.slow.seconds"].met is False


def test_every_simulation_figure_comes_out_positive(simulated: dict[str, Any]) -> None:
    figures = simulate.figures(simulated)

    assert sorted(f.key for f in figures) == sorted(simulate.FIGURES)
    assert all(f.value > 0 for f in figures)
    assert "1,000,000" in simulate.render(simulated)


def test_a_million_in_a_minute_misses_the_goal_today(simulated: dict[str, Any]) -> None:
    million = simulated["bursts"]["1000000.fast"]

    assert million["call_p99_s"] > simulate.GOAL.lateness_p99
    assert million["skipped"] + million["left"] > 0
    assert not all(million["goal"].values())


def test_the_sizing_arithmetic_is_borne_out_by_the_model(simulated: dict[str, Any]) -> None:
    z = simulated["sizing"]["slow"]

    cpu = 0.002545 * 1769 / 1024  # the dispatch's CPU per callback, at 1,024 MB
    assert z["run_rate_per_second"] == pytest.approx(min(1 / cpu, 256), rel=0.01)
    assert z["one_run_fits_a_partition"] and z["write_burst_per_second"] <= 1000 * simulate.HEADROOM
    assert z["shards"] == simulate.today().shards, "the everyday's shards, split into slices for the burst"
    assert z["shards"] * z["slices_at_least"] >= z["runs"]
    sized = simulated["sized"]
    assert (sized["design"]["shards"], sized["design"]["slices"]) == (z["shards"], z["slices_at_least"])
    for kind in ("fast", "slow"):
        assert all(sized[kind]["goal"].values()), (kind, sized[kind]["goal"])
        light = simulated["sized_light"][kind]
        assert light["concurrency_peak"] == z["shards"], "an ordinary minute: one run per busy shard, as today"


def test_entries_never_called_count_as_late_as_the_minutes_simulated() -> None:
    results = benchmark_results()
    m = simulate.measured_figures(results)[0]
    stuck = replace(simulate.today(), run_seconds=0.0)  # no run may start a call
    burst = simulate.burst(m, stuck, 1000, simulate.FAST)
    summary = simulate.summarize(burst, m, simulate.cost_inputs(results), None)

    assert summary["called"] == 0 and summary["left"] == 1000
    assert summary["call_p50_s"] == summary["call_max_s"] == 60.0 * 12  # max_delay (10) + 2 minutes
    assert not summary["goal"]["none_skipped"] and not summary["goal"]["lateness_p99"]


def test_an_update_replaces_the_simulation_and_keeps_the_measurements(simulated: dict[str, Any]) -> None:
    results = benchmark_results()
    results["figures"] = {"throughput.dispatch_seconds": {"value": 5.95}, "simulation.gone": {"value": 1.0}}
    results["targets"] = {"simulation.gone": {"target": "", "met": False}}

    simulate.update(results, simulated)

    assert results["figures"]["throughput.dispatch_seconds"] == {"value": 5.95}
    assert "simulation.gone" not in results["figures"] and "simulation.gone" not in results["targets"]
    assert set(simulate.FIGURES) <= set(results["figures"])
    assert results["simulation"] is simulated
