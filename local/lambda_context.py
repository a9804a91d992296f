"""A Lambda context object for handlers invoked locally."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field


@dataclass
class LocalContext:
    function_name: str
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = ""
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    deadline: float = 0.0
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""

    @classmethod
    def for_function(cls, name: str, timeout_seconds: float) -> LocalContext:
        return cls(
            function_name=name,
            invoked_function_arn=f"arn:aws:lambda:us-east-1:000000000000:function:{name}",
            deadline=time.time() + timeout_seconds,
        )

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.time()) * 1000))
