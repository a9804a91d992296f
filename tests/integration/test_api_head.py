"""HEAD through the api handler: API Gateway passes it to the Lambda proxy, which answers it as GET."""

from __future__ import annotations

from typing import Any

import pytest

from handlers import api
from tests.conftest import api_event


@pytest.mark.parametrize("target", ["/task/", "/status/", "/task/nobody", "/openapi.json", "/task/bad%20name"])
def test_head_is_answered_as_get(aws: Any, lambda_context: Any, target: str) -> None:
    get = api.lambda_handler(api_event("GET", target), lambda_context)
    head = api.lambda_handler(api_event("HEAD", target), lambda_context)
    assert head["statusCode"] != 405
    assert head == get  # the body too: API Gateway drops it, and its length is the Content-Length
