"""bench.profile's attribution of sampled stacks to the parts of a callback's path."""

from __future__ import annotations

import pytest

from bench.profile import OTHER, PARTS, shares

WORKER = "Thread._bootstrap (threading.py);Thread.run (threading.py);_worker (concurrent/futures/thread.py)"


def test_each_stack_counts_for_the_first_part_it_shows_and_the_shares_add_up() -> None:
    lines = [
        f"{WORKER};_WorkItem.run (concurrent/futures/_base.py);_Run._write (callme/dispatch.py);put (x.py) 6",
        f"{WORKER};_WorkItem.run (concurrent/futures/_base.py);_Run._attempt (callme/dispatch.py);"
        "_Run._read_and_call (callme/dispatch.py);HttpCaller.call (callme/callback.py) 3",
        f"{WORKER};_WorkItem.run (concurrent/futures/_base.py) 1",
        "<module> (bench/profile.py) 2",
        "Thread._bootstrap (threading.py);_worker (",  # cut short as the sampler stopped: left out
    ]
    found = shares(lines)
    assert set(found) == {name for name, _ in PARTS} | {OTHER}
    assert found["outcome write (PutItem)"] == pytest.approx(0.5)
    assert found["callback call (signing, request)"] == pytest.approx(0.25), "the call, not the turn around it"
    assert found["thread pools' hand-offs"] == pytest.approx(1 / 12)
    assert found[OTHER] == pytest.approx(2 / 12)
    assert sum(found.values()) == pytest.approx(1)
