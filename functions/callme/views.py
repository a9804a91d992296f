"""What clients see of an entry: the JSON shape of the API's answers, their text and their size.

Every answer must stay under Lambda's response limit: 6,291,556 bytes for the whole proxy response
(status, headers and the body). Over it, Lambda fails the invocation and API Gateway answers 502.
The body travels inside that response as a JSON string, escaped once more by the runtime's
``json.dumps``, which writes every non-ASCII or control character as ``\\uXXXX``: a payload byte can
take up to 7 bytes there (a control character: ``\\u0001`` in the body, ``\\\\u0001`` around it).
So sizes are counted as carried (``carried_size``), and a list stops when its next entry would take
the answer past ``ANSWER_BUDGET``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from .headers import masked
from .hooks import HookCall
from .schedule import Scheduled
from .task import Attempt, Task, TaskDefinition

LAMBDA_RESPONSE_LIMIT = 6_291_556
# What the entries of one answer may take, carried. The rest of the limit (291,556 bytes) is far
# more than the envelope (status, headers, its own keys) and the answer's other keys ever need.
ANSWER_BUDGET = 6_000_000
_LIST_DEPTH_INDENT = 4  # entries sit at depth 2 of every list answer: {"tasks": [entry, ...]}


def task_view(task: Task) -> dict[str, Any]:
    return {
        "task_name": task.key.name,
        "trigger_at": task.key.trigger_at,
        **definition_view(task.definition),
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
        **({"schedule": task.schedule} if task.schedule is not None else {}),
        "on_failure_call": hook_call_view(task.on_failure_call),
    }


def definition_view(definition: TaskDefinition) -> dict[str, Any]:
    """The definition's fields, header values masked: no answer, log or event shows them."""
    view = {f.name: getattr(definition, f.name) for f in fields(definition)}
    view["headers"] = masked(definition.headers)
    return view


def hook_call_view(call: HookCall | None) -> dict[str, Any] | None:
    if call is None:
        return None
    return {
        "state": call.state.value,
        "attempts": call.attempts,
        "status": call.status,
        "error": call.error,
        "at": _ms(call.at),
        "next_at": _ms(call.next_at),
        "webhook_id": call.webhook_id,
    }


