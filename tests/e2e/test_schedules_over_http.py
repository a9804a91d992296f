"""A recurring schedule end to end on the local stack: every run is called at its minute as its own
entry, and DELETE /schedule/<name> stops it. The dispatcher is ticked at chosen instants (POST
/_local/tick) instead of waiting for real minutes."""

from __future__ import annotations

import pytest
from standardwebhooks import Webhook

from tests.e2e.conftest import LocalStack, Sink

pytestmark = pytest.mark.e2e


def test_every_minute_makes_three_calls_in_three_minutes_each_its_own_entry_and_delete_stops_it(
    stack: LocalStack, sink: Sink
) -> None:
    body = {
        "every": "1m",
        "callback": sink.on("/beat", 200),
        "callback_method": "POST",
        "payload": '{"beat": 1}',
        "headers": {"Authorization": "Bearer beat-t0ken"},
    }
    response = stack.request("PUT", "/schedule/heartbeat", body)
    assert response.status_code == 201, response.text
    first = response.json()["next_runs"][0]
    minutes = [first + 60 * k for k in range(3)]
    for minute in minutes:
        report = stack.tick(minute + 2)
        assert report["succeeded"] == 1, report
    calls = sink.calls("/beat")
    assert [call.headers["callme-entry"] for call in calls] == [f"heartbeat@{minute}" for minute in minutes]
    entries = [stack.entry(f"heartbeat@{minute}") for minute in minutes]
    assert [entry["task_state"] for entry in entries] == ["successful"] * 3
    assert [entry["schedule"] for entry in entries] == ["heartbeat"] * 3
    assert [call.headers["webhook-id"] for call in calls] == [entry["webhook_id"] for entry in entries]
    assert len({entry["webhook_id"] for entry in entries}) == 3
    # Every run sends the schedule's headers, the runs the dispatcher made after the first included.
    assert [call.headers["authorization"] for call in calls] == ["Bearer beat-t0ken"] * 3
    assert [entry["headers"] for entry in entries] == [{"Authorization": "***"}] * 3
    for call in calls:
        Webhook(stack.secret).verify(call.body, call.headers)

    deleted = stack.request("DELETE", "/schedule/heartbeat")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["cancelled"] == f"heartbeat@{minutes[-1] + 60}"
    for later in (minutes[-1] + 60, minutes[-1] + 120):
        stack.tick(later + 2)
    assert len(sink.calls("/beat")) == 3
    assert stack.request("GET", "/schedule/heartbeat").status_code == 404
    runs = stack.request("GET", "/status/heartbeat").json()["tasks"]
    assert [run["task_state"] for run in runs] == ["successful"] * 3 + ["cancelled"]
