"""What clients see of an entry: the JSON shape of the API's answers."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .task import Attempt, Task


def task_view(task: Task) -> dict[str, Any]:
    return {
        "task_name": task.key.name,
        "trigger_at": task.key.trigger_at,
        **asdict(task.definition),
        "task_state": task.state.value,
        "attempts": task.attempts,
        "response_status": task.response_status,
        "response_body": task.response_body,
        "executed_at": _ms(task.executed_at),
        "next_attempt_at": _ms(task.next_attempt_at),
        "history": [attempt_view(a) for a in task.history],
        "webhook_id": task.webhook_id,
        "created_at": _ms(task.created_at),
        "updated_at": _ms(task.updated_at),
        "rescheduled_from": task.rescheduled_from,
        "rescheduled_to": task.rescheduled_to,
        "expires_at": task.expires_at,
    }


def attempt_view(attempt: Attempt) -> dict[str, Any]:
    return {
        "at": _ms(attempt.at),
        "status": attempt.status,
        "error": attempt.error,
        "duration_ms": attempt.duration_ms,
    }


def tasks_view(tasks: list[Task], next_key: object = None) -> dict[str, Any]:
    body: dict[str, Any] = {"tasks": [task_view(t) for t in tasks]}
    if next_key is not None:
        body["next"] = str(next_key)
    return body


def _ms(instant: float | None) -> float | None:
    """Unix seconds to the millisecond, as stored."""
    return None if instant is None else round(instant, 3)
