"""The dispatcher's fan-out in AWS (callme.ports.Fanout): one asynchronous invocation of the
dispatcher function per busy shard, each carrying its shard, so that shards run in parallel."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import boto3


class LambdaFanout:
    """Invokes ``function_name`` once per shard handed over, with ``event`` plus the shard."""

    def __init__(self, client: Any, function_name: str, event: dict[str, Any]) -> None:
        self.client = client
        self.function_name = function_name
        self.event = event

    def hand_over(self, shards: list[int]) -> None:
        for shard in shards:
            self.client.invoke(
                FunctionName=self.function_name,
                InvocationType="Event",
                Payload=json.dumps({**self.event, "shard": shard}).encode(),
            )


@cache
def lambda_client() -> Any:
    return boto3.client("lambda")
