"""The dispatcher's fan-out in AWS (callme.ports.Fanout): one asynchronous invocation of the
dispatcher function per run a minute needs, each carrying its shard and slices, so that they run in
parallel; the invocations are made INVOKERS at a time, so that a few hundred start within a second."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

import boto3

from callme.ports import RunShare

INVOKERS = 10  # Invoke calls at once: botocore's default connection pool


class LambdaFanout:
    """Invokes ``function_name`` once per share handed over, with ``event`` plus the share."""

    def __init__(self, client: Any, function_name: str, event: dict[str, Any]) -> None:
        self.client = client
        self.function_name = function_name
        self.event = event

    def hand_over(self, shares: list[RunShare]) -> None:
        """Every invocation is made; the first that failed is then raised."""
        with ThreadPoolExecutor(max_workers=INVOKERS, thread_name_prefix="fanout") as invokers:
            made = [invokers.submit(self._invoke, share) for share in shares]
        for invocation in made:
            invocation.result()

    def _invoke(self, share: RunShare) -> None:
        payload = {**self.event, "shard": share.shard, "slices": list(share.slices)}
        self.client.invoke(
            FunctionName=self.function_name, InvocationType="Event", Payload=json.dumps(payload).encode()
        )


@cache
def lambda_client() -> Any:
    return boto3.client("lambda")
