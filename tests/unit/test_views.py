"""Answers' text and size: what an entry adds to a list, carried in Lambda's proxy response."""

from __future__ import annotations

import json
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from callme.task import Attempt, Task, TaskKey
from callme.views import AnswerFormat, AnswerRoom, ItemResult, carried_size, results_view, task_view, tasks_view
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


# -- the answer of POST /tasks ------------------------------------------------------------------------


@st.composite
def item_results(draw: st.DrawFn) -> list[ItemResult]:
    results = []
    for i, task in enumerate(draw(entries())):
        if draw(st.booleans()):
            results.append(ItemResult(draw(st.sampled_from([200, 201])), replace(task, key=TaskKey(f"t{i}", 60))))
        else:
            results.append(ItemResult(draw(st.sampled_from([400, 409, 413, 503])), error=draw(TEXT)))
    return results


@given(items=item_results(), pretty=st.booleans())
def test_results_are_whole_when_they_fit(items: list[ItemResult], pretty: bool) -> None:
    answer = results_view(items, AnswerFormat(pretty))
    assert len(answer["results"]) == len(items)
    for item, result in zip(items, answer["results"], strict=True):
        assert result["status"] == item.status
        if item.task is None:
            assert result == {"status": item.status, "error": item.error}
        else:
            assert result == {"status": item.status, "task": task_view(item.task)}


@settings(max_examples=200)
@given(items=item_results(), pretty=st.booleans(), budget=st.integers(0, 20_000))
def test_results_past_the_budget_leave_out_payloads_and_say_so(
    items: list[ItemResult], pretty: bool, budget: int
) -> None:
    answer_format = AnswerFormat(pretty)
    answer = results_view(items, answer_format, budget)
    trimmed = [result for result in answer["results"] if "trimmed" in result]
    smallest = sum(answer_format.element_size(r) for r in results_view(items, answer_format, 0)["results"])
    used = sum(answer_format.element_size(result) for result in answer["results"])
    assert used <= max(budget, smallest)  # within the budget, unless even the smallest answer is not
    for item, result in zip(items, answer["results"], strict=True):
        if "trimmed" in result:
            assert item.task is not None and item.task.definition.payload
            assert result["task"] == {k: v for k, v in task_view(item.task).items() if k != "payload"}
            assert f"GET /task/{item.task.key}" in result["trimmed"]
    if trimmed:  # a whole view was left out only because it did not fit
        first = answer["results"].index(trimmed[0])
        whole = {"status": items[first].status, "task": task_view(items[first].task)}
        assert used - answer_format.element_size(trimmed[0]) + answer_format.element_size(whole) > budget


def test_a_tiny_payload_s_note_does_not_crowd_out_an_entry_that_fits_whole() -> None:
    # Hypothesis found it: an entry with a 2-byte payload is smaller whole than with the note that its
    # payload was left out, so counting it with the note made the entry before it look too big.
    answer_format = AnswerFormat(pretty=False)
    items = [
        ItemResult(201, make_task(name="t0", payload="x" * 500)),
        ItemResult(201, make_task(name="t1", payload="ab")),
    ]
    whole = [answer_format.element_size({"status": 201, "task": task_view(item.task)}) for item in items if item.task]
    answer = results_view(items, answer_format, budget=sum(whole))
    assert [result.get("trimmed") for result in answer["results"]] == [None, None]
    assert [result["task"]["payload"] for result in answer["results"]] == ["x" * 500, "ab"]
