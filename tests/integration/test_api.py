"""The API handler in-process against moto: every route, every status, nothing written on a 4xx."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from handlers import api
from tests.conftest import api_event, load_event, stored_items

MINUTE = 60
CALLBACK = "http://example.com/that-thing/run-it"


def now_minute() -> int:
    return int(time.time()) // MINUTE * MINUTE


class Client:
    """Calls the Lambda handler the way API Gateway would, and decodes the answer."""

    def __init__(self, context: Any) -> None:
        self.context = context

    def __call__(self, method: str, target: str, body: Any = None) -> tuple[int, Any, dict[str, str]]:
        raw = body if body is None or isinstance(body, (str, bytes)) else json.dumps(body)
        response = api.lambda_handler(api_event(method, target, raw), self.context)
        headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
        for key, values in (response.get("multiValueHeaders") or {}).items():
            headers[key.lower()] = ", ".join(values)
        return response["statusCode"], json.loads(response["body"]), headers

    def put(self, name: str, **fields: Any) -> tuple[int, Any]:
        body = {"trigger_at": "+1h", "callback": CALLBACK, **fields}
        status, answer, _ = self("PUT", f"/task/{name}", body)
        return status, answer


@pytest.fixture
def client(aws: Any, lambda_context: Any) -> Client:
    return Client(lambda_context)


# -- the sample events ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ("api-put-task", 201),
        ("api-post-tasks", 200),
        ("api-get-task", 404),
        ("api-get-all-tasks", 200),
        ("api-get-status-entry", 404),
        ("api-get-status-name", 404),
        ("api-get-status-all", 200),
        ("api-get-stats", 200),
        ("api-delete-task", 404),
        ("api-reschedule", 404),
    ],
)
def test_each_sample_event_is_answered_by_the_handler(aws: Any, lambda_context: Any, event: str, expected: int) -> None:
    response = api.lambda_handler(load_event(event), lambda_context)
    assert response["statusCode"] == expected
    assert response["multiValueHeaders"]["Content-Type"] == ["application/json"]
    assert isinstance(json.loads(response["body"]), dict)


# -- creating --------------------------------------------------------------------------------------


def test_put_creates_an_entry_at_the_resolved_minute(client: Client) -> None:
    status, task = client.put("simpletask", trigger_at="+6h")
    assert status == 201
    assert task["trigger_at"] == now_minute() + 6 * 3600 or task["trigger_at"] == now_minute() + 6 * 3600 - 60
    assert task["task_state"] == "pending"
    assert (
        task["callback_method"],
        task["payload"],
        task["expected_http_status"],
        task["retry"],
        task["max_delay"],
    ) == (
        "GET",
        "",
        200,
        1,
        10,
    )
    assert task["webhook_id"].startswith("msg_")


def test_put_stores_the_entry_for_reading_back(client: Client) -> None:
    _, created = client.put("faraway", trigger_at="1858809600", expected_http_status=204)
    status, read, _ = client("GET", "/status/faraway@1858809600")
    assert status == 200
    assert read == created


def test_two_minutes_of_one_name_are_two_entries(client: Client) -> None:
    client.put("faraway", trigger_at="1858809600", expected_http_status=204)
    client.put("faraway", trigger_at="1858816800", expected_http_status=204)
    status, listed, _ = client("GET", "/task/faraway?pretty")
    assert status == 200
    assert [t["trigger_at"] for t in listed["tasks"]] == [1858809600, 1858816800]
    assert "next" not in listed


def test_re_put_of_a_pending_entry_replaces_its_definition(client: Client) -> None:
    client.put("job", trigger_at="1858809600", payload="old")
    status, replaced = client.put("job", trigger_at="1858809600", payload="new", callback_method="post")
    assert status == 200
    assert (replaced["payload"], replaced["callback_method"]) == ("new", "POST")
    _, listed, _ = client("GET", "/status/job")
    assert [t["payload"] for t in listed["tasks"]] == ["new"]


def test_re_put_of_an_entry_that_ran_is_a_conflict(client: Client, aws: Any) -> None:
    client.put("job", trigger_at="1858809600")
    aws.update_item(
        TableName="callme-tasks",
        Key={"task_name": {"S": "job"}, "trigger_at": {"N": "1858809600"}},
        UpdateExpression="SET task_state = :s, attempts = :a",
        ExpressionAttributeValues={":s": {"S": "successful"}, ":a": {"N": "1"}},
    )
    status, answer = client.put("job", trigger_at="1858809600", payload="again")
    assert status == 409
    assert "job@1858809600" in answer["error"]
    assert "successful" in answer["error"]


def test_pretty_indents_the_answer(client: Client, lambda_context: Any) -> None:
    client.put("job")
    compact = api.lambda_handler(api_event("GET", "/status/job"), lambda_context)["body"]
    pretty = api.lambda_handler(api_event("GET", "/status/job?pretty"), lambda_context)["body"]
    pretty_true = api.lambda_handler(api_event("GET", "/status/job?pretty=true"), lambda_context)["body"]
    assert "\n" not in compact
    assert pretty.startswith('{\n  "tasks": [')
    assert pretty == pretty_true
    assert json.loads(pretty) == json.loads(compact)


# -- bad input: a clear 4xx naming the problem, and nothing written --------------------------------


BAD_BODIES = [
    ("not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('"a string"', "must be a JSON object"),
    ("null", "must be a JSON object"),
    ("", "request body is missing"),
    ('{"trigger_at": "+1h"}', "callback is required"),
    ('{"callback": "http://example.com/"}', "trigger_at is required"),
    ('{"trigger_at": "+1h", "callback": "http://example.com/", "colour": "red"}', "'colour'"),
    ('{"trigger_at": "+1h", "callback": "http://example.com/", "retry": "many"}', "retry"),
    ('{"trigger_at": "+1h", "callback": "http://example.com/", "retry": -1}', "retry"),
    ('{"trigger_at": "+1h", "callback": "http://example.com/", "retry": true}', "retry"),
    ('{"trigger_at": "+1h", "callback": "http://example.com/", "expected_http_status": 99}', "expected_http_status"),
    ('{"trigger_at": "+1h", "callback": "http://example.com/", "expected_http_status": 600}', "expected_http_status"),
    ('{"trigger_at": "+1h", "callback": "http://example.com/", "max_delay": 0}', "max_delay"),
    ('{"trigger_at": "+1h", "callback": "http://example.com/", "callback_method": "TRACE"}', "callback_method"),
    ('{"trigger_at": "+1h", "callback": "http://example.com/", "payload": {"a": 1}}', "payload must be a string"),
    ('{"trigger_at": "+1h", "callback": "ftp://example.com/x"}', "http"),
    ('{"trigger_at": "+1h", "callback": "/relative/path"}', "http"),
    ('{"trigger_at": "+1h", "callback": "http://user:pw@example.com/"}', "credentials"),
    ('{"trigger_at": "+1h", "callback": "http://169.254.169.254/latest/meta-data/"}', "link-local"),
    ('{"trigger_at": "+1h", "callback": "http://10.0.0.8/"}', "not a public address"),
    ('{"trigger_at": 1858809601, "callback": "http://example.com/"}', "minute"),
    ('{"trigger_at": 60, "callback": "http://example.com/"}', "past"),
    ('{"trigger_at": "+", "callback": "http://example.com/"}', "trigger_at"),
    ('{"trigger_at": "+6", "callback": "http://example.com/"}', "trigger_at"),
    ('{"trigger_at": "6h", "callback": "http://example.com/"}', "trigger_at"),
    ('{"trigger_at": "+6z", "callback": "http://example.com/"}', "trigger_at"),
    ('{"trigger_at": "+6hx", "callback": "http://example.com/"}', "trigger_at"),
    ('{"trigger_at": "+-1m", "callback": "http://example.com/"}', "trigger_at"),
    ('{"trigger_at": "+99999d", "callback": "http://example.com/"}', "too far ahead"),
    ('{"trigger_at": "+1h", "callback": "http://example.com/", "task_name": "other"}', "task_name"),
    ('{"trigger_at": "+1h", "trigger_at": "+2h", "callback": "http://example.com/"}', "twice"),
    ('{"trigger_at": NaN, "callback": "http://example.com/"}', "not valid JSON"),
    ('{"trigger_at": "+0m", "callback": "http://example.com/", "max_delay": 1}', "can never be called"),
    ('{"trigger_at": "+1h", "callback": "http://.../"}', "invalid host"),
    ('{"trigger_at": "+1h", "callback": "http://-/"}', "invalid host"),
    ('{"trigger_at": "+1h", "callback": "http://exa%20mple.com/"}', "invalid host"),
    ('{"trigger_at": "+1h", "callback": "https://[v7.abc]/"}', "invalid host"),
]


@pytest.mark.parametrize(("body", "named"), BAD_BODIES)
def test_a_bad_body_gets_400_naming_the_problem_and_writes_nothing(
    client: Client, aws: Any, body: str, named: str
) -> None:
    status, answer, _ = client("PUT", "/task/job", body)
    assert status == 400, answer
    assert named in answer["error"]
    assert stored_items(aws) == []


@pytest.mark.parametrize("name", ["a@b", "with%20space", "x" * 129, "semi;colon", "star*", "name@1858809600"])
def test_a_bad_task_name_gets_400(client: Client, aws: Any, name: str) -> None:
    status, answer, _ = client("PUT", f"/task/{name}", {"trigger_at": "+1h", "callback": CALLBACK})
    assert status == 400
    assert "name" in answer["error"]
    assert stored_items(aws) == []


@pytest.mark.parametrize(
    ("method", "target"),
    [("PUT", "/task/a/b"), ("GET", "/task/a/b"), ("DELETE", "/task/a/b@1858809600"), ("POST", "/reschedule/a/b")],
)
def test_a_path_with_more_segments_is_no_route_404(client: Client, aws: Any, method: str, target: str) -> None:
    # As the README says of unknown routes: a name never holds a slash, so this is no route of the API.
    status, answer, _ = client(method, target, {"trigger_at": "+1h", "callback": CALLBACK} if method == "PUT" else None)
    assert status == 404
    assert answer["error"] == f"no route {method} {target}; see the API reference in the README"
    assert stored_items(aws) == []


@pytest.mark.parametrize("name", [".", ".."])
@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("PUT", "/task/{}"),
        ("GET", "/task/{}"),
        ("GET", "/status/{}"),
        ("DELETE", "/task/{}"),
        ("POST", "/reschedule/{}"),
        ("GET", "/status/{}@1858809600"),
        ("GET", "/status/?start_from={}@1858809600"),
    ],
)
def test_dot_segment_names_get_400_on_every_route(
    client: Client, aws: Any, name: str, method: str, target: str
) -> None:
    # Clients resolve them away (curl sends GET /task/. as GET /task/), so none may exist.
    body = {"trigger_at": "+1h", "callback": CALLBACK} if method == "PUT" else None
    status, answer, _ = client(method, target.format(name), body)
    assert status == 400
    assert f"{name!r} is invalid" in answer["error"]
    assert "other than '.' and '..'" in answer["error"]
    assert stored_items(aws) == []


def test_a_body_over_the_limit_gets_413(client: Client, aws: Any) -> None:
    body = json.dumps({"trigger_at": "+1h", "callback": CALLBACK, "payload": "x" * (200 * 1024)})
    status, answer, _ = client("PUT", "/task/job", body)
    assert status == 413
    assert "limit" in answer["error"]
    assert stored_items(aws) == []


def test_a_payload_over_its_limit_gets_413(client: Client, aws: Any) -> None:
    status, answer = client.put("job", payload="x" * (64 * 1024 + 1))
    assert status == 413
    assert "payload" in answer["error"]


def test_a_binary_body_that_is_not_utf8_gets_400(client: Client, aws: Any) -> None:
    status, answer, _ = client("PUT", "/task/job", b"\xff\xfe\x00garbage")
    assert status == 400
    assert "UTF-8" in answer["error"]


@pytest.mark.parametrize(
    ("method", "target", "allowed"),
    [
        ("POST", "/task/job", "DELETE, GET, PUT"),
        ("PATCH", "/task/job@1858809600", "DELETE, GET, PUT"),
        ("PUT", "/status/job", "GET"),
        ("DELETE", "/status/", "GET"),
        ("GET", "/reschedule/job", "POST"),
        ("POST", "/task/", "GET"),
    ],
)
def test_a_wrong_method_gets_405_with_allow(client: Client, method: str, target: str, allowed: str) -> None:
    status, answer, headers = client(method, target)
    assert status == 405
    assert method in answer["error"]
    assert headers["allow"] == allowed


@pytest.mark.parametrize("target", ["/", "/tasks/job", "/task-list", "/status/job/extra/more"])
def test_an_unknown_route_gets_a_4xx_json_error(client: Client, target: str) -> None:
    status, answer, _ = client("GET", target)
    assert status in (400, 404)
    assert answer["error"]


@pytest.mark.parametrize(
    ("target", "named"),
    [
        ("/status/job?colour=red", "'colour'"),
        ("/status/job?limit=0", "limit"),
        ("/status/job?limit=100000", "limit"),
        ("/status/job?limit=ten", "limit"),
        ("/status/job?start_from=other@1858809600", "start_from"),
        ("/status/job?start_from=job", "start_from"),
        ("/status/job?future_only=maybe", "future_only"),
        ("/status/job@123", "minute"),
        ("/status/job@abc", "trigger_at"),
        ("/status/?start_from=bad name@60", "name"),
    ],
)
def test_bad_query_strings_get_400(client: Client, target: str, named: str) -> None:
    client.put("job")
    status, answer, _ = client("GET", target)
    assert status == 400
    assert named in answer["error"]


@pytest.mark.parametrize(
    ("target", "named"),
    [
        ("/status/job@1858809600?limit=abc", "limit must be an integer"),
        ("/task/job@1858809600?limit=0", "limit must be between"),
        ("/task/job@1858809600?future_only=maybe", "future_only"),
        ("/task/job@1858809600?start_from=other@1858809600", "start_from"),
        ("/task/job@1858809600?colour=red", "'colour'"),
    ],
)
def test_listing_parameters_on_the_entry_route_are_checked_as_on_lists(client: Client, target: str, named: str) -> None:
    # One path, /task/{ident}, serves an entry and a list; its parameters follow one rule.
    client.put("job", trigger_at="1858809600")
    status, answer, _ = client("GET", target)
    assert status == 400
    assert named in answer["error"]
    assert client("GET", "/task/job@1858809600?limit=5&future_only&start_from=job@1858809540")[0] == 200


@pytest.mark.parametrize(
    ("method", "target", "named"),
    [
        ("GET", "/status/job?limit=1&limit=abc", "'limit' (2 times)"),
        ("GET", "/task/job@1858809600?limit=1&limit=2", "'limit' (2 times)"),
        ("GET", "/status/?start_from=a@60&start_from=b@60", "'start_from' (2 times)"),
        ("GET", "/status/job?pretty&pretty=false", "'pretty' (2 times)"),
        ("PUT", "/task/job?pretty&pretty", "'pretty' (2 times)"),
        ("DELETE", "/task/job@1858809600?pretty=1&pretty=0", "'pretty' (2 times)"),
        ("POST", "/reschedule/job@1858809600?all=true&all=false", "'all' (2 times)"),
    ],
)
def test_a_repeated_query_parameter_gets_400_naming_it(
    client: Client, aws: Any, method: str, target: str, named: str
) -> None:
    # As a duplicate body field is refused, rather than silently taking the last value.
    client.put("job", trigger_at="1858809600")
    before = stored_items(aws)
    body = {"trigger_at": "1858809600", "callback": CALLBACK} if method == "PUT" else None
    status, answer, _ = client(method, target, body)
    assert status == 400
    assert answer["error"] == f"query parameter {named} repeated; give each once"
    assert stored_items(aws) == before


# -- reading ---------------------------------------------------------------------------------------


def test_reading_a_missing_entry_or_name_is_404(client: Client) -> None:
    assert client("GET", "/status/nobody@1858809600")[0] == 404
    status, answer, _ = client("GET", "/status/nobody")
    assert status == 404
    assert "nobody" in answer["error"]


def test_task_routes_read_like_status_routes(client: Client) -> None:
    client.put("job", trigger_at="1858809600")
    for suffix in ("job", "job@1858809600", ""):
        assert client("GET", f"/task/{suffix}") == client("GET", f"/status/{suffix}")


def test_future_only_hides_past_entries(client: Client, aws: Any) -> None:
    client.put("job", trigger_at="+2m")
    past = now_minute() - 600
    aws.put_item(
        TableName="callme-tasks",
        Item={
            **stored_items(aws)[0],
            "trigger_at": {"N": str(past)},
            "task_state": {"S": "successful"},
        },
    )
    _, everything, _ = client("GET", "/status/job")
    _, future, _ = client("GET", "/status/job?future_only")
    _, all_future, _ = client("GET", "/status/?future_only=true")
    assert len(everything["tasks"]) == 2
    assert [t["trigger_at"] for t in future["tasks"]] == [now_minute() + 120]
    assert [t["trigger_at"] for t in all_future["tasks"]] == [now_minute() + 120]


def _pages(client: Client, base: str, limit: int) -> list[tuple[str, int]]:
    seen: list[tuple[str, int]] = []
    start = ""
    for _ in range(100):
        sep = "&" if "?" in base else "?"
        status, page, _ = client("GET", f"{base}{sep}limit={limit}{start}")
        assert status == 200
        assert len(page["tasks"]) <= limit
        seen.extend((t["task_name"], t["trigger_at"]) for t in page["tasks"])
        if "next" not in page:
            return seen
        assert page["tasks"], "a next token must not lead to an empty page"
        assert page["next"] == f"{page['tasks'][-1]['task_name']}@{page['tasks'][-1]['trigger_at']}"
        start = f"&start_from={page['next']}"
    raise AssertionError("pagination did not end")


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 50])
def test_pagination_returns_every_entry_exactly_once(client: Client, limit: int) -> None:
    expected = set()
    for i in range(7):
        client.put("alpha", trigger_at=str(1858809600 + i * 60))
        expected.add(("alpha", 1858809600 + i * 60))
    for name in ("beta", "gamma", "delta"):
        client.put(name, trigger_at="1858809600")
        expected.add((name, 1858809600))

    by_name = _pages(client, "/status/alpha", limit)
    assert by_name == sorted(e for e in expected if e[0] == "alpha")
    everything = _pages(client, "/status/", limit)
    assert len(everything) == len(expected)
    assert set(everything) == expected


# -- cancelling ------------------------------------------------------------------------------------


def test_delete_of_an_entry_cancels_it(client: Client) -> None:
    client.put("job", trigger_at="1858809600")
    status, task, _ = client("DELETE", "/task/job@1858809600")
    assert status == 200
    assert task["task_state"] == "cancelled"
    assert task["expires_at"] is not None
    assert client("GET", "/status/job@1858809600")[1]["task_state"] == "cancelled"
    status, answer, _ = client("DELETE", "/task/job@1858809600")
    assert status == 409
    assert "cancelled" in answer["error"]


def test_delete_of_a_name_cancels_its_pending_entries(client: Client) -> None:
    client.put("job", trigger_at="1858809600")
    client.put("job", trigger_at="1858816800")
    status, answer, _ = client("DELETE", "/task/job")
    assert status == 200
    assert sorted(t["trigger_at"] for t in answer["tasks"]) == [1858809600, 1858816800]
    assert {t["task_state"] for t in client("GET", "/status/job")[1]["tasks"]} == {"cancelled"}


def test_delete_of_a_missing_entry_is_404(client: Client) -> None:
    assert client("DELETE", "/task/nobody@1858809600")[0] == 404
    assert client("DELETE", "/task/nobody")[0] == 404


def test_a_cancelled_entry_can_be_registered_again(client: Client) -> None:
    client.put("job", trigger_at="1858809600")
    client("DELETE", "/task/job@1858809600")
    status, task = client.put("job", trigger_at="1858809600")
    assert status == 200
    assert task["task_state"] == "pending"


# -- rescheduling ----------------------------------------------------------------------------------


def _finish(aws: Any, name: str, at: int, state: str) -> None:
    aws.update_item(
        TableName="callme-tasks",
        Key={"task_name": {"S": name}, "trigger_at": {"N": str(at)}},
        UpdateExpression="SET task_state = :s, attempts = :a REMOVE due_shard, due_minute",
        ExpressionAttributeValues={":s": {"S": state}, ":a": {"N": "2"}},
    )


def test_reschedule_of_a_failed_entry_creates_a_pending_one_next_minute(client: Client, aws: Any) -> None:
    client.put("job", trigger_at="1858809600", payload="p")
    _finish(aws, "job", 1858809600, "failed")
    status, answer, _ = client("POST", "/reschedule/job@1858809600")
    assert status == 201
    [new] = answer["tasks"]
    assert new["trigger_at"] in (now_minute() + 60, now_minute() + 120)
    assert (new["task_state"], new["payload"], new["rescheduled_from"]) == ("pending", "p", "job@1858809600")
    old = client("GET", "/status/job@1858809600")[1]
    assert old["rescheduled_to"] == f"job@{new['trigger_at']}"


def test_reschedule_takes_a_trigger_at_in_the_body(client: Client, aws: Any) -> None:
    client.put("job", trigger_at="1858809600")
    _finish(aws, "job", 1858809600, "skipped")
    status, answer, _ = client("POST", "/reschedule/job", {"trigger_at": "1858816800"})
    assert status == 201
    assert [t["trigger_at"] for t in answer["tasks"]] == [1858816800]


def test_reschedule_leaves_successful_entries_unless_all_is_true(client: Client, aws: Any) -> None:
    client.put("job", trigger_at="1858809600")
    _finish(aws, "job", 1858809600, "successful")
    status, answer, _ = client("POST", "/reschedule/job@1858809600")
    assert status == 409
    assert "all=true" in answer["error"]
    assert client("POST", "/reschedule/job")[:2] == (200, {"tasks": []})
    status, answer, _ = client("POST", "/reschedule/job?all=true", {"trigger_at": "+5m"})
    assert status == 201
    assert [t["trigger_at"] for t in answer["tasks"]] == [now_minute() + 300]


def test_reschedule_of_a_pending_entry_is_a_conflict(client: Client) -> None:
    client.put("job", trigger_at="1858809600")
    status, answer, _ = client("POST", "/reschedule/job@1858809600?all=true")
    assert status == 409
    assert "pending" in answer["error"]


def test_reschedule_by_name_merges_identical_failed_entries(client: Client, aws: Any) -> None:
    for at in (1858809600, 1858816800):
        client.put("job", trigger_at=str(at))
        _finish(aws, "job", at, "failed")
    status, answer, _ = client("POST", "/reschedule/job")
    assert status == 201
    assert len(answer["tasks"]) == 1
    again = client("POST", "/reschedule/job")
    assert again[:2] == (200, {"tasks": []}), "entries already rescheduled are not rescheduled twice"


def test_reschedule_by_name_refuses_to_merge_different_definitions(client: Client, aws: Any) -> None:
    client.put("job", trigger_at="1858809600", payload="a")
    client.put("job", trigger_at="1858816800", payload="b")
    for at in (1858809600, 1858816800):
        _finish(aws, "job", at, "failed")
    status, answer, _ = client("POST", "/reschedule/job")
    assert status == 409
    assert "one at a time" in answer["error"]


@pytest.mark.parametrize(
    ("target", "body", "named"),
    [
        ("/reschedule/job@1858809600", {"trigger_at": "+6hx"}, "trigger_at"),
        ("/reschedule/job@1858809600", {"when": "+1m"}, "'when'"),
        ("/reschedule/job@1858809600", "[]", "JSON object"),
        ("/reschedule/job@1858809600?all=perhaps", None, "all"),
        ("/reschedule/job@1858809600?force=1", None, "'force'"),
    ],
)
def test_bad_reschedule_requests_get_400(client: Client, aws: Any, target: str, body: Any, named: str) -> None:
    client.put("job", trigger_at="1858809600")
    _finish(aws, "job", 1858809600, "failed")
    before = stored_items(aws)
    status, answer, _ = client("POST", target, body)
    assert status == 400
    assert named in answer["error"]
    assert stored_items(aws) == before


def test_a_reschedule_that_could_never_be_called_gets_400(client: Client, aws: Any) -> None:
    client.put("job", trigger_at="1858809600", max_delay=1)
    _finish(aws, "job", 1858809600, "failed")
    before = stored_items(aws)
    status, answer, _ = client("POST", "/reschedule/job@1858809600", {"trigger_at": "+0m"})
    assert status == 400
    assert "with max_delay 1 can never be called" in answer["error"]
    assert stored_items(aws) == before
    assert client("POST", "/reschedule/job@1858809600", {"trigger_at": "+1m"})[0] == 201


def test_reschedule_of_a_missing_entry_is_404(client: Client) -> None:
    assert client("POST", "/reschedule/nobody@1858809600")[0] == 404
    assert client("POST", "/reschedule/nobody")[0] == 404


# -- retention -------------------------------------------------------------------------------------


def test_finished_entries_past_retention_are_hidden_until_deleted(client: Client, aws: Any) -> None:
    client.put("old", trigger_at="1858809600")
    client.put("old", trigger_at="1858816800")
    client("DELETE", "/task/old@1858809600")
    aws.update_item(
        TableName="callme-tasks",
        Key={"task_name": {"S": "old"}, "trigger_at": {"N": "1858809600"}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )
    assert len(stored_items(aws)) == 2, "DynamoDB has not deleted it yet"
    assert client("GET", "/status/old@1858809600")[0] == 404
    assert [t["trigger_at"] for t in client("GET", "/status/old")[1]["tasks"]] == [1858816800]
    assert [t["trigger_at"] for t in client("GET", "/status/")[1]["tasks"]] == [1858816800]


def test_pending_entries_never_expire(client: Client) -> None:
    _, task = client.put("forever", trigger_at="1858809600")
    assert task["expires_at"] is None
    _, cancelled, _ = client("DELETE", "/task/forever@1858809600")
    assert cancelled["expires_at"] >= int(time.time()) + 30 * 86400 - 5


# -- the one mapping of domain errors to HTTP ------------------------------------------------------


def test_every_domain_error_has_its_status_in_the_api_s_one_mapping() -> None:
    import inspect

    from callme import errors

    expected = {
        errors.InvalidRequest: (400, {}),
        errors.TaskNotFound: (404, {}),
        errors.ScheduleNotFound: (404, {}),
        errors.Conflict: (409, {}),
        errors.PayloadTooLarge: (413, {}),
        errors.ServiceUnavailable: (503, {"Retry-After": "1"}),
    }
    kinds = {c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.CallmeError)}
    assert kinds - {errors.CallmeError} == set(expected), "a new domain error needs its status here and in api.py"
    for kind, (status, headers) in expected.items():
        assert not hasattr(kind, "status"), "statuses belong to the API, not the domain"
        response = api.error_response(kind("what went wrong"))
        assert (response.status_code, json.loads(response.body)) == (status, {"error": "what went wrong"})
        assert {k: v for k, v in (response.headers or {}).items() if k == "Retry-After"} == headers
