"""Per-minute stats (callme.stats): histograms that merge, percentiles from them, and the window
GET /stats answers, quiet minutes included."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from callme.stats import LATENESS_BOUNDS, Histogram, MinuteStats, StatsTally, window, window_view

T0 = 1858809600


def histogram(*values: float) -> Histogram:
    found = Histogram()
    for value in values:
        found.add(value)
    return found


def nearest_rank(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def bucket_width_at(value: float) -> float:
    """The width of the bucket ``value`` falls in: how far a percentile may be off."""
    for lower, upper in zip((0.0, *LATENESS_BOUNDS), LATENESS_BOUNDS, strict=False):
        if value <= upper:
            return upper - lower
    return float("inf")


def test_an_empty_histogram_has_no_percentiles() -> None:
    assert Histogram().percentile(0.5) is None
    assert Histogram().percentile(0.99) is None


def test_a_single_value_is_its_own_every_percentile() -> None:
    one = histogram(0.412)
    assert one.percentile(0.5) == 0.412
    assert one.percentile(0.99) == 0.412


def test_percentiles_are_within_a_bucket_of_the_exact_ones() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(-0.5, 0.8) for _ in range(2000)] + [rng.uniform(30, 200) for _ in range(30)]
    found = histogram(*values)
    for fraction in (0.5, 0.99):
        exact = nearest_rank(values, fraction)
        estimate = found.percentile(fraction)
        assert estimate is not None
        assert abs(estimate - exact) <= bucket_width_at(exact), (fraction, exact, estimate)
    assert found.percentile(0.5) == pytest.approx(statistics.median(values), abs=0.1)


def test_values_in_one_bucket_are_placed_between_the_lowest_and_highest_seen() -> None:
    # Six calls about 61 s late fall in the bucket (60, 90]: the median is not pushed towards 90.
    late = histogram(61.01, 61.02, 61.03, 61.04, 61.05, 61.573)
    assert late.percentile(0.99) == 61.573
    assert 61.01 <= late.percentile(0.5) <= 61.3  # type: ignore[operator]


def test_merged_histograms_give_the_percentiles_of_all_their_values() -> None:
    rng = random.Random(3)
    parts = [[rng.uniform(0, 3) for _ in range(n)] for n in (5, 400, 37)]
    merged = Histogram()
    for part in parts:
        merged.merge(histogram(*part))
    together = histogram(*(v for part in parts for v in part))
    assert merged == together
    assert merged.percentile(0.99) == together.percentile(0.99)
    assert merged.count == 442


def test_values_beyond_the_last_bucket_and_below_zero_are_kept_and_bounded_by_what_was_seen() -> None:
    late = histogram(90000.0, 100000.0)
    assert late.percentile(0.99) == 100000.0
    assert late.percentile(0.5) is not None and 86400 <= late.percentile(0.5) <= 100000.0  # type: ignore[operator]
    early = histogram(-0.2)  # a call a little before its minute, by the clocks' skew
    assert early.percentile(0.5) == -0.2


def test_a_run_tallies_calls_and_outcomes_by_the_minute_they_happened_in() -> None:
    tally = StatsTally()
    tally.called(T0 + 0.5, 0.5)
    tally.ended(T0 + 0.5, "succeeded")
    tally.called(T0 + 59.9, 59.9)
    tally.ended(T0 + 59.9, "retried")
    tally.called(T0 + 61, 61.0)
    tally.ended(T0 + 61, "failed")
    tally.ended(T0 + 62, "skipped")
    first, second = tally.minutes[T0], tally.minutes[T0 + 60]
    assert (first.calls, first.succeeded, first.retried, first.failed, first.skipped) == (2, 1, 1, 0, 0)
    assert (second.calls, second.succeeded, second.retried, second.failed, second.skipped) == (1, 0, 0, 1, 1)
    assert first.lateness.count == 2 and second.lateness.count == 1
    with pytest.raises(ValueError):
        tally.ended(T0, "cancelled")


def test_the_window_ends_at_the_current_minute_and_holds_n_minutes() -> None:
    assert window(T0 + 42.5, 60) == (T0 - 59 * 60, T0)
    assert window(T0, 15) == (T0 - 14 * 60, T0)


def test_the_window_view_has_every_minute_oldest_first_with_zeros_and_nulls_for_quiet_ones() -> None:
    first, last = window(T0 + 10, 15)
    busy = MinuteStats(T0 - 60, calls=3, succeeded=2, retried=1, lateness=histogram(0.4, 0.6, 1.1))
    other_run = MinuteStats(T0 - 60, calls=1, failed=1, skipped=2, lateness=histogram(2.5))
    outside = MinuteStats(first - 60, calls=9, succeeded=9, lateness=histogram(*[1.0] * 9))
    view = window_view(first, last, [busy, outside, other_run])
    assert (view["from"], view["to"]) == (first, last)
    assert [m["minute"] for m in view["minutes"]] == list(range(first, last + 1, 60))
    merged = view["minutes"][-2]
    assert merged == {
        "minute": T0 - 60,
        "calls": 4,
        "succeeded": 2,
        "failed": 1,
        "retried": 1,
        "skipped": 2,
        "lateness_p50": merged["lateness_p50"],
        "lateness_p99": 2.5,
    }
    assert 0.5 <= merged["lateness_p50"] <= 0.75
    quiet = view["minutes"][0]
    assert quiet == {
        "minute": first,
        "calls": 0,
        "succeeded": 0,
        "failed": 0,
        "retried": 0,
        "skipped": 0,
        "lateness_p50": None,
        "lateness_p99": None,
    }
    assert sum(m["calls"] for m in view["minutes"]) == 4  # the item before the window is left out
