"""GET /stats against moto: what the dispatcher handler did in a minute, as the api function answers it."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from callme.clock import FixedClock, minute_of
from callme.ports import shard_of
from callme.task import Task, TaskDefinition, TaskKey
from handlers import api, dispatcher, wiring
from tests.conftest import Sink, api_event, load_event
from tests.integration.test_dispatcher_handler import register

DAY = 86400


@pytest.fixture
def dispatch_env(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CALLME_SIGNING_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    wiring.reset()
    return aws


def get_stats(context: Any, query: str = "") -> tuple[int, dict[str, Any]]:
    response = api.lambda_handler(api_event("GET", f"/stats{query}"), context)
    return response["statusCode"], json.loads(response["body"])


def totals(answer: dict[str, Any]) -> dict[str, int]:
    keys = ("calls", "succeeded", "failed", "retried", "skipped")
    return {k: sum(m[k] for m in answer["minutes"]) for k in keys}


def test_a_dispatched_minute_shows_in_stats_with_its_outcomes(
    dispatch_env: Any, lambda_context: Any, sink: Sink
) -> None:
    for i in range(3):
        register(lambda_context, f"ok{i}", sink.on(f"/ok{i}"))
    register(lambda_context, "fails", sink.on("/fails", 500), retry=0)
    register(lambda_context, "flaky", sink.on("/flaky", 503, 200), retry=1)
    now = time.time()
    stale = Task.new(TaskKey("stale", minute_of(now) - 600), TaskDefinition("https://example.com/x", max_delay=5), now)
    wiring.api_repository().insert(stale)  # the API refuses a past minute; a stack that was down leaves one

    report = dispatcher.lambda_handler(load_event("dispatcher-scheduled"), lambda_context)
    assert (report["calls"], report["succeeded"], report["failed"], report["retried"], report["skipped"]) == (
        6,
        4,
        1,
        1,
        1,
    )
    status, answer = get_stats(lambda_context)
    assert status == 200
    assert len(answer["minutes"]) == 60
    assert answer["to"] == minute_of(time.time()) and answer["from"] == answer["to"] - 59 * 60
    assert [m["minute"] for m in answer["minutes"]] == list(range(answer["from"], answer["to"] + 1, 60))
    assert totals(answer) == {"calls": 6, "succeeded": 4, "failed": 1, "retried": 1, "skipped": 1}
    busy = [m for m in answer["minutes"] if m["calls"]]
    assert busy and all(0 <= m["lateness_p50"] <= m["lateness_p99"] < 60 for m in busy)
    quiet = [m for m in answer["minutes"] if not (m["calls"] or m["skipped"])]
    assert quiet and all(m["lateness_p50"] is None and m["lateness_p99"] is None for m in quiet)


def test_two_shard_runs_in_one_minute_merge_and_their_items_expire_with_entries(
    dispatch_env: Any, lambda_context: Any, sink: Sink
) -> None:
    shards = wiring.settings().due_shards
    by_shard: dict[int, list[dict[str, Any]]] = {}
    for i in range(40):
        if len(by_shard) == 2 and all(len(v) >= 2 for v in by_shard.values()):
            break
        name = f"job{i}"
        shard = shard_of(TaskKey(name, minute_of(time.time())), shards)
        if shard in by_shard or len(by_shard) < 2:
            by_shard.setdefault(shard, []).append(register(lambda_context, name, sink.on(f"/{name}", 500), retry=0))
    at = FixedClock(minute_of(time.time()) + 10)  # both runs in the same minute, whenever the test runs
    for shard in by_shard:
        dispatcher.dispatch({"shard": shard}, lambda_context, clock=at)
    entries = sum(len(v) for v in by_shard.values())

    _, answer = get_stats(lambda_context, "?minutes=15")
    [minute] = [m for m in answer["minutes"] if m["calls"]]
    assert minute["minute"] == minute_of(at.now())
    assert (minute["calls"], minute["failed"], minute["succeeded"]) == (entries, entries, 0)

    items = dispatch_env.scan(TableName=wiring.settings().stats_table_name)["Items"]
    assert len(items) == 2, "one item per shard run"
    retention = wiring.settings().retention_days * DAY
    assert {int(item["expires_at"]["N"]) for item in items} == {minute_of(at.now()) + retention}
    ttl = dispatch_env.describe_time_to_live(TableName=wiring.settings().stats_table_name)
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("?minutes=14", "minutes must be between 15 and 1440, got 14"),
        ("?minutes=1441", "minutes must be between 15 and 1440, got 1441"),
        ("?minutes=an-hour", "minutes must be an integer, got 'an-hour'"),
        ("?minutes=", "minutes must be an integer, got ''"),
        ("?minute=60", "unknown query parameter 'minute'; allowed here: pretty, minutes"),
    ],
)
def test_a_window_out_of_range_is_a_clear_400(aws: Any, lambda_context: Any, query: str, error: str) -> None:
    assert get_stats(lambda_context, query) == (400, {"error": error})


def test_a_day_of_minutes_with_nothing_recorded_is_zeros_and_nulls(aws: Any, lambda_context: Any) -> None:
    status, answer = get_stats(lambda_context, "?minutes=1440")
    assert status == 200
    assert len(answer["minutes"]) == 1440
    assert {json.dumps({**m, "minute": 0}) for m in answer["minutes"]} == {
        '{"minute": 0, "calls": 0, "succeeded": 0, "failed": 0, "retried": 0, "skipped": 0, '
        '"lateness_p50": null, "lateness_p99": null}'
    }
