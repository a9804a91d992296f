"""The cost model's arithmetic for batches and outcome events: what they add or save, and that a
task without them costs what it did."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench import cost

INPUTS = cost.Inputs(
    write_units_per_task=4.0,
    read_units_per_task=1.07,
    lease_write_units_per_shard_run=2.0,
    peek_read_units_per_minute=4.0,
    item_bytes=600,
    api_seconds_per_create=0.01,
    dispatcher_seconds_per_callback=0.004,
    slow_dispatcher_seconds_per_callback=0.06,
    coordinator_seconds_per_minute=0.05,
    callbacks_per_minute=2000,
    shards=8,
)


def total(lines: list[cost.Line]) -> float:
    return sum(line.usd for line in lines)


def test_a_task_without_batches_or_events_costs_what_it_did() -> None:
    with_new_inputs = replace(
        INPUTS, api_seconds_per_batch=0.5, outcome_event_bytes=900, publisher_seconds_per_event=1e-4
    )
    assert total(cost.callme_lines(with_new_inputs)) == total(cost.callme_lines(INPUTS))
    assert (
        cost.estimate(with_new_inputs, 6.0)["callme_per_million_usd"]
        == cost.estimate(INPUTS, 6.0)["callme_per_million_usd"]
    )


def test_a_batch_of_100_pays_one_request_and_one_invocation_for_100_tasks() -> None:
    inputs = replace(INPUTS, api_seconds_per_batch=0.4)
    single = {line.item: line.usd for line in cost.creation_lines(inputs)}
    batched = cost.creation_lines(inputs, batched=True)
    assert batched[0].usd == pytest.approx(single["API Gateway REST, PUT /task"] / 100)
    assert batched[1].usd == pytest.approx(single["api Lambda requests"] / 100)
    # 0.4 s a batch is 4 ms a task, against 10 ms for a PUT each
    assert batched[2].usd == pytest.approx(single["api Lambda duration"] * 0.4)
    saved = total(cost.creation_lines(inputs)) - total(batched)
    estimate = cost.estimate(inputs, 6.0)
    assert estimate["batched_per_million_usd"] == pytest.approx(estimate["callme_per_million_usd"] - saved, abs=1e-4)


@pytest.mark.parametrize(("event_bytes", "chunks"), [(900, 1), (64 * 1024, 1), (64 * 1024 + 1, 2)])
def test_outcome_events_cost_a_put_event_per_64_kb_and_the_publishing(event_bytes: int, chunks: int) -> None:
    inputs = replace(INPUTS, outcome_event_bytes=event_bytes, publisher_seconds_per_event=0.0002)
    events, publishing = cost.outcome_event_lines(inputs)
    assert events.usd == pytest.approx(chunks * cost.EVENTBRIDGE_EVENTS_PER_MILLION)
    assert publishing.usd == pytest.approx(1e6 * 0.0002 * cost.DISPATCHER_MEMORY_GB * cost.LAMBDA_ARM_GB_SECOND)
    assert cost.estimate(inputs, 6.0)["outcome_events_per_million_usd"] == pytest.approx(
        events.usd + publishing.usd, abs=1e-4
    )


def test_the_rendering_shows_both_ways_of_creating_and_the_events() -> None:
    text = cost.render(cost.estimate(replace(INPUTS, api_seconds_per_batch=0.4, outcome_event_bytes=900), 6.0))
    assert "POST /tasks of 100" in text and "callme, total, created in batches" in text
    assert "EventBridge PutEvents, outcome events" in text
