"""The storage ports' contract (callme.ports), held by both implementations: DynamoDB (on moto) and
memory. The unit tier runs the service and the dispatch engine on the memory one, so every rule here
is what lets those tests speak for DynamoDB too."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from callme.dynamodb import DynamoDBLeaseStore, DynamoDBStatsStore, DynamoDBTaskRepository
from callme.headers import HeaderSet, SealedHeaders
from callme.memory import InMemoryLeaseStore, InMemoryStatsStore, InMemoryTaskRepository
from callme.ports import (
    LIST_REQUESTS,
    READ_BATCH,
    EntryExists,
    LeaseStore,
    StaleEntry,
    StatsStore,
    TaskRepository,
    TransactionRefused,
    due_slot,
    shard_of,
    slot_of,
)
from callme.stats import LATENESS_BOUNDS, Histogram, MinuteStats
from callme.task import Task, TaskDefinition, TaskKey, TaskState

T0 = 1858809600
SHARDS = 4
NOW = T0 - 3600.0


@dataclass
class Storage:
    tasks: TaskRepository
    leases: LeaseStore
    stats: StatsStore


@pytest.fixture(params=["dynamodb", "memory"])
def storage(request: pytest.FixtureRequest) -> Iterator[Storage]:
    if request.param == "memory":
        yield Storage(InMemoryTaskRepository(SHARDS), InMemoryLeaseStore(), InMemoryStatsStore())
        return
    client = request.getfixturevalue("aws")
    yield Storage(
        DynamoDBTaskRepository(client, "callme-tasks", SHARDS),
        DynamoDBLeaseStore(client, "callme-leases"),
        DynamoDBStatsStore(client, "callme-stats"),
    )


def entry(name: str = "job", at: int = T0, payload: str = "", **changes: Any) -> Task:
    task = Task.new(TaskKey(name, at), TaskDefinition(callback="https://example.com/x", payload=payload), NOW)
    return replace(task, **changes)


def stored(storage: Storage, *tasks: Task) -> list[Task]:
    for task in tasks:
        storage.tasks.insert(task)
    return list(tasks)


def finished(task: Task, expires_at: int) -> Task:
    return replace(task.cancelled(NOW, 0), expires_at=expires_at)


# -- writes ---------------------------------------------------------------------------------------


def test_an_inserted_entry_reads_back_as_written(storage: Storage) -> None:
    task = entry(payload="körper \x01 ✓", attempts=0)
    storage.tasks.insert(task)
    assert storage.tasks.get(task.key) == task
    assert storage.tasks.get(TaskKey("job", T0 + 60)) is None


def test_an_insert_on_a_taken_key_is_refused_with_the_stored_entry(storage: Storage) -> None:
    [first] = stored(storage, entry())
    with pytest.raises(EntryExists) as refused:
        storage.tasks.insert(entry())
    assert refused.value.current == first
    assert storage.tasks.get(first.key) == first


def test_a_save_applies_only_to_the_revision_it_read(storage: Storage) -> None:
    [task] = stored(storage, entry())
    cancelled = task.cancelled(NOW + 1, 3600)
    storage.tasks.save(cancelled, task.revision)
    assert storage.tasks.get(task.key) == cancelled
    with pytest.raises(StaleEntry) as stale:
        storage.tasks.save(task.cancelled(NOW + 2, 3600), task.revision)
    assert stale.value.current == cancelled, "it says what is stored now"
    assert storage.tasks.get(task.key) == cancelled


def test_a_save_of_a_missing_entry_is_stale_with_nothing_stored(storage: Storage) -> None:
    task = entry()
    with pytest.raises(StaleEntry) as stale:
        storage.tasks.save(task, task.revision)
    assert stale.value.current is None
    assert storage.tasks.get(task.key) is None


def test_a_reschedule_writes_the_successor_and_marks_its_sources_together(storage: Storage) -> None:
    *sources, late = stored(storage, entry(at=T0), entry(at=T0 + 60), entry(at=T0 + 180))
    successor = entry(at=T0 + 120, rescheduled_from=str(sources[0].key))
    marked = [(source.rescheduled(successor.key, NOW), source.revision) for source in sources]
    storage.tasks.reschedule(successor, marked)
    assert storage.tasks.get(successor.key) == successor
    assert [storage.tasks.get(s.key) for s in sources] == [m for m, _ in marked]
    # A source found later is marked on its own, once its successor exists
    late_marked = late.rescheduled(successor.key, NOW)
    storage.tasks.reschedule(None, [(late_marked, late.revision)])
    assert storage.tasks.get(late.key) == late_marked


@pytest.mark.parametrize("obstacle", ["source changed", "source marked", "source gone", "successor taken"])
def test_a_reschedule_whose_condition_fails_writes_nothing_and_says_what_it_found(
    storage: Storage, obstacle: str
) -> None:
    source, other = stored(storage, entry(at=T0), entry(at=T0 + 60))
    successor = entry(at=T0 + 120)
    expected = source.revision
    found: Task | None = None
    if obstacle == "source changed":
        found = source.cancelled(NOW, 3600)
        storage.tasks.save(found, source.revision)
    elif obstacle == "source marked":
        found = source.rescheduled(TaskKey("job", T0 + 600), NOW)
        storage.tasks.save(found, source.revision)
        expected = found.revision  # unchanged since read, but marked already
    elif obstacle == "source gone":
        source = entry(at=T0 + 180)
    else:
        [found] = stored(storage, entry(at=T0 + 120, payload="another"))
    before = {t.key: storage.tasks.get(t.key) for t in (source, other, successor)}
    marks = [
        (source.rescheduled(successor.key, NOW), expected),
        (other.rescheduled(successor.key, NOW), other.revision),
    ]
    with pytest.raises(TransactionRefused) as refused:
        storage.tasks.reschedule(successor, marks)
    failed = successor.key if obstacle == "successor taken" else source.key
    assert refused.value.current == {failed: found}
    assert {t.key: storage.tasks.get(t.key) for t in (source, other, successor)} == before, "all or nothing"


# -- reads ----------------------------------------------------------------------------------------


def test_many_entries_are_read_at_once_leaving_out_missing_ones(storage: Storage) -> None:
    tasks = stored(storage, *(entry(f"job{i:03d}") for i in range(READ_BATCH + 5)))
    keys = [t.key for t in tasks] + [TaskKey("missing", T0)]
    found = storage.tasks.get_many(keys)
    assert sorted(found, key=lambda t: t.key) == sorted(tasks, key=lambda t: t.key)


def test_a_task_s_entries_come_in_trigger_order_a_page_at_a_time(storage: Storage) -> None:
    tasks = stored(storage, *(entry(at=T0 + 60 * i) for i in (3, 0, 2, 1, 4)), entry("other"))
    first = storage.tasks.entries_of("job", None, NOW, 2)
    assert ([t.key.trigger_at for t in first.tasks], first.more) == ([T0, T0 + 60], True)
    rest = storage.tasks.entries_of("job", T0 + 120, NOW, 10)
    assert ([t.key.trigger_at for t in rest.tasks], rest.more) == ([T0 + 120, T0 + 180, T0 + 240], False)
    exact = storage.tasks.entries_of("job", None, NOW, 5)
    assert (len(exact.tasks), exact.more) == (5, False), "more only when another entry remains"
    assert {t.key for t in exact.tasks} == {t.key for t in tasks if t.key.name == "job"}


def test_a_page_ends_at_the_first_entry_that_does_not_fit(storage: Storage) -> None:
    stored(storage, *(entry(at=T0 + 60 * i) for i in range(5)))
    offered: list[int] = []

    def fits(task: Task) -> bool:
        offered.append(task.key.trigger_at)
        return len(offered) <= 2

    page = storage.tasks.entries_of("job", None, NOW, 10, fits)
    assert ([t.key.trigger_at for t in page.tasks], page.more) == ([T0, T0 + 60], True)
    assert offered == [T0, T0 + 60, T0 + 120]
    everything = storage.tasks.all_entries(None, None, NOW, 10, lambda task: task.key.trigger_at < T0 + 60)
    assert ([t.key.trigger_at for t in everything.tasks], everything.more) == ([T0], True)


def test_expired_entries_are_not_listed_and_active_only_leaves_finished_ones_out(storage: Storage) -> None:
    pending, cancelled, expired = stored(storage, entry(at=T0), entry(at=T0 + 60), entry(at=T0 + 120))
    storage.tasks.save(finished(cancelled, int(NOW) + 10), cancelled.revision)
    storage.tasks.save(finished(expired, int(NOW)), expired.revision)
    listed = storage.tasks.entries_of("job", None, NOW, 10)
    assert [t.key for t in listed.tasks] == [pending.key, cancelled.key]
    active = storage.tasks.entries_of("job", None, NOW, 10, active_only=True)
    assert [t.key for t in active.tasks] == [pending.key]
    assert [t.key for t in storage.tasks.all_entries(None, None, NOW, 10).tasks] == [pending.key, cancelled.key]
    assert storage.tasks.entries_of("job", None, NOW + 10, 10).tasks == [storage.tasks.get(pending.key)]


def test_every_entry_is_listed_once_across_pages_of_all_entries(storage: Storage) -> None:
    tasks = stored(storage, *(entry(f"job{i % 7}", T0 + 60 * i) for i in range(23)))
    seen: list[TaskKey] = []
    after = None
    while True:
        page = storage.tasks.all_entries(after, None, NOW, 4)
        seen.extend(t.key for t in page.tasks)
        if not page.more:
            break
        after = page.tasks[-1].key
    assert sorted(seen) == sorted(t.key for t in tasks) and len(seen) == len(tasks)
    later = storage.tasks.all_entries(None, T0 + 60 * 20, NOW, 100)
    assert sorted(t.key.trigger_at for t in later.tasks) == [T0 + 60 * i for i in (20, 21, 22)]


HIDDEN = 300  # more than a page of 2 reads in its LIST_REQUESTS requests: 3 + 12 + 48 + 192 entries


def test_a_page_over_many_hidden_entries_reads_within_its_budget_and_resumes_exactly(storage: Storage) -> None:
    assert LIST_REQUESTS == 4
    first, last = stored(storage, entry(at=T0), entry(at=T0 + 60 * (HIDDEN + 1)))
    for i in range(1, HIDDEN + 1):
        [task] = stored(storage, entry(at=T0 + 60 * i))
        storage.tasks.save(finished(task, int(NOW)), task.revision)  # expired: hidden
    page = storage.tasks.entries_of("job", None, NOW, 2)
    assert ([t.key for t in page.tasks], page.more) == ([first.key], True)
    assert page.after == TaskKey("job", T0 + 60 * 254), "the 255th entry, the last it read, hidden or not"
    rest = storage.tasks.entries_of("job", page.after.trigger_at + 60, NOW, 2)
    assert ([t.key for t in rest.tasks], rest.more, rest.after) == ([last.key], False, None)


def test_all_entries_over_many_hidden_ones_come_once_across_pages_of_bounded_reads(storage: Storage) -> None:
    shown = stored(storage, *(entry(f"future{i}", T0 + 60 * 1000) for i in range(3)))
    stored(storage, *(entry(f"past{i:03d}", T0) for i in range(HIDDEN)))
    seen: list[TaskKey] = []
    after, pages = None, 0
    while True:
        page = storage.tasks.all_entries(after, T0 + 60, NOW, 2)
        pages += 1
        seen.extend(t.key for t in page.tasks)
        after = page.resume()
        if after is None:
            break
    assert sorted(seen) == sorted(t.key for t in shown) and len(seen) == 3
    assert pages >= 2, "no page reads past its budget"


def test_due_lists_the_active_entries_of_a_shard_due_by_a_minute(storage: Storage) -> None:
    tasks = stored(storage, *(entry(f"job{i}", T0 + 60 * (i % 3)) for i in range(40)))
    done = tasks[0]
    storage.tasks.save(done.cancelled(NOW, 3600), done.revision)
    for shard in range(SHARDS):
        due = list(storage.tasks.due(shard, T0 + 60))
        expected = {t.key for t in tasks[1:] if shard_of(t.key, SHARDS) == shard and t.key.trigger_at <= T0 + 60}
        assert {t.key for t in due} == expected and len(due) == len(expected)
        assert all(t.state is TaskState.PENDING for t in due)
        assert storage.tasks.has_due(shard, T0 + 60) == bool(expected)
    assert not any(storage.tasks.has_due(shard, T0 - 60) for shard in range(SHARDS))


def test_an_entry_with_sealed_headers_and_a_failure_hook_reads_back_as_written(storage: Storage) -> None:
    sealed = SealedHeaders(("Authorization", "X-Tenant"), "v1.0123abcd.c2VhbGVk")
    task = entry(definition=TaskDefinition("https://example.com/x", headers=sealed, on_failure="https://example.com/f"))
    storage.tasks.insert(task)
    assert storage.tasks.get(task.key) == task
    failed = task.missed(T0 + 700, 3600)
    assert failed.on_failure_call is not None and failed.on_failure_call.pending
    storage.tasks.save(failed, task.revision)
    assert storage.tasks.get(task.key) == failed
    waiting = failed.after_hook_call(failed.on_failure_call.after_call(T0 + 701, 12, 503, None, jitter=0.5), T0 + 701)
    storage.tasks.save(waiting, failed.revision)
    assert storage.tasks.get_many([task.key]) == [waiting]


def test_header_values_in_clear_are_never_stored(storage: Storage) -> None:
    clear = entry(definition=TaskDefinition("https://example.com/x", headers=HeaderSet((("Authorization", "s3cr3t"),))))
    with pytest.raises(ValueError, match="not sealed"):
        storage.tasks.insert(clear)
    [task] = stored(storage, entry())
    with pytest.raises(ValueError, match="not sealed"):
        storage.tasks.save(replace(clear, revision="new"), task.revision)
    assert storage.tasks.get(task.key) == task


def test_due_lists_a_finished_entry_while_it_owes_its_failure_hook_call(storage: Storage) -> None:
    hooked = TaskDefinition("https://example.com/x", on_failure="https://example.com/f")
    [owing, plain] = stored(storage, entry("owing", definition=hooked), entry("plain"))
    shards = {shard_of(t.key, SHARDS) for t in (owing, plain)}

    def due() -> set[str]:
        return {t.key.name for shard in shards for t in storage.tasks.due(shard, T0)}

    failed, skipped = owing.missed(T0 + 700, 3600), plain.missed(T0 + 700, 3600)
    storage.tasks.save(failed, owing.revision)
    storage.tasks.save(skipped, plain.revision)
    assert due() == {"owing"}, "a skipped entry without on_failure has nothing left to do"
    assert storage.tasks.has_due(shard_of(owing.key, SHARDS), T0)
    assert failed.on_failure_call is not None
    delivered = failed.after_hook_call(failed.on_failure_call.after_call(T0 + 701, 12, 204, None), T0 + 701)
    storage.tasks.save(delivered, failed.revision)
    assert due() == set()


def test_due_lists_more_than_a_megabyte_of_entries(storage: Storage) -> None:
    names = [f"big{i:02d}" for i in range(200) if shard_of(TaskKey(f"big{i:02d}", T0), SHARDS) == 0][:24]
    stored(storage, *(entry(name, payload="x" * 60_000) for name in names))
    assert sorted(t.key.name for t in storage.tasks.due(0, T0)) == sorted(names) and len(names) == 24


def test_an_entry_keeps_its_shard_when_the_shard_count_changes(storage: Storage) -> None:
    name = next(
        f"job{i}" for i in range(100) if shard_of(TaskKey(f"job{i}", T0), 4) != shard_of(TaskKey(f"job{i}", T0), 8)
    )
    old, new = shard_of(TaskKey(name, T0), 4), shard_of(TaskKey(name, T0), 8)
    storage.tasks.shards = 4
    [task] = stored(storage, entry(name))
    storage.tasks.shards = 8  # redeployed with more shards
    read = storage.tasks.get(task.key)
    assert read is not None and read.due_slot == old
    retried = replace(read, attempts=1, revision="r2", next_attempt_at=float(T0 + 1))
    storage.tasks.save(retried, read.revision)
    assert [t.key for t in storage.tasks.due(old, T0)] == [task.key], "still where it was"
    assert task.key not in {t.key for t in storage.tasks.due(new, T0)}
    [later] = stored(storage, entry(name, T0 + 60))
    assert later.key in {t.key for t in storage.tasks.due(shard_of(later.key, 8), T0 + 60)}, "a new one: the new count"
    storage.tasks.save(read.cancelled(NOW, 3600), "r2")
    again = storage.tasks.get(task.key)
    assert again is not None and again.due_slot is None, "a finished entry is in no shard"
    assert task.key not in {t.key for t in storage.tasks.due(old, T0)}


def test_entries_are_spread_over_the_slices_of_their_shard_each_listed_and_counted_apart(storage: Storage) -> None:
    storage.tasks.slices = 3
    tasks = stored(storage, *(entry(f"job{i}") for i in range(60)))
    slots = {slot: [t.key for t in tasks if slot_of(t.key, SHARDS, 3) == slot] for slot in range(3000)}
    slots = {slot: keys for slot, keys in slots.items() if keys}
    assert {due_slot(shard, part) for shard in range(SHARDS) for part in range(3)} == set(slots), "every slice used"
    for slot, keys in slots.items():
        assert sorted(t.key for t in storage.tasks.due(slot, T0)) == sorted(keys)
        assert [storage.tasks.count_due(slot, T0, most) for most in (1, len(keys), 100)] == [1, len(keys), len(keys)]
        assert storage.tasks.count_due(slot, T0 - 60, 100) == 0 and storage.tasks.has_due(slot, T0)
    assert {storage.tasks.get(t.key).due_slot for t in tasks} == set(slots)  # type: ignore[union-attr]


def test_a_count_of_due_entries_goes_past_a_megabyte_and_stops_at_its_bound(storage: Storage) -> None:
    names = [f"big{i:02d}" for i in range(200) if shard_of(TaskKey(f"big{i:02d}", T0), SHARDS) == 0][:24]
    stored(storage, *(entry(name, payload="x" * 60_000) for name in names))
    assert storage.tasks.count_due(0, T0, 100) == 24, "1.4 MB of entries: more than one page"
    assert storage.tasks.count_due(0, T0, 20) == 20


def test_an_entry_keeps_its_slice_when_the_slice_count_changes(storage: Storage) -> None:
    name = next(f"job{i}" for i in range(100) if slot_of(TaskKey(f"job{i}", T0), SHARDS, 4) >= 1000)
    key = TaskKey(name, T0)
    storage.tasks.slices = 1
    stored(storage, entry(name))
    task = storage.tasks.get(key)
    assert task is not None and task.due_slot == shard_of(key, SHARDS)
    storage.tasks.slices = 4  # redeployed with slices
    retried = replace(task, attempts=1, revision="r2", next_attempt_at=float(T0 + 1))
    storage.tasks.save(retried, task.revision)
    assert [t.key for t in storage.tasks.due(shard_of(key, SHARDS), T0)] == [key], "still in slice 0"
    assert storage.tasks.count_due(slot_of(key, SHARDS, 4), T0, 10) == 0
    stored(storage, entry(name, T0 + 60))
    later = storage.tasks.get(TaskKey(name, T0 + 60))
    assert later is not None
    assert [t.key for t in storage.tasks.due(slot_of(later.key, SHARDS, 4), T0 + 60)] == [later.key], "a new one"
    storage.tasks.slices = 1  # lowered again: the new one stays in its slice
    storage.tasks.save(replace(later, attempts=1, revision="r3"), later.revision)
    assert storage.tasks.get(later.key).due_slot == slot_of(later.key, SHARDS, 4)  # type: ignore[union-attr]


# -- leases ---------------------------------------------------------------------------------------


def test_the_widest_shard_count_is_remembered_and_never_lowered(storage: Storage) -> None:
    assert storage.leases.widest(8) == 8
    assert storage.leases.widest(4) == 8, "lowered: the shards 4 to 7 may still hold entries"
    assert storage.leases.widest(16) == 16
    assert storage.leases.widest(8) == 16


def test_the_widest_slice_count_is_remembered_apart_and_never_lowered(storage: Storage) -> None:
    assert storage.leases.widest_slices(1) == 1
    assert storage.leases.widest(8) == 8
    assert storage.leases.widest_slices(4) == 4
    assert storage.leases.widest_slices(2) == 4, "lowered: the slices 2 and 3 may still hold entries"
    assert storage.leases.widest(4) == 8, "each count kept on its own"
    assert storage.leases.widest_slices(1) == 4


def test_the_slices_of_a_shard_are_leased_apart(storage: Storage) -> None:
    first, second = due_slot(3, 0), due_slot(3, 1)
    assert storage.leases.acquire(first, "run-a", NOW, NOW + 25) is not None
    assert storage.leases.acquire(second, "run-b", NOW, NOW + 25) is not None, "another slice: another lease"
    assert storage.leases.acquire(second, "run-c", NOW + 1, NOW + 26) is None
    assert storage.leases.acquire(first, "run-c", NOW + 1, NOW + 26) is None


def test_a_lease_is_held_until_it_runs_out_and_then_taken_over(storage: Storage) -> None:
    leases = storage.leases
    assert leases.acquire(0, "old-run", T0, T0 + 25) is not None
    assert leases.acquire(1, "new-run", T0, T0 + 25) is not None, "each shard has its own"
    assert leases.renew(0, "old-run", T0 + 30), "its holder renews it"
    assert leases.acquire(0, "new-run", T0 + 20, T0 + 45) is None, "nobody else takes it meanwhile"
    assert leases.acquire(0, "new-run", T0 + 31, T0 + 56) is not None, "once it ran out, another run may"
    assert not leases.renew(0, "old-run", T0 + 60), "and then the old holder cannot renew it"


def test_a_released_lease_is_free_and_only_its_holder_releases_it(storage: Storage) -> None:
    leases = storage.leases
    assert leases.acquire(0, "run-a", T0, T0 + 25) is not None
    leases.release(0, "run-b", T0 + 1)
    assert leases.acquire(0, "run-b", T0 + 2, T0 + 27) is None, "another run's release changes nothing"
    leases.release(0, "run-a", T0 + 3)
    lease = leases.acquire(0, "run-b", T0 + 4, T0 + 29)
    assert lease is not None and (lease.shard, lease.owner, lease.until) == (0, "run-b", T0 + 29)
    assert not leases.renew(0, "run-a", T0 + 40)


# -- per-minute stats -------------------------------------------------------------------------------


def minute_stats(minute: int, *lateness: float, **counts: int) -> MinuteStats:
    found = MinuteStats(minute, **counts)
    for seconds in lateness:
        found.lateness.add(seconds)
    return found


def test_stored_stats_read_back_as_written_oldest_minute_first(storage: Storage) -> None:
    busy = minute_stats(T0, 0.25, 0.4, 95000.0, calls=3, succeeded=1, failed=1, retried=1, skipped=2)
    quiet = minute_stats(T0 - 60, skipped=1)
    storage.stats.add("run-b", busy, T0 + 86400)
    storage.stats.add("run-a", quiet, T0 + 86400)
    assert storage.stats.between(T0 - 60, T0) == [quiet, busy]
    assert quiet.lateness == Histogram() and busy.lateness.high == 95000.0


def test_stats_of_several_runs_in_a_minute_are_kept_apart_and_a_run_s_own_is_replaced(storage: Storage) -> None:
    storage.stats.add("run-a", minute_stats(T0, 1.0, calls=1, succeeded=1), T0 + 86400)
    storage.stats.add("run-b", minute_stats(T0, 2.0, calls=1, failed=1), T0 + 86400)
    storage.stats.add("run-a", minute_stats(T0, 1.0, 1.5, calls=2, succeeded=2), T0 + 86400)  # a retried put
    found = storage.stats.between(T0, T0)
    assert sorted((s.calls, s.succeeded, s.failed) for s in found) == [(1, 0, 1), (2, 2, 0)]


def test_stats_are_read_for_the_minutes_asked_both_ends_included(storage: Storage) -> None:
    for i in range(-2, 4):
        storage.stats.add("run", minute_stats(T0 + 60 * i, calls=1, succeeded=1), T0 + 86400)
    assert [s.minute for s in storage.stats.between(T0, T0 + 120)] == [T0, T0 + 60, T0 + 120]
    assert storage.stats.between(T0 + 600, T0 + 6000) == []


def test_stats_over_many_pages_are_read_whole(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    # DynamoDB ends a page at 1 MB (moto too): here at 100 kB, so that 1,500 items of ~250 bytes take 4 pages.
    monkeypatch.setattr("moto.dynamodb.models.table.RESULT_SIZE_LIMIT", 100_000)
    every_bucket = [bound - 0.001 for bound in LATENESS_BOUNDS] + [100000.0]
    for i in range(1500):
        storage.stats.add(f"run-{i % 3}", minute_stats(T0 + 60 * (i // 3), *every_bucket, calls=31), T0 + 86400)
    found = storage.stats.between(T0, T0 + 60 * 500)
    assert len(found) == 1500
    assert all(s.lateness.count == 31 for s in found)
