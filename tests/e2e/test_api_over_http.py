"""The task API over HTTP on the local stack, as a user drives it with curl."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

import boto3
import pytest

from tests.e2e.conftest import ROOT, LocalStack

pytestmark = pytest.mark.e2e

README = ROOT / "README.md"


def seed_examples() -> list[str]:
    """The curl commands of the README's section on the seed's examples, in order."""
    text = README.read_text()
    section = text.split("## The seed's examples", 1)[1].split("\n### ", 1)[0]
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip().startswith("curl "):
                commands.append(command.strip())
    return commands


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_seed_curl_examples_work_unchanged(stack: LocalStack) -> None:
    host = stack.url.removeprefix("http://")
    answers: list[Any] = []
    examples = seed_examples()
    assert len(examples) == 7, examples
    for example in examples:
        assert "localhost:6777" in example
        command = example.replace("curl ", "curl -s ", 1).replace("localhost:6777", host) + " -w '\\n%{http_code}'"
        output = subprocess.run(command, shell=True, capture_output=True, text=True, check=True).stdout
        body, _, status = output.rpartition("\n")
        answers.append((int(status), json.loads(body)))
    created, simple, far1, far2, far_both, far_one, everything = answers
    assert created[0] == 201 and created[1]["task_state"] == "pending"
    assert simple[0] == 200 and [t["task_name"] for t in simple[1]["tasks"]] == ["simpletask"]
    assert far1[0] == far2[0] == 201
    assert [t["trigger_at"] for t in far_both[1]["tasks"]] == [1858809600, 1858816800]
    assert {t["expected_http_status"] for t in far_both[1]["tasks"]} == {204}
    assert far_one[0] == 200 and far_one[1]["trigger_at"] == 1858809600
    assert sorted((t["task_name"], t["trigger_at"]) for t in everything[1]["tasks"]) == [
        ("faraway", 1858809600),
        ("faraway", 1858816800),
        ("simpletask", created[1]["trigger_at"]),
    ]


def test_pretty_output_is_indented_json(stack: LocalStack) -> None:
    stack.put("job", trigger_at="+1h", callback="http://example.com/")
    response = stack.request("GET", "/task/job?pretty")
    assert response.headers["Content-Type"] == "application/json"
    assert response.text.startswith('{\n  "tasks": [\n')


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "named"),
    [
        ("PUT", "/task/job", "{not json", 400, "not valid JSON"),
        ("PUT", "/task/job", {"trigger_at": "+6hx", "callback": "http://example.com/"}, 400, "trigger_at"),
        ("PUT", "/task/job", {"trigger_at": "+1h", "callback": "http://example.com/", "x": 1}, 400, "'x'"),
        ("PUT", "/task/bad%20name", {"trigger_at": "+1h", "callback": "http://example.com/"}, 400, "name"),
        ("PUT", "/task/job", {"trigger_at": "+1h", "callback": "file:///etc/passwd"}, 400, "http"),
        ("POST", "/task/job", None, 405, "POST"),
        ("GET", "/nowhere", None, 404, "no route"),
        ("GET", "/status/job@61", None, 400, "minute"),
    ],
)
def test_bad_requests_get_a_json_error(
    stack: LocalStack, method: str, path: str, body: Any, status: int, named: str
) -> None:
    response = stack.request(method, path, body)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert named in response.json()["error"]
    assert stack.request("GET", "/status/").json() == {"tasks": []}


def test_a_large_body_gets_413(stack: LocalStack) -> None:
    body = {"trigger_at": "+1h", "callback": "http://example.com/", "payload": "x" * 300_000}
    response = stack.request("PUT", "/task/job", body)
    assert response.status_code == 413


def test_callme_dynamodb_endpoint_points_the_stack_at_another_dynamodb(stack_factory: Any) -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        stack = stack_factory(env={"CALLME_DYNAMODB_ENDPOINT": endpoint})
        assert f"DynamoDB at {endpoint}" in "".join(stack.output)
        stack.put("elsewhere", trigger_at="1858809600", callback="http://example.com/")
        client = boto3.client(
            "dynamodb", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )
        items = client.scan(TableName="callme-tasks")["Items"]
        assert [(i["task_name"]["S"], i["trigger_at"]["N"]) for i in items] == [("elsewhere", "1858809600")]
        assert not (stack.state_dir / "dynamodb-journal.jsonl").exists()
    finally:
        server.stop()
