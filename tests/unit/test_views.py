"""Answers' text and size: what an entry adds to a list, carried in Lambda's proxy response."""

from __future__ import annotations

import json
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from callme.task import Attempt, Task, TaskKey
from callme.views import AnswerFormat, AnswerRoom, carried_size, tasks_view
from tests.unit.conftest import CURRENT_MINUTE, make_task

# Any text a stored entry can hold: valid Unicode (an unpaired surrogate is refused at PUT).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=300)
NAMES = st.text("abcXYZ019._-", min_size=1, max_size=12)


@st.composite
def entries(draw: st.DrawFn) -> list[Task]:
    tasks = []
    for i in range(draw(st.integers(1, 6))):
        task = make_task(name=draw(NAMES), trigger_at=CURRENT_MINUTE + 60 * i, payload=draw(TEXT))
        history = tuple(Attempt(at=1.5, duration_ms=3, error=draw(TEXT)) for _ in range(draw(st.integers(0, 2))))
        tasks.append(replace(task, history=history))
    return tasks


def test_carried_size_is_what_the_runtime_writes_for_the_body() -> None:
    for text in ("plain", '"quoted"', "back\\slash", "\x01\n\t", "é€😀", "\u2028"):
        assert len(json.dumps({"body": text})) == len(json.dumps({"body": ""})) + carried_size(text)
    assert carried_size("\x01") == 6 and carried_size("😀") == 12


@settings(max_examples=200)
@given(tasks=entries(), pretty=st.booleans(), more=st.booleans())
def test_an_answer_is_its_empty_self_plus_the_listed_size_of_each_entry(
    tasks: list[Task], pretty: bool, more: bool
) -> None:
    answer_format = AnswerFormat(pretty)
    next_key = TaskKey("zz", CURRENT_MINUTE) if more else None
    whole = carried_size(answer_format.text(tasks_view(tasks, next_key)))
    empty = carried_size(answer_format.text(tasks_view([], next_key)))
    listed = sum(answer_format.listed_size(t) for t in tasks)
    # Exactly, but for the first entry's shorter separator (2 or 1 bytes less) and, indented, the
    # line that closes a non-empty list (4 bytes: an escaped newline and two spaces).
    assert whole == empty + listed - (1 - 4 if pretty else 2)


@given(tasks=entries(), pretty=st.booleans(), budget=st.integers(0, 4000))
def test_a_room_takes_entries_while_they_fit_and_always_the_first(tasks: list[Task], pretty: bool, budget: int) -> None:
    room = AnswerRoom(AnswerFormat(pretty), budget)
    taken = []
    for task in tasks:
        if not room.take(task):
            break
        taken.append(task)
    sizes = [AnswerFormat(pretty).listed_size(t) for t in tasks]
    assert len(taken) >= 1
    assert sum(sizes[: len(taken)]) <= budget or len(taken) == 1
    if len(taken) < len(tasks):
        assert sum(sizes[: len(taken) + 1]) > budget
