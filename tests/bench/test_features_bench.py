"""bench.features runs, and says what it measured: headers and a failure hook cost nothing to a task
that has neither, and what they add to one that has them."""

from __future__ import annotations

import pytest

from bench import features


def test_the_features_benchmark_prices_a_plain_task_apart_from_one_with_headers_and_a_hook(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(name, "local" if "KEY" in name else "us-east-1")
    found = features.measure(entries=6, shards=2, payload_bytes=200)
    plain, hooked, failed = (found[case] for case in features.CASES)
    assert plain["item_bytes_after_dispatch"] < hooked["item_bytes_after_dispatch"]
    assert plain["write_units_per_task"] <= hooked["write_units_per_task"] < failed["write_units_per_task"]
    assert failed["read_units_per_task"] > hooked["read_units_per_task"], "the hook's turn reads its entry again"
    assert features.per_million_usd(plain) < features.per_million_usd(failed)