def failure_notice(task: Task) -> dict[str, Any]:
    """The body of the failure hook's call: a Standard Webhooks payload describing the entry as an
    answer shows it, without its payload and the hook's own record. It is the same on every call of
    the hook, so a receiver may deduplicate on ``webhook-id`` or compare bodies."""
    assert task.on_failure_call is not None
    entry = task_view(task)
    for private_or_changing in ("payload", "on_failure_call", "updated_at"):
        entry.pop(private_or_changing)
    since = datetime.fromtimestamp(task.on_failure_call.since, tz=UTC)
    return {
        "type": f"task.{task.state.value}",
        "timestamp": since.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "data": entry,
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


def schedule_view(scheduled: Scheduled) -> dict[str, Any]:
    """A schedule as ``GET /schedule/<name>`` shows it: its fields, and ``next_runs``."""
    schedule = scheduled.schedule
    recurrence = schedule.recurrence
    return {
        "task_name": schedule.name,
        **definition_view(schedule.definition),
        "cron": recurrence.cron,
        "every": recurrence.every,
        "timezone": recurrence.timezone,
        "start_at": recurrence.start_at,
        "end_at": recurrence.end_at,
        "paused": schedule.paused,
        "next_runs": scheduled.next_runs(),
        "created_at": _ms(schedule.created_at),
        "updated_at": _ms(schedule.updated_at),
    }


def schedules_view(schedules: list[Scheduled], next_name: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"schedules": [schedule_view(s) for s in schedules]}
    if next_name is not None:
        body["next"] = next_name
    return body


@dataclass(frozen=True)
class ItemResult:
    """One item of ``POST /tasks`` as answered: its status, and the entry written or why not."""

    status: int
    task: Task | None = None
    error: str | None = None


def results_view(
    items: Sequence[ItemResult], answer_format: AnswerFormat, budget: int = ANSWER_BUDGET
) -> dict[str, Any]:
    """``{"results": [...]}``: each item in order, ``{"status", "task"}`` or ``{"status", "error"}``.

    Entries are shown whole, from the first item on, while the answer stays within ``budget`` (its
    size carried, as for lists); past it, an entry is shown without its payload and its result says
    so (``trimmed``). An entry without payload and an error are small (errors are cut), so an answer
    of 100 of them fits in any case.
    """
    whole = [_result(item, whole=True) for item in items]
    short = [_result(item, whole=False) for item in items]
    extras = [answer_format.element_size(f) - answer_format.element_size(t) for f, t in zip(whole, short, strict=True)]
    # An entry with a tiny payload is smaller whole than with the note saying it was left out: it is
    # always shown whole, and counted so before the others are weighed.
    used = sum(answer_format.element_size(result) for result in short) + sum(e for e in extras if e <= 0)
    chosen = []
    for full, trimmed, extra in zip(whole, short, extras, strict=True):
        if extra <= 0:
            chosen.append(full)
        elif used + extra <= budget:
            used += extra
            chosen.append(full)
        else:
            chosen.append(trimmed)
    return {"results": chosen}


def _result(item: ItemResult, whole: bool) -> dict[str, Any]:
    if item.task is None:
        return {"status": item.status, "error": item.error}
    view = task_view(item.task)
    if whole or not view["payload"]:
        return {"status": item.status, "task": view}
    del view["payload"]
    size = len(item.task.definition.payload.encode("utf-8"))
    trimmed = (
        f"payload ({size} bytes) left out to keep this answer under Lambda's response limit; "
        f"GET /task/{item.task.key} shows it"
    )
    return {"status": item.status, "task": view, "trimmed": trimmed}


def _ms(instant: float | None) -> float | None:
    """Unix seconds to the millisecond, as stored."""
    return None if instant is None else round(instant, 3)


def carried_size(text: str) -> int:
    """Bytes ``text`` takes as the body string of Lambda's proxy response (JSON-escaped, ASCII)."""
    return len(json.dumps(text)) - 2


@dataclass(frozen=True)
class AnswerFormat:
    """How an answer is written: compact, or indented (``?pretty``)."""

    pretty: bool = False

    def text(self, body: Any) -> str:
        """The answer's JSON text (UTF-8 as sent; the Lambda runtime escapes it once more)."""
        if self.pretty:
            return json.dumps(body, indent=2, ensure_ascii=False) + "\n"
        return json.dumps(body, ensure_ascii=False)

    def listed_size(self, task: Task) -> int:
        """What ``task`` adds to a list answer, carried, its separator included (``element_size``)."""
        return self.element_size(task_view(task))

    def element_size(self, element: Any) -> int:
        """What ``element`` adds to the list of an answer such as ``{"tasks": [...]}``, carried, its
        separator included.

        JSON escapes each character on its own, so the carried size of a text is the sum of its
        parts'. An element listed at depth 2 is its own text with every line indented 4 more spaces,
        after a separator: ``", "`` compact, ``",\\n    "`` indented (7 bytes carried, the newline
        escaped). The first element's is shorter (by 2 or 1 bytes); an indented list that is not empty
        closes on a line of its own (4 bytes), which the room left beside ANSWER_BUDGET holds.
        """
        text = self.text(element).rstrip("\n")
        if self.pretty:
            return carried_size(text) + _LIST_DEPTH_INDENT * text.count("\n") + 7
        return carried_size(text) + 2


class AnswerRoom:
    """Room for entries in one answer: ``take`` says whether the next entry still fits.

    The first entry always fits (every single entry does: see the README's Limits), so a page is
    never empty while entries remain, and pagination always moves on.
    """

    def __init__(self, answer_format: AnswerFormat, budget: int = ANSWER_BUDGET) -> None:
        self.answer_format = answer_format
        self.budget = budget
        self.used = 0

    def take(self, task: Task) -> bool:
        return self.take_view(task_view(task))

    def take_view(self, view: Mapping[str, Any]) -> bool:
        size = self.answer_format.element_size(view)
        if self.used and self.used + size > self.budget:
            return False
        self.used += size
        return True
