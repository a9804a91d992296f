"""The schedule routes through the API handler against moto: statuses, answers, what is stored, and
nothing written on a refused request."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from callme.task import TaskKey
from handlers import api, wiring
from local.dynamodb import TABLE_NAMES
from tests.conftest import HEADERS_KEY, api_event, stored_items

MINUTE = 60
CALLBACK = "http://example.com/digest"


def now_minute() -> int:
    return int(time.time()) // MINUTE * MINUTE


class Client:
    def __init__(self, context: Any) -> None:
        self.context = context

    def __call__(self, method: str, target: str, body: Any = None) -> tuple[int, Any]:
        raw = body if body is None or isinstance(body, str) else json.dumps(body)
        response = api.lambda_handler(api_event(method, target, raw), self.context)
        return response["statusCode"], json.loads(response["body"])

    def put(self, name: str, **fields: Any) -> tuple[int, Any]:
        return self("PUT", f"/schedule/{name}", {"callback": CALLBACK, **fields})

    def runs(self, name: str) -> list[dict[str, Any]]:
        status, answer = self("GET", f"/status/{name}")
        assert status == 200, answer
        return list(answer["tasks"])

    def pending(self, name: str) -> list[dict[str, Any]]:
        return [run for run in self.runs(name) if run["task_state"] == "pending"]


@pytest.fixture
def client(aws: Any, lambda_context: Any) -> Client:
    return Client(lambda_context)


def test_put_creates_a_schedule_with_its_next_five_runs_and_its_pending_run(client: Client) -> None:
    before = now_minute()
    status, schedule = client.put("digest", every="15m", payload="hello", retry=2)
    assert status == 201
    start = schedule["start_at"]
    assert start in (before, before + MINUTE)  # the minute it was created in
    assert schedule["next_runs"] == [start + k * 15 * MINUTE for k in range(1, 6)]
    assert (schedule["every"], schedule["cron"], schedule["timezone"], schedule["paused"]) == (
        "15m",
        None,
        "UTC",
        False,
    )
    assert (schedule["payload"], schedule["retry"], schedule["max_delay"]) == ("hello", 2, 10)
    [run] = client.pending("digest")
    assert run["trigger_at"] == schedule["next_runs"][0]
    assert (run["schedule"], run["payload"], run["retry"]) == ("digest", "hello", 2)
    assert client("GET", "/schedule/digest") == (200, schedule)


def test_a_cron_schedule_in_a_time_zone(client: Client) -> None:
    status, schedule = client.put("morning", cron="0 9 * * MON-FRI", timezone="Europe/Lisbon")
    assert status == 201
    for run in schedule["next_runs"]:
        local = time.strftime("%H:%M %a", time.gmtime(run))  # Lisbon is UTC or UTC+1
        assert local[:5] in ("09:00", "08:00") and local[6:] not in ("Sat", "Sun"), local


def test_the_same_put_again_changes_nothing(client: Client) -> None:
    _, first = client.put("digest", every="1h")
    [run] = client.pending("digest")
    assert client.put("digest", every="1h") == (200, first)
    assert client.pending("digest") == [run]


def test_a_new_definition_replaces_the_pending_run(client: Client) -> None:
    client.put("digest", every="1h")
    [old] = client.pending("digest")
    status, schedule = client.put("digest", every="1h", payload="v2", callback_method="POST")
    assert status == 200 and schedule["payload"] == "v2"
    [new] = client.pending("digest")
    assert new["trigger_at"] == old["trigger_at"] and new["payload"] == "v2" and new["callback_method"] == "POST"
    assert new["webhook_id"] != old["webhook_id"]


def test_a_new_timing_cancels_the_pending_run_and_makes_the_first_of_the_new_one(client: Client) -> None:
    _, before = client.put("digest", every="1h")
    _, after = client.put("digest", every="2h")
    assert after["next_runs"][0] == before["next_runs"][1]
    runs = {run["trigger_at"]: run["task_state"] for run in client.runs("digest")}
    assert runs == {before["next_runs"][0]: "cancelled", after["next_runs"][0]: "pending"}


def test_pause_cancels_the_pending_run_and_resume_makes_one_again(client: Client) -> None:
    client.put("digest", every="1h")
    status, paused = client.put("digest", every="1h", paused=True)
    assert status == 200 and (paused["paused"], paused["next_runs"]) == (True, [])
    assert client.pending("digest") == []
    _, resumed = client.put("digest", every="1h")
    [run] = client.pending("digest")
    assert run["trigger_at"] == resumed["next_runs"][0]


def test_a_paused_schedule_can_be_created_and_makes_no_run(client: Client) -> None:
    status, schedule = client.put("later", every="1d", paused=True)
    assert status == 201 and schedule["next_runs"] == []
    assert not [item for item in stored_items(client_aws(client)) if item["task_name"]["S"] == "later"]


def client_aws(client: Client) -> Any:
    import boto3

    return boto3.client("dynamodb", region_name="us-east-1")


def test_start_and_end_bound_the_runs(client: Client) -> None:
    start = now_minute() + 3 * 3600
    status, schedule = client.put("window", every="1h", start_at=start, end_at=start + 2 * 3600)
    assert status == 201
    assert schedule["next_runs"] == [start, start + 3600, start + 7200]
    assert (schedule["start_at"], schedule["end_at"]) == (start, start + 7200)


def test_a_start_at_in_the_past_anchors_every(client: Client) -> None:
    anchor = now_minute() - 7 * MINUTE
    status, schedule = client.put("anchored", every="10m", start_at=str(anchor))
    assert status == 201 and schedule["next_runs"][0] == anchor + 10 * MINUTE


def test_delete_stops_the_schedule_cancels_its_pending_run_and_keeps_the_runs(client: Client) -> None:
    _, schedule = client.put("digest", every="1h")
    status, deleted = client("DELETE", "/schedule/digest")
    assert status == 200
    assert deleted["cancelled"] == f"digest@{schedule['next_runs'][0]}" and deleted["next_runs"] == []
    assert client("GET", "/schedule/digest")[0] == 404
    [run] = client.runs("digest")
    assert run["task_state"] == "cancelled" and run["schedule"] == "digest"
    assert client("DELETE", "/schedule/digest")[0] == 404
    # and the name can be used again
    assert client.put("digest", every="1h")[0] == 201


def test_list_pages_by_name_and_start_from(client: Client) -> None:
    for name in ("a", "b", "c"):
        client.put(name, every="1h")
    seen: list[str] = []
    start_from = ""
    for _ in range(5):
        status, page = client("GET", f"/schedule/?limit=2{start_from}")
        assert status == 200
        seen += [s["task_name"] for s in page["schedules"]]
        if "next" not in page:
            break
        assert page["next"] == page["schedules"][-1]["task_name"]
        start_from = f"&start_from={page['next']}"
    assert sorted(seen) == ["a", "b", "c"]
    assert client("GET", "/schedule") == client("GET", "/schedule/")


def test_a_page_of_schedules_costs_one_scan_not_a_read_per_schedule(client: Client) -> None:
    names = [f"s{i:02}" for i in range(30)]
    for name in names:
        assert client.put(name, every="1h")[0] == 201
    asked: list[str] = []
    storage = wiring.schedule_service().schedules._client
    storage.meta.events.register("before-call.dynamodb", lambda model, **_: asked.append(model.name))
    seen: list[str] = []
    start_from = ""
    for _ in range(5):
        status, page = client("GET", f"/schedule/?limit=10{start_from}")
        assert status == 200, page
        seen += [s["task_name"] for s in page["schedules"]]
        assert all(s["next_runs"] for s in page["schedules"])
        if "next" not in page:
            break
        start_from = f"&start_from={page['next']}"
    assert sorted(seen) == names and len(seen) == 30
    assert set(asked) == {"Scan"} and len(asked) <= 4, asked  # one Scan a page (the last may need one more)


def test_list_pages_stop_before_the_answer_outgrows_lambdas_limit(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLME_MAX_BODY_BYTES", str(4 * 1024 * 1024))  # room for the escaped payload
    wiring.reset()
    payload = "\u0001" * (64 * 1024)  # 7 bytes each once the answer is escaped for Lambda
    for i in range(16):
        assert client.put(f"big{i:02}", every="1d", payload=payload)[0] == 201
    status, page = client("GET", "/schedule/?limit=100")
    assert status == 200 and "next" in page and 0 < len(page["schedules"]) < 16
    response = api.lambda_handler(api_event("GET", "/schedule/?limit=100"), client.context)
    assert len(json.dumps(response)) < 6_291_556


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"cron": "61 * * * *"}, "minute 61 is out of range 0-59"),
        ({"cron": "* * *"}, "has 3 fields, not 5"),
        ({"cron": "@fortnightly"}, "unknown alias"),
        ({"cron": "0 0 30 2 *"}, "can never run"),
        ({"cron": "0 9 * * *", "every": "1h"}, "exactly one of cron and every"),
        ({}, "a schedule needs cron"),
        ({"every": "0m"}, "too short"),
        ({"every": "15"}, "is not an interval"),
        ({"every": "1h", "timezone": "Mars/Olympus"}, "is not an IANA time zone name"),
        ({"every": "1h", "start_at": "+2h", "end_at": "+1h"}, "is before start_at"),
        ({"every": "1d", "end_at": "+1h"}, "no run after now"),
        ({"every": "1h", "trigger_at": "+1h"}, "a schedule has no trigger_at"),
        ({"every": "1h", "when": "soon"}, "unknown field 'when'"),
        ({"every": "1h", "paused": "yes"}, "paused must be true or false"),
        ({"every": "1h", "callback": "http://10.0.0.8/"}, "not a public address"),
        ({"every": "1h", "task_name": "other"}, "differs from 'digest'"),
        ({"every": "1h", "start_at": "+6hx"}, "start_at '+6hx' is not a relative time"),
        ({"every": "1h", "headers": {"Host": "evil.example"}}, "'Host' cannot be set"),
        ({"every": "1h", "headers": {"X-Evil": "a\r\nb"}}, "the value of 'X-Evil' holds a carriage return (CR)"),
        ({"every": "1h", "headers": ["X-Team"]}, "headers must be an object"),
    ],
)
def test_bad_input_is_a_400_naming_the_problem_and_nothing_is_written(
    client: Client, aws: Any, body: dict[str, Any], message: str
) -> None:
    status, answer = client("PUT", "/schedule/digest", {"callback": CALLBACK, **body})
    assert status == 400, answer
    assert message in answer["error"]
    assert stored_items(aws) == [] and stored_items(aws, TABLE_NAMES["SchedulesTable"]) == []


def test_a_bad_change_leaves_the_schedule_as_it_was(client: Client, aws: Any) -> None:
    _, schedule = client.put("digest", every="1h")
    before = (stored_items(aws), stored_items(aws, TABLE_NAMES["SchedulesTable"]))
    assert client.put("digest", cron="61 * * * *")[0] == 400
    assert (stored_items(aws), stored_items(aws, TABLE_NAMES["SchedulesTable"])) == before
    assert client("GET", "/schedule/digest") == (200, schedule)


@pytest.mark.parametrize(
    ("method", "target", "status"),
    [
        ("GET", "/schedule/nothing", 404),
        ("DELETE", "/schedule/nothing", 404),
        ("GET", "/schedule/bad%20name", 400),
        ("PUT", "/schedule/..", 400),
        ("GET", "/schedule/?limit=0", 400),
        ("GET", "/schedule/?start_from=a&start_from=b", 400),
        ("GET", "/schedule/?future_only=true", 400),
        ("POST", "/schedule/digest", 405),
        ("GET", "/schedule/digest?pretty=true&x=1", 400),
    ],
)
def test_errors(client: Client, method: str, target: str, status: int) -> None:
    answered, body = client(method, target, "{}" if method in ("PUT", "POST") else None)
    assert answered == status, body
    assert body["error"]


def test_runs_are_entries_of_the_task_that_delete_task_can_skip(client: Client) -> None:
    _, schedule = client.put("digest", every="1h")
    first = schedule["next_runs"][0]
    status, skipped = client("DELETE", f"/task/digest@{first}")
    assert status == 200 and skipped["task_state"] == "cancelled" and skipped["schedule"] == "digest"
    # the schedule goes on: the dispatcher makes the next run at the skipped run's minute
    assert client("GET", "/schedule/digest")[1]["paused"] is False


# -- headers ----------------------------------------------------------------------------------------

SECRET = "Bearer sch3dul3-t0k3n"


def test_a_schedule_s_headers_are_masked_in_every_answer_and_sealed_in_both_tables(
    client: Client, aws: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    status, schedule = client.put("digest", every="1h", headers={"Authorization": SECRET, "X-Team": "ops"})
    assert status == 201, schedule
    assert schedule["headers"] == {"Authorization": "***", "X-Team": "***"}
    [run] = client.pending("digest")
    assert run["headers"] == {"Authorization": "***", "X-Team": "***"}
    answers = [schedule, client("GET", "/schedule/digest"), client("GET", "/schedule/"), client.runs("digest")]
    assert all(SECRET not in json.dumps(answer) and "ops" not in json.dumps(answer) for answer in answers)
    stored = stored_items(aws) + stored_items(aws, TABLE_NAMES["SchedulesTable"])
    assert SECRET not in json.dumps(stored) and "sch3dul3" not in json.dumps(stored)
    assert [item["headers_sealed"]["S"][:3] for item in stored if "headers_sealed" in item] == ["v1."] * 2
    # The run's values open under its task name, the schedule's: the dispatcher sends them as stored.
    entry = wiring.api_repository().get(TaskKey("digest", run["trigger_at"]))
    assert entry is not None and entry.definition.headers is not None
    assert wiring.vault().reveal("digest", entry.definition.headers).pairs == (
        ("Authorization", SECRET),
        ("X-Team", "ops"),
    )
    logged = capfd.readouterr()
    assert SECRET not in logged.out + logged.err


def test_the_same_schedule_with_the_same_headers_again_changes_nothing(client: Client, aws: Any) -> None:
    first = client.put("digest", every="1h", headers={"Authorization": SECRET})
    stored = stored_items(aws), stored_items(aws, TABLE_NAMES["SchedulesTable"])
    again = client.put("digest", every="1h", headers={"Authorization": SECRET})
    assert (first[0], again[0]) == (201, 200) and first[1] == again[1]
    assert (stored_items(aws), stored_items(aws, TABLE_NAMES["SchedulesTable"])) == stored
    # New header values replace the pending run's, as a new payload would.
    changed = client.put("digest", every="1h", headers={"Authorization": "Bearer next"})
    assert changed[0] == 200
    [run] = client.pending("digest")
    entry = wiring.api_repository().get(TaskKey("digest", run["trigger_at"]))
    assert entry is not None and entry.definition.headers is not None
    assert wiring.vault().reveal("digest", entry.definition.headers).pairs == (("Authorization", "Bearer next"),)


def test_without_a_headers_key_a_schedule_with_headers_is_refused_and_nothing_is_written(
    client: Client, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CALLME_HEADERS_KEY")
    wiring.reset()
    status, answer = client.put("digest", every="1h", headers={"Authorization": SECRET})
    assert status == 400 and "headers key" in answer["error"] and SECRET not in answer["error"]
    assert stored_items(aws) == [] and stored_items(aws, TABLE_NAMES["SchedulesTable"]) == []


def test_after_a_key_rotation_the_same_put_seals_the_schedule_s_headers_with_the_new_key(
    client: Client, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # README: PUT a schedule with headers again after a rotation, before dropping the old key.
    assert client.put("digest", every="1h", headers={"Authorization": SECRET})[0] == 201
    old = {item["headers_sealed"]["S"].split(".")[1] for item in stored_items(aws)}
    new_key = "rotated-headers-key-0123456789-abcdefghijklmn"
    monkeypatch.setenv("CALLME_HEADERS_KEY", json.dumps({"current": new_key, "previous": HEADERS_KEY}))
    wiring.reset()
    assert client.put("digest", every="1h", headers={"Authorization": SECRET})[0] == 200
    [run] = client.pending("digest")
    entry = wiring.api_repository().get(TaskKey("digest", run["trigger_at"]))
    assert entry is not None and entry.definition.headers is not None
    [schedule] = [i for i in stored_items(aws, TABLE_NAMES["SchedulesTable"]) if i["part"]["S"] == "schedule"]
    sealed = {entry.definition.headers.sealed.split(".")[1], schedule["headers_sealed"]["S"].split(".")[1]}
    assert len(sealed) == 1 and sealed != old, "both sealed with the new key"
    assert wiring.vault().reveal("digest", entry.definition.headers).pairs == (("Authorization", SECRET),)
