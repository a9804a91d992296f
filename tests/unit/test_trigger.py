"""trigger_at: an absolute Unix minute or ``+<int>{m,h,d}`` counted from the current minute."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callme.errors import InvalidRequest
from callme.settings import DAY
from callme.trigger import check_can_run, parse_trigger_at
from tests.conftest import default_limits
from tests.unit.conftest import CURRENT_MINUTE, NOW, rejected

HORIZON = default_limits().max_ahead_seconds
UNITS = {"m": 60, "h": 3600, "d": 86400}


def parse(value: object, now: float = NOW, horizon: int = HORIZON) -> int:
    return parse_trigger_at(value, now, horizon)


# -- absolute timestamps ------------------------------------------------------------------------


def test_absolute_timestamp_as_a_json_number_is_kept() -> None:
    # Given a future Unix minute sent as a JSON number
    future = CURRENT_MINUTE + 3 * 3600
    # When it is parsed / Then it is the trigger minute
    assert parse(future) == future


def test_absolute_timestamp_as_a_digit_string_is_kept() -> None:
    # Given the seed's example: a Unix minute sent as a string
    # When it is parsed at a time before it
    resolved = parse("1858809600", now=1_800_000_000)
    # Then it is that minute, as an integer
    assert resolved == 1858809600


def test_current_minute_is_allowed() -> None:
    # Given the minute we are in (42.5 s into it)
    # When it is sent as trigger_at / Then it is accepted (the dispatcher takes it right away)
    assert parse(CURRENT_MINUTE) == CURRENT_MINUTE
    assert parse(str(CURRENT_MINUTE)) == CURRENT_MINUTE


def test_timestamp_not_divisible_by_60_is_rejected() -> None:
    # Given a timestamp 30 seconds into a future minute
    error = rejected(lambda: parse(CURRENT_MINUTE + 90))
    # Then the client is told it is not on a minute boundary
    assert isinstance(error, InvalidRequest)
    assert "trigger_at" in error.message
    assert "divisible by 60" in error.message


def test_past_minute_is_rejected_naming_the_current_minute() -> None:
    # Given the minute before the current one
    error = rejected(lambda: parse(CURRENT_MINUTE - 60))
    # Then it is refused as past, and the message says what "now" is
    assert isinstance(error, InvalidRequest)
    assert "trigger_at" in error.message
    assert "in the past" in error.message
    assert str(CURRENT_MINUTE) in error.message


def test_negative_timestamp_is_rejected_as_past() -> None:
    error = rejected(lambda: parse(-60))
    assert "in the past" in error.message


def test_absolute_timestamp_beyond_the_horizon_is_rejected() -> None:
    # Given a two-day horizon and a timestamp one minute past it
    horizon = 2 * DAY
    # When it is parsed
    error = rejected(lambda: parse(CURRENT_MINUTE + horizon + 60, horizon=horizon))
    # Then it is too far ahead, and the limit is stated in days
    assert isinstance(error, InvalidRequest)
    assert "trigger_at" in error.message
    assert "too far ahead" in error.message
    assert "2 days" in error.message


def test_absolute_timestamp_exactly_at_the_horizon_is_accepted() -> None:
    horizon = 2 * DAY
    assert parse(CURRENT_MINUTE + horizon, horizon=horizon) == CURRENT_MINUTE + horizon


# -- relative times --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "offset"),
    [("+1m", 60), ("+90m", 5400), ("+6h", 6 * 3600), ("+1d", 86400), ("+30d", 30 * 86400), ("+0m", 0)],
)
def test_relative_time_counts_from_the_start_of_the_current_minute(text: str, offset: int) -> None:
    # Given "now" is 42.5 seconds into a minute
    # When a relative time is parsed
    resolved = parse(text)
    # Then it is counted from the start of that minute, not from now
    assert resolved == CURRENT_MINUTE + offset
    assert resolved % 60 == 0


def test_relative_time_may_have_leading_zeros() -> None:
    assert parse("+06h") == CURRENT_MINUTE + 6 * 3600


def test_relative_time_beyond_the_horizon_is_rejected() -> None:
    # Given a two-day horizon
    error = rejected(lambda: parse("+2881m", horizon=2 * DAY))
    # Then "+2881m" (two days and a minute) is too far ahead
    assert "too far ahead" in error.message
    assert "'+2881m'" in error.message


def test_relative_time_exactly_at_the_horizon_is_accepted() -> None:
    assert parse("+2d", horizon=2 * DAY) == CURRENT_MINUTE + 2 * DAY


def test_huge_relative_time_is_rejected_as_too_far_ahead() -> None:
    error = rejected(lambda: parse("+999999999999d"))
    assert "too far ahead" in error.message


# -- strict forms -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["+", "+6", "+6z", "+6hx", "+-1m", "+6H", "+6M", "+6 h", "+6h ", "++6h", "+6.5h", "+1e3m", "+\uff16h", "+\u0666h"],
)
def test_malformed_relative_time_is_rejected(text: str) -> None:
    # When something that starts like a relative time is not exactly +<digits><m|h|d>
    error = rejected(lambda: parse(text))
    # Then the error names the field, quotes the value and shows the expected form
    assert isinstance(error, InvalidRequest)
    assert isinstance(error, InvalidRequest)
    assert error.message.startswith("trigger_at")
    assert repr(text) in error.message
    assert '"+6h"' in error.message


@pytest.mark.parametrize(
    "text",
    [
        "6h",
        " +6h",
        "",
        " ",
        "now",
        "1858809600 ",
        "0x6ec7e5c0",
        "1858809600.0",
        "-60",
        "1e9",
        "\u0661\u0668" + "\u0660" * 8,
    ],
)
def test_string_that_is_neither_a_timestamp_nor_a_relative_time_is_rejected(text: str) -> None:
    error = rejected(lambda: parse(text))
    assert isinstance(error, InvalidRequest)
    assert error.message.startswith("trigger_at")
    assert repr(text) in error.message


@pytest.mark.parametrize("value", [1858809600.0, 1.5, True, False, None, [], ["+6h"], {"at": "+6h"}])
def test_value_of_another_json_type_is_rejected(value: object) -> None:
    # Given a float, a boolean, null, an array or an object
    error = rejected(lambda: parse(value))
    # Then the client is told what trigger_at must be
    assert isinstance(error, InvalidRequest)
    assert "trigger_at must be a Unix timestamp" in error.message


def test_error_names_the_field_it_was_given() -> None:
    with pytest.raises(InvalidRequest, match=r"^when "):
        parse_trigger_at("+6hx", NOW, HORIZON, field="when")


# -- properties ------------------------------------------------------------------------------------

instants = st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False)
timestamp_like = st.one_of(
    st.text(max_size=20),
    st.from_regex(r"\A\+?-?[0-9]{0,14}[mhdMHDx]?\Z"),
    st.integers(min_value=-(10**12), max_value=10**12).map(str),
    st.integers(min_value=0, max_value=100_000_000).map(lambda n: f"+{n}m"),
)


@settings(max_examples=300, deadline=None)
@given(value=timestamp_like, now=instants, horizon_days=st.integers(min_value=1, max_value=3650))
def test_anything_accepted_is_a_minute_between_now_and_the_horizon(value: str, now: float, horizon_days: int) -> None:
    # Given any string and any instant
    horizon = horizon_days * DAY
    current = int(now // 60) * 60
    # When the parser accepts it
    try:
        resolved = parse_trigger_at(value, now, horizon)
    except InvalidRequest:
        return
    # Then it is a minute boundary, not in the past, and within the horizon
    assert isinstance(resolved, int)
    assert resolved % 60 == 0
    assert current <= resolved <= current + horizon


@settings(max_examples=200, deadline=None)
@given(data=st.data(), unit=st.sampled_from(sorted(UNITS)), now=instants)
def test_relative_time_within_range_resolves_to_current_minute_plus_amount(
    data: st.DataObject, unit: str, now: float
) -> None:
    # Given any +<n><unit> within the horizon
    amount = data.draw(st.integers(min_value=0, max_value=HORIZON // UNITS[unit]))
    # When it is parsed
    resolved = parse(f"+{amount}{unit}", now=now)
    # Then it is the current minute plus n units
    assert resolved == int(now // 60) * 60 + amount * UNITS[unit]


@settings(max_examples=100, deadline=None)
@given(data=st.data(), unit=st.sampled_from(sorted(UNITS)))
def test_relative_time_past_the_horizon_is_always_rejected(data: st.DataObject, unit: str) -> None:
    amount = data.draw(st.integers(min_value=HORIZON // UNITS[unit] + 1, max_value=10**12 - 1))
    with pytest.raises(InvalidRequest, match="too far ahead"):
        parse(f"+{amount}{unit}")


@settings(max_examples=100, deadline=None)
@given(minutes_ahead=st.integers(min_value=0, max_value=HORIZON // 60), as_text=st.booleans())
def test_any_minute_within_the_horizon_is_accepted_unchanged(minutes_ahead: int, as_text: bool) -> None:
    timestamp = CURRENT_MINUTE + minutes_ahead * 60
    assert parse(str(timestamp) if as_text else timestamp) == timestamp


# -- check_can_run: what no dispatcher run (second 0 of each minute) could call --------------------


@pytest.mark.parametrize("second", [0, 0.001, 30, 59.999])
def test_current_minute_with_max_delay_1_can_never_run(second: float) -> None:
    # The current minute's run has started; the next, at CURRENT_MINUTE + 60, is max_delay late.
    error = rejected(lambda: check_can_run(CURRENT_MINUTE, 1, CURRENT_MINUTE + second))
    assert isinstance(error, InvalidRequest)
    assert error.message == (
        f"trigger_at {CURRENT_MINUTE} with max_delay 1 can never be called: the dispatcher runs at second 0 of "
        f"each minute, and at its next run ({CURRENT_MINUTE + 60}) max_delay has already run out; "
        'use a later trigger_at (e.g. "+1m") or a max_delay of 2 or more'
    )


@pytest.mark.parametrize(("trigger_at", "max_delay"), [(CURRENT_MINUTE, 2), (CURRENT_MINUTE + 60, 1)])
def test_an_entry_the_next_run_can_call_is_accepted(trigger_at: int, max_delay: int) -> None:
    check_can_run(trigger_at, max_delay, NOW)


@settings(max_examples=300, deadline=None)
@given(
    minutes_ahead=st.integers(0, 60 * 24 * 30),
    max_delay=st.integers(1, 1440),
    second=st.floats(0, 59.999),
)
def test_refused_exactly_when_max_delay_runs_out_by_the_next_run(
    minutes_ahead: int, max_delay: int, second: float
) -> None:
    trigger_at = CURRENT_MINUTE + 60 * minutes_ahead
    next_run = CURRENT_MINUTE + 60
    never = trigger_at + 60 * max_delay <= next_run
    try:
        check_can_run(trigger_at, max_delay, CURRENT_MINUTE + second)
        refused = False
    except InvalidRequest:
        refused = True
    assert refused == never
    assert refused == (minutes_ahead == 0 and max_delay == 1)
