"""The published OpenAPI document, and a schema-driven fuzzer (schemathesis) against the local stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import LocalStack

pytestmark = pytest.mark.e2e
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_the_api_publishes_its_openapi_document(stack: LocalStack) -> None:
    response = stack.request("GET", "/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert {"/task/{ident}", "/status/{ident}", "/status/", "/reschedule/{ident}"} <= set(document["paths"])


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_schema(stack: LocalStack, tmp_path: Path) -> None:
    schemathesis = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{stack.url}/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            "40",
            "--phases",
            "examples,coverage,fuzzing",
            "--seed",
            "20261127",
            "--request-timeout",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
