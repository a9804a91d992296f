"""Recurrence: when a schedule's runs fall (cron or every, in a time zone), and what an outage missed."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from functools import cache
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from callme.errors import InvalidRequest
from callme.recurrence import CRON_ALIASES, MISSED_RUNS_LISTED, MissedRuns, Recurrence
from tests.unit.conftest import rejected

NEW_YORK, LISBON, LORD_HOWE = "America/New_York", "Europe/Lisbon", "Australia/Lord_Howe"
LONG_AGO = 0  # a start_at before every instant the tests use
HOUR = 3600


def at(text: str) -> int:
    """The Unix minute of an ISO 8601 time with its offset, e.g. "2026-03-08T03:00-04:00"."""
    return int(datetime.fromisoformat(text).timestamp())


def local(run: int, zone: str) -> str:
    """A run as the zone's wall-clock time with the offset in force, e.g. "2026-03-08T03:00-04:00"."""
    return datetime.fromtimestamp(run, ZoneInfo(zone)).isoformat(timespec="minutes")


def cron(expression: str, zone: str = "UTC", start_at: int = LONG_AGO, end_at: int | None = None) -> Recurrence:
    return Recurrence(cron=expression, timezone=zone, start_at=start_at, end_at=end_at)


def runs(recurrence: Recurrence, after: str, count: int) -> list[str]:
    """The next ``count`` runs after ``after`` (ISO with offset), as wall-clock times of the schedule's zone."""
    return [local(run, recurrence.timezone) for run in recurrence.next_runs(at(after), count)]


# -- cron syntax: Vixie semantics -----------------------------------------------------------------


def test_step_across_an_hour_restarts_at_minute_zero() -> None:
    # Given */7 (minutes 0, 7 ... 56) at 00:50 / Then 56, then 0 of the next hour, not 03
    assert runs(cron("*/7 * * * *"), "2026-01-01T00:50+00:00", 3) == [
        "2026-01-01T00:56+00:00",
        "2026-01-01T01:00+00:00",
        "2026-01-01T01:07+00:00",
    ]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 9-11 * * *", ["09:00", "10:00", "11:00", "09:00"]),  # range
        ("0 */6 * * *", ["06:00", "12:00", "18:00", "00:00"]),  # step over everything
        ("10-30/10 8 * * *", ["08:10", "08:20", "08:30", "08:10"]),  # step over a range
        ("5/20 8 * * *", ["08:05", "08:25", "08:45", "08:05"]),  # start/step: from 5 to the end
        ("20-20/15 8 * * *", ["08:20", "08:20"]),  # a one-value range with a step is that value
        ("0,15,45 8 * * *", ["08:00", "08:15", "08:45", "08:00"]),  # list
        ("0 8,12-13,20-23/3 * * *", ["08:00", "12:00", "13:00", "20:00", "23:00", "08:00"]),  # list of all kinds
    ],
)
def test_ranges_steps_and_lists(expression: str, expected: list[str]) -> None:
    found = runs(cron(expression), "2026-01-05T00:00+00:00", len(expected))
    assert [run[11:16] for run in found] == expected


def test_names_of_months_and_days_in_any_case_and_in_ranges() -> None:
    # Given weekdays 9:00 in January to March, spelled with names (2026-03-27 is a Friday)
    recurrence = cron("0 9 * jan-Mar MON-fri")
    # Then Friday 27, Monday 30, Tuesday 31 March, then nothing until January
    assert runs(recurrence, "2026-03-27T00:00+00:00", 4) == [
        "2026-03-27T09:00+00:00",
        "2026-03-30T09:00+00:00",
        "2026-03-31T09:00+00:00",
        "2027-01-01T09:00+00:00",
    ]


def test_sunday_is_day_of_week_0_7_and_sun() -> None:
    expected = runs(cron("0 0 * * 0"), "2026-01-01T00:00+00:00", 3)
    assert expected == ["2026-01-04T00:00+00:00", "2026-01-11T00:00+00:00", "2026-01-18T00:00+00:00"]
    assert runs(cron("0 0 * * 7"), "2026-01-01T00:00+00:00", 3) == expected
    assert runs(cron("0 0 * * SUN"), "2026-01-01T00:00+00:00", 3) == expected


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # Given the 13th or any Friday (Vixie: either day field matching is enough)
    # When counting from 2026-01-01 (a Thursday)
    # Then Fridays 2, 9, the 13th (a Tuesday), Friday 16
    assert runs(cron("0 0 13 * FRI"), "2026-01-01T00:00+00:00", 4) == [
        "2026-01-02T00:00+00:00",
        "2026-01-09T00:00+00:00",
        "2026-01-13T00:00+00:00",
        "2026-01-16T00:00+00:00",
    ]


def test_day_fields_are_both_required_when_one_starts_with_a_star() -> None:
    # Given the 1st, on days of the week */2 (Sun, Tue, Thu, Sat): Vixie counts "*/2" as unrestricted,
    # so a day must match both fields: the firsts that fall on those days
    assert runs(cron("0 0 1 * */2"), "2026-01-01T00:00+00:00", 3) == [
        "2026-02-01T00:00+00:00",  # Sunday
        "2026-03-01T00:00+00:00",  # Sunday
        "2026-08-01T00:00+00:00",  # Saturday
    ]


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("@yearly", ["2027-01-01T00:00", "2028-01-01T00:00"]),
        ("@annually", ["2027-01-01T00:00", "2028-01-01T00:00"]),
        ("@monthly", ["2026-02-01T00:00", "2026-03-01T00:00"]),
        ("@weekly", ["2026-01-11T00:00", "2026-01-18T00:00"]),
        ("@daily", ["2026-01-08T00:00", "2026-01-09T00:00"]),
        ("@midnight", ["2026-01-08T00:00", "2026-01-09T00:00"]),
        ("@hourly", ["2026-01-07T11:00", "2026-01-07T12:00"]),
        ("@DAILY", ["2026-01-08T00:00", "2026-01-09T00:00"]),
    ],
)
def test_aliases(alias: str, expected: list[str]) -> None:
    # Given Wednesday 2026-01-07 10:20 UTC
    found = runs(cron(alias), "2026-01-07T10:20+00:00", 2)
    assert found == [f"{run}+00:00" for run in expected]


def test_every_alias_is_listed_in_the_error_for_an_unknown_one() -> None:
    message = rejected(lambda: cron("@reboot")).message
    assert all(alias in message for alias in CRON_ALIASES)


def test_february_29_runs_in_leap_years_only_and_not_in_2100() -> None:
    assert runs(cron("0 0 29 2 *"), "2026-01-01T00:00+00:00", 3) == [
        "2028-02-29T00:00+00:00",
        "2032-02-29T00:00+00:00",
        "2036-02-29T00:00+00:00",
    ]
    # 2100 is not a leap year: eight years between two runs
    assert runs(cron("0 0 29 2 *"), "2097-01-01T00:00+00:00", 2) == ["2104-02-29T00:00+00:00", "2108-02-29T00:00+00:00"]


def test_february_29_in_a_time_zone() -> None:
    assert runs(cron("30 7 29 2 *", LISBON), "2026-01-01T00:00+00:00", 1) == ["2028-02-29T07:30+00:00"]


def test_the_31st_skips_months_that_have_fewer_days() -> None:
    found = runs(cron("0 0 31 * *"), "2026-01-01T00:00+00:00", 8)
    assert [run[:10] for run in found] == [
        "2026-01-31",
        "2026-03-31",
        "2026-05-31",
        "2026-07-31",
        "2026-08-31",
        "2026-10-31",
        "2026-12-31",
        "2027-01-31",
    ]


def test_next_runs_are_strictly_after_and_run_at_or_after_includes_the_minute() -> None:
    recurrence = cron("0 * * * *")
    eight = at("2026-01-01T08:00+00:00")
    assert recurrence.next_runs(eight, 2) == [eight + HOUR, eight + 2 * HOUR]
    assert recurrence.run_at_or_after(eight) == eight
    assert recurrence.run_at_or_after(eight + 60) == eight + HOUR


def test_next_runs_of_an_instant_inside_a_minute_count_from_that_minute() -> None:
    eight = at("2026-01-01T08:00+00:00")
    assert cron("* * * * *").next_runs(eight + 30, 1) == [eight + 60]


# -- time zones -------------------------------------------------------------------------------------


def test_cron_follows_the_wall_clock_of_its_time_zone() -> None:
    # Given 9:00 in Lisbon: 09:00 UTC in winter (WET), 08:00 UTC in summer (WEST)
    recurrence = cron("0 9 * * *", LISBON)
    assert recurrence.next_runs(at("2026-01-10T12:00+00:00"), 1) == [at("2026-01-11T09:00+00:00")]
    assert recurrence.next_runs(at("2026-07-10T12:00+00:00"), 1) == [at("2026-07-11T08:00+00:00")]


@pytest.mark.parametrize(
    ("zone", "expression", "after", "expected"),
    [
        # New York, 2026-03-08: 02:00 EST becomes 03:00 EDT
        (NEW_YORK, "30 2 * * *", "2026-03-07T12:00-05:00", ["2026-03-08T03:00-04:00", "2026-03-09T02:30-04:00"]),
        (
            NEW_YORK,
            "30 * * * *",
            "2026-03-08T01:00-05:00",
            ["2026-03-08T01:30-05:00", "2026-03-08T03:00-04:00", "2026-03-08T03:30-04:00"],
        ),
        # 02:00, 02:20, 02:40 do not exist and 03:00 does: one run at 03:00
        (
            NEW_YORK,
            "*/20 * * * *",
            "2026-03-08T01:30-05:00",
            ["2026-03-08T01:40-05:00", "2026-03-08T03:00-04:00", "2026-03-08T03:20-04:00"],
        ),
        # Lisbon, 2026-03-29: 01:00 WET becomes 02:00 WEST
        (LISBON, "30 1 * * *", "2026-03-28T12:00+00:00", ["2026-03-29T02:00+01:00", "2026-03-30T01:30+01:00"]),
        # Lord Howe, 2026-10-04: 02:00 (+10:30) becomes 02:30 (+11), a 30-minute gap
        (LORD_HOWE, "15 2 * * *", "2026-10-03T12:00+10:30", ["2026-10-04T02:30+11:00", "2026-10-05T02:15+11:00"]),
        (
            LORD_HOWE,
            "*/10 2 * * *",
            "2026-10-04T01:55+10:30",
            ["2026-10-04T02:30+11:00", "2026-10-04T02:40+11:00", "2026-10-04T02:50+11:00", "2026-10-05T02:00+11:00"],
        ),
    ],
)
def test_spring_forward_runs_at_the_first_minute_after_the_gap(
    zone: str, expression: str, after: str, expected: list[str]
) -> None:
    assert runs(cron(expression, zone), after, len(expected)) == expected


@pytest.mark.parametrize(
    ("zone", "expression", "after", "expected"),
    [
        # New York, 2026-11-01: 02:00 EDT becomes 01:00 EST; 01:00-01:59 happens twice
        (NEW_YORK, "30 1 * * *", "2026-10-31T12:00-04:00", ["2026-11-01T01:30-04:00", "2026-11-02T01:30-05:00"]),
        (
            NEW_YORK,
            "0 * * * *",
            "2026-11-01T00:30-04:00",
            ["2026-11-01T01:00-04:00", "2026-11-01T02:00-05:00", "2026-11-01T03:00-05:00"],
        ),
        # Lisbon, 2026-10-25: 02:00 WEST becomes 01:00 WET
        (LISBON, "30 1 * * *", "2026-10-24T12:00+01:00", ["2026-10-25T01:30+01:00", "2026-10-26T01:30+00:00"]),
        # Lord Howe, 2026-04-05: 02:00 (+11) becomes 01:30 (+10:30); 01:30-01:59 happens twice
        (LORD_HOWE, "45 1 * * *", "2026-04-04T12:00+11:00", ["2026-04-05T01:45+11:00", "2026-04-06T01:45+10:30"]),
        (
            LORD_HOWE,
            "*/15 1 * * *",
            "2026-04-05T01:20+11:00",
            ["2026-04-05T01:30+11:00", "2026-04-05T01:45+11:00", "2026-04-06T01:00+10:30"],
        ),
    ],
)
def test_fall_back_runs_a_repeated_time_once_at_its_first_occurrence(
    zone: str, expression: str, after: str, expected: list[str]
) -> None:
    assert runs(cron(expression, zone), after, len(expected)) == expected


def test_counting_from_inside_the_second_pass_of_a_repeated_hour() -> None:
    # Given 01:10 EST, the second pass of 01:00-01:59 (01:30 already ran in the first pass, EDT)
    # Then the next run of */30 is 02:00 EST, not a second 01:30
    assert runs(cron("*/30 * * * *", NEW_YORK), "2026-11-01T01:10-05:00", 2) == [
        "2026-11-01T02:00-05:00",
        "2026-11-01T02:30-05:00",
    ]


# -- every ------------------------------------------------------------------------------------------


def test_every_runs_at_start_at_plus_whole_intervals() -> None:
    # Given every 15 minutes from 10:07
    start = at("2026-01-01T10:07+00:00")
    recurrence = Recurrence(every="15m", start_at=start)
    # Then the runs are 10:07, 10:22 ... whatever minute one asks from
    assert recurrence.next_runs(start - 3 * HOUR, 2) == [start, start + 900]
    assert recurrence.next_runs(at("2026-01-01T10:30+00:00"), 2) == [start + 1800, start + 2700]
    assert recurrence.next_runs(start, 1) == [start + 900]
    assert recurrence.run_at_or_after(start + 900) == start + 900


def test_every_day_is_24_hours_so_its_local_time_moves_across_dst() -> None:
    # Given every 1d from 09:00 EST the day before New York springs forward
    recurrence = Recurrence(every="1d", timezone=NEW_YORK, start_at=at("2026-03-07T09:00-05:00"))
    # Then the next run is 24 hours later: 10:00 EDT
    assert runs(recurrence, "2026-03-07T09:00-05:00", 2) == ["2026-03-08T10:00-04:00", "2026-03-09T10:00-04:00"]


def test_every_ignores_the_time_zone() -> None:
    start = at("2026-10-03T12:00+00:00")
    in_utc = Recurrence(every="7h", start_at=start).next_runs(start, 10)
    assert Recurrence(every="7h", timezone=LORD_HOWE, start_at=start).next_runs(start, 10) == in_utc


@pytest.mark.parametrize(
    ("every", "seconds"), [("1m", 60), ("90m", 5400), ("6h", 21600), ("2d", 172800), ("365d", 365 * 86400)]
)
def test_every_units(every: str, seconds: int) -> None:
    start = at("2026-01-01T00:00+00:00")
    assert Recurrence(every=every, start_at=start).next_runs(start, 2) == [start + seconds, start + 2 * seconds]


# -- start_at and end_at ----------------------------------------------------------------------------


def test_runs_start_at_start_at_and_end_at_end_at_both_included() -> None:
    start, end = at("2026-01-01T10:00+00:00"), at("2026-01-01T12:00+00:00")
    hourly = cron("0 * * * *", start_at=start, end_at=end)
    for recurrence in (hourly, Recurrence(every="1h", start_at=start, end_at=end)):
        assert recurrence.next_runs(start - 5 * HOUR, 10) == [start, start + HOUR, end]
        assert recurrence.next_runs(end, 1) == []
        assert recurrence.run_at_or_after(end + 60) is None


def test_start_at_defaults_to_the_creation_minute_and_timezone_to_utc() -> None:
    created = at("2026-01-01T10:07+00:00")
    recurrence = Recurrence.parse(every="1h", created_at=created)
    assert recurrence.start_at == created
    assert recurrence.timezone == "UTC"
    assert recurrence.next_runs(created - 60, 2) == [created, created + HOUR]


def test_a_given_start_at_is_kept() -> None:
    start = at("2026-02-01T00:00+00:00")
    recurrence = Recurrence.parse(cron="0 0 * * *", start_at=start, created_at=start - 86400)
    assert recurrence.start_at == start


# -- bad input ----------------------------------------------------------------------------------------

START = at("2026-01-01T00:00+00:00")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cron": "61 * * * *"}, "cron '61 * * * *': minute 61 is out of range 0-59"),
        ({"cron": "0 24 * * *"}, "cron '0 24 * * *': hour 24 is out of range 0-23"),
        ({"cron": "0 0 0 * *"}, "day-of-month 0 is out of range 1-31"),
        ({"cron": "0 0 32 * *"}, "day-of-month 32 is out of range 1-31"),
        ({"cron": "0 0 * 13 *"}, "month 13 is out of range 1-12"),
        ({"cron": "0 0 * * 8"}, "day-of-week 8 is out of range 0-7"),
        ({"cron": "0 0 * * 1-9"}, "day-of-week 9 is out of range 0-7"),
        ({"cron": "* * *"}, "cron '* * *': has 3 fields, not 5 (minute hour day-of-month month day-of-week)"),
        ({"cron": "0 0 * * * *"}, "has 6 fields, not 5"),
        ({"cron": "@fortnightly"}, "cron '@fortnightly': unknown alias; use one of @yearly"),
        ({"cron": "@reboot"}, "unknown alias"),
        ({"cron": "0 0 30 2 *"}, "cron '0 0 30 2 *': can never run"),
        ({"cron": "0 0 31 4,6,9,11 *"}, "can never run"),
        ({"cron": "5-1 * * * *"}, "minute range 5-1 goes backwards"),
        ({"cron": "*/0 * * * *"}, "minute step /0 must be at least 1"),
        ({"cron": "1,,2 * * * *"}, "minute list '1,,2' has an empty item"),
        ({"cron": "0 0 L * *"}, "day-of-month 'L' is not a number"),
        ({"cron": "0 0 * * 5L"}, "day-of-week '5L' is not a number or a name"),
        ({"cron": "0 0 * * 1#2"}, "day-of-week '1#2' is not valid"),
        ({"cron": "0 0 ? * *"}, "day-of-month '?' is not valid"),
        ({"cron": "H * * * *"}, "minute 'H' is not a number"),
        ({"cron": "0 0 * * MONDAY"}, "day-of-week 'MONDAY' is not a number or a name; use numbers 0-7, names SUN-SAT"),
        ({"cron": "0 0 * JAN-FOO *"}, "month 'FOO' is not a number or a name; use numbers 1-12, names JAN-DEC"),
        ({"cron": "0 MON * * *"}, "hour 'MON' is not a number"),
        ({"cron": "*-5 * * * *"}, "minute '*-5' is not valid"),
        ({"cron": ""}, "cron must not be empty"),
        ({"cron": "   "}, "cron must not be empty"),
        ({"cron": 5}, "cron must be a string"),
        ({"cron": "0 " * 150}, "cron is too long"),
        ({"cron": "0 * * * *", "every": "1h"}, "exactly one of cron and every, not both"),
        ({}, "a schedule needs cron"),
        ({"every": "0m"}, "every '0m' is too short: at least 1m"),
        ({"every": "0d"}, "too short"),
        ({"every": "366d"}, "every '366d' is too long: at most 365d"),
        ({"every": "999999999999d"}, "too long"),
        ({"every": "+5m"}, "every '+5m' is not an interval"),
        ({"every": "5"}, "is not an interval"),
        ({"every": "5s"}, "is not an interval"),
        ({"every": "1.5h"}, "is not an interval"),
        ({"every": "-1h"}, "is not an interval"),
        ({"every": 60}, "every must be a string"),
        ({"every": "1h", "timezone": "Mars/Olympus"}, "timezone 'Mars/Olympus' is not an IANA time zone name"),
        ({"every": "1h", "timezone": "europe/lisbon"}, "is not an IANA time zone name"),
        ({"every": "1h", "timezone": "Europe"}, "is not an IANA time zone name"),
        ({"every": "1h", "timezone": "../../etc/passwd"}, "is not an IANA time zone name"),
        ({"every": "1h", "timezone": "localtime"}, "is not an IANA time zone name"),  # the machine's, not IANA's
        ({"every": "1h", "timezone": ""}, "timezone must not be empty"),
        ({"every": "1h", "timezone": 1}, "timezone must be a string"),
        ({"every": "1h", "start_at": START + 30}, "start_at 1767225630 is not on a minute boundary"),
        ({"every": "1h", "end_at": START - 60}, f"end_at {START - 60} is before start_at {START}"),
        ({"cron": "0 0 1 1 *", "start_at": START + 60, "end_at": START + 300 * 86400}, "never runs between start_at"),
        ({"every": "1d", "start_at": START, "end_at": START}, None),  # one run, at start_at: valid
        ({"cron": "0 0 1 1 *", "start_at": START, "end_at": START}, None),
    ],
)
def test_bad_timing_is_refused_naming_the_field(fields: dict[str, Any], message: str | None) -> None:
    def build() -> Recurrence:
        return Recurrence.parse(**{"start_at": START, **fields}, created_at=START)

    if message is None:
        assert build().next_runs(START - 60, 5) == [START]
        return
    error = rejected(build)
    assert isinstance(error, InvalidRequest)
    assert isinstance(error, InvalidRequest)
    assert message in error.message


# -- the outage rule --------------------------------------------------------------------------------


def test_nothing_missed_when_no_run_fell_between_handled_and_now() -> None:
    recurrence = cron("0 * * * *")
    ten = at("2026-01-01T10:00+00:00")
    assert recurrence.missed_runs(handled=ten, now=ten + 59 * 60, max_delay=10) == MissedRuns()
    assert recurrence.missed_runs(handled=ten, now=ten, max_delay=10) == MissedRuns()


def test_only_the_most_recent_missed_run_is_called_the_others_are_skipped() -> None:
    # Given */5, last handled at 10:00, and now 10:17 with max_delay 10 minutes
    ten = at("2026-01-01T10:00+00:00")
    missed = cron("*/5 * * * *").missed_runs(handled=ten, now=ten + 17 * 60, max_delay=10)
    # Then 10:15 is called; 10:05 and 10:10 are skipped
    assert missed == MissedRuns(call=ten + 15 * 60, skip=(ten + 5 * 60, ten + 10 * 60))


def test_the_run_of_the_current_minute_is_the_one_called() -> None:
    ten = at("2026-01-01T10:00+00:00")
    missed = cron("*/5 * * * *").missed_runs(handled=ten, now=ten + 5 * 60, max_delay=1)
    assert missed == MissedRuns(call=ten + 5 * 60)


def test_the_most_recent_run_is_skipped_too_once_its_max_delay_ran_out() -> None:
    # Given hourly runs at 11:00 and 12:00 missed; max_delay 10 minutes
    ten = at("2026-01-01T10:00+00:00")
    recurrence = Recurrence(every="1h", start_at=ten)
    # When it is 12:09, 12:00 may still be called; at 12:10 (its deadline) it may not
    eleven, noon = ten + HOUR, ten + 2 * HOUR
    assert recurrence.missed_runs(ten, noon + 9 * 60, max_delay=10) == MissedRuns(call=noon, skip=(eleven,))
    assert recurrence.missed_runs(ten, noon + 10 * 60, max_delay=10) == MissedRuns(skip=(eleven, noon))


def test_a_year_long_outage_of_every_minute_lists_a_bounded_number_of_skipped_runs() -> None:
    # Given "* * * * *" not handled for a year (525,600 runs)
    handled, now = at("2025-01-01T00:00+00:00"), at("2026-01-01T00:00+00:00")
    for recurrence in (cron("* * * * *"), Recurrence(every="1m", start_at=LONG_AGO)):
        missed = recurrence.missed_runs(handled, now, max_delay=10)
        # Then now's run is called, the 100 runs before it are listed as skipped, and the rest are only flagged
        assert missed.call == now
        assert missed.skip == tuple(range(now - MISSED_RUNS_LISTED * 60, now, 60))
        assert missed.more_skipped


def test_missed_runs_stay_within_start_at_and_end_at() -> None:
    start, end = at("2026-01-01T10:00+00:00"), at("2026-01-01T12:00+00:00")
    hourly = cron("0 * * * *", start_at=start, end_at=end)
    for recurrence in (hourly, Recurrence(every="1h", start_at=start, end_at=end)):
        missed = recurrence.missed_runs(handled=LONG_AGO, now=end + 5 * HOUR, max_delay=10)
        assert missed == MissedRuns(skip=(start, start + HOUR, end))


def test_missed_runs_across_fall_back_count_the_repeated_hour_once() -> None:
    # Given hourly :30 in New York, handled until 00:00 EDT and now 03:00 EST (the 01:00 hour happened twice)
    missed = cron("30 * * * *", NEW_YORK).missed_runs(
        handled=at("2026-11-01T00:00-04:00"), now=at("2026-11-01T03:00-05:00"), max_delay=10
    )
    assert [local(run, NEW_YORK) for run in missed.skip] == [
        "2026-11-01T00:30-04:00",
        "2026-11-01T01:30-04:00",
        "2026-11-01T02:30-05:00",
    ]
    assert missed.call is None


def test_missed_runs_from_inside_the_second_pass_of_a_repeated_hour() -> None:
    # Given now is 01:40 EST, in the second pass of 01:00-01:59: 01:45 EDT, a wall-clock time after
    # now's, happened 55 minutes ago in the first pass
    missed = cron("*/15 * * * *", NEW_YORK).missed_runs(
        handled=at("2026-11-01T00:50-04:00"), now=at("2026-11-01T01:40-05:00"), max_delay=120
    )
    # Then it is the most recent missed run, and nothing of the second pass is a run
    assert [local(run, NEW_YORK) for run in missed.skip] == [
        "2026-11-01T01:00-04:00",
        "2026-11-01T01:15-04:00",
        "2026-11-01T01:30-04:00",
    ]
    assert missed.call == at("2026-11-01T01:45-04:00")


def test_missed_runs_across_spring_forward() -> None:
    missed = cron("*/20 * * * *", NEW_YORK).missed_runs(
        handled=at("2026-03-08T01:30-05:00"), now=at("2026-03-08T03:10-04:00"), max_delay=15
    )
    assert missed == MissedRuns(call=at("2026-03-08T03:00-04:00"), skip=(at("2026-03-08T01:40-05:00"),))


# -- the stored form --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "recurrence",
    [
        Recurrence(cron="0 9 * * MON-FRI", timezone=LISBON, start_at=START),
        Recurrence(every="15m", start_at=START, end_at=START + 86400),
        Recurrence(cron="@daily", timezone=LORD_HOWE, start_at=START, end_at=START + 86400),
    ],
)
def test_stored_form_is_plain_json_and_reads_back_equal(recurrence: Recurrence) -> None:
    stored = json.loads(json.dumps(recurrence.to_dict()))
    assert Recurrence.from_dict(stored) == recurrence


def test_stored_form_leaves_out_absent_fields() -> None:
    assert Recurrence(every="15m", start_at=START).to_dict() == {"every": "15m", "timezone": "UTC", "start_at": START}


def test_text_is_stored_with_its_spaces_tidied() -> None:
    recurrence = Recurrence.parse(cron="  0   9 * *\tMON ", created_at=START)
    assert recurrence.to_dict()["cron"] == "0 9 * * MON"


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        ({"cron": "61 * * * *", "start_at": START}, "minute 61 is out of range"),
        ({"every": "1h"}, "start_at must be a Unix timestamp"),
        ({"every": "1h", "start_at": "1767225600"}, "start_at must be a Unix timestamp"),
        ({"every": "1h", "start_at": START, "end_at": True}, "end_at must be a Unix timestamp"),
        ({"every": "1h", "start_at": START, "paused": False}, "a schedule has no field 'paused'"),
    ],
)
def test_reading_back_checks_what_was_stored(stored: dict[str, Any], message: str) -> None:
    assert message in rejected(lambda: Recurrence.from_dict(stored)).message


# -- properties: against an independent brute-force matcher ----------------------------------------

PROPERTY_ZONES = ("UTC", NEW_YORK, LISBON, LORD_HOWE, "Asia/Kolkata", "America/St_Johns", "Pacific/Chatham")
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
FIRST, LAST = at("2024-01-01T00:00+00:00"), at("2030-01-01T00:00+00:00")
WINDOW = 180  # minutes brute-forced at each end of the gap between two runs


def spell(value: int, position: int, named: bool) -> str:
    if named and position == 3:
        return MONTHS[value - 1]
    if named and position == 4 and value < 7:
        return DAYS[value]
    return str(value)


@st.composite
def cron_items(draw: st.DrawFn, position: int) -> str:
    low, high = BOUNDS[position]
    kind = draw(st.sampled_from(("*", "*/step", "value", "range", "range/step", "value/step")))
    if kind == "*":
        return kind
    step = draw(st.integers(1, high - low + 2))
    if kind == "*/step":
        return f"*/{step}"
    named = draw(st.booleans())
    first = draw(st.integers(low, high))
    a = spell(first, position, named)
    if kind == "value":
        return a
    if kind == "value/step":
        return f"{a}/{step}"
    b = spell(draw(st.integers(first, high)), position, named)
    return f"{a}-{b}" if kind == "range" else f"{a}-{b}/{step}"


@st.composite
def cron_expressions(draw: st.DrawFn) -> str:
    fields = []
    for position in range(5):
        # Day and month fields are often "*", so that runs are near enough to brute-force between
        if position >= 2 and draw(st.booleans()):
            fields.append("*")
        else:
            fields.append(",".join(draw(st.lists(cron_items(position), min_size=1, max_size=2))))
    return " ".join(fields)


def expand(field: str, position: int) -> set[int]:
    low, high = BOUNDS[position]
    names = {name: number for number, name in enumerate(MONTHS, 1) if position == 3}
    names.update({name: number for number, name in enumerate(DAYS) if position == 4})
    values: set[int] = set()
    for item in field.split(","):
        span, _, step = item.partition("/")
        if span == "*":
            first, last = low, high
        else:
            first_text, _, last_text = span.partition("-")
            first = int(names.get(first_text, first_text))
            last = int(names.get(last_text, last_text)) if last_text else (high if step else first)
        values.update(range(first, last + 1, int(step or 1)))
    return values


class Matcher:
    """Vixie cron's rule, written independently of the module: does a wall-clock minute match?"""

    def __init__(self, expression: str) -> None:
        fields = expression.split()
        self.minutes, self.hours, self.days, self.months = (expand(fields[i], i) for i in range(4))
        self.weekdays = {day % 7 for day in expand(fields[4], 4)}
        self.either_day = not (fields[2].startswith("*") or fields[4].startswith("*"))

    def matches(self, wall: datetime) -> bool:
        on_day, on_weekday = wall.day in self.days, wall.isoweekday() % 7 in self.weekdays
        day = (on_day or on_weekday) if self.either_day else (on_day and on_weekday)
        return day and wall.minute in self.minutes and wall.hour in self.hours and wall.month in self.months


def is_run(matcher: Matcher, minute: int, zone: ZoneInfo) -> bool:
    """Is there a run at this Unix minute, by DESIGN.md's rules, found by looking at the clock?

    Yes when its wall-clock time matches and is not the second pass of a repeated hour, or when the
    clock just jumped forward over wall-clock times of which one matches.
    """
    wall = datetime.fromtimestamp(minute, zone)
    if wall.fold == 0 and matcher.matches(wall.replace(tzinfo=None)):
        return True
    skipped = datetime.fromtimestamp(minute - 60, zone).replace(tzinfo=None) + timedelta(minutes=1)
    while skipped < wall.replace(tzinfo=None):
        if matcher.matches(skipped):
            return True
        skipped += timedelta(minutes=1)
    return False


@cache
def transitions(zone: str) -> tuple[int, ...]:
    """The instants (Unix minutes) at which ``zone`` changes its offset between FIRST and LAST."""
    tz = ZoneInfo(zone)
    found = []
    for day in range(FIRST, LAST, 86400):
        if tz.utcoffset(datetime.fromtimestamp(day, tz)) != tz.utcoffset(datetime.fromtimestamp(day + 86400, tz)):
            low, high = day, day + 86400
            while high - low > 60:
                middle = (low + high) // 120 * 60
                same = tz.utcoffset(datetime.fromtimestamp(middle, tz)) == tz.utcoffset(datetime.fromtimestamp(low, tz))
                low, high = (middle, high) if same else (low, middle)
            found.append(high)
    return tuple(found)


@st.composite
def zones_and_instants(draw: st.DrawFn) -> tuple[str, int]:
    """A zone and a Unix minute, most often a few hours around one of the zone's DST changes."""
    zone = draw(st.sampled_from(PROPERTY_ZONES))
    changes = transitions(zone)
    if changes and draw(st.integers(0, 3)):
        return zone, draw(st.sampled_from(changes)) + 60 * draw(st.integers(-300, 300))
    return zone, 60 * draw(st.integers(FIRST // 60, LAST // 60))


def test_the_property_zones_have_the_transitions_the_property_aims_at() -> None:
    assert len(transitions(NEW_YORK)) == 12
    assert len(transitions(LORD_HOWE)) == 12
    assert transitions("UTC") == ()


@settings(max_examples=150, deadline=None)
@given(expression=cron_expressions(), where=zones_and_instants())
def test_runs_increase_each_matches_and_none_is_skipped(expression: str, where: tuple[str, int]) -> None:
    zone, after = where
    try:
        recurrence = cron(expression, zone)
    except InvalidRequest as error:
        assume("can never run" not in error.message)
        raise
    matcher, tz = Matcher(expression), ZoneInfo(zone)
    found = recurrence.next_runs(after, 4)
    assert len(found) == 4
    for earlier, later in pairwise([after, *found]):
        assert earlier < later
        assert later % 60 == 0
        assert is_run(matcher, later, tz), f"{local(later, zone)} is not a run of {expression!r}"
        gap = range(earlier + 60, later, 60)
        checked = gap if len(gap) <= 2 * WINDOW else [*gap[:WINDOW], *gap[-WINDOW:]]
        skipped = [minute for minute in checked if is_run(matcher, minute, tz)]
        assert not skipped, f"{local(skipped[0], zone)} was skipped by {expression!r}"


@settings(max_examples=100, deadline=None)
@given(
    expression=st.one_of(cron_expressions(), st.sampled_from(("1m", "7m", "1h", "90m"))),
    where=zones_and_instants(),
    span=st.integers(0, 240),
    max_delay=st.integers(1, 60),
    limit=st.integers(0, 5),
)
def test_missed_runs_are_the_runs_between_handled_and_now(
    expression: str, where: tuple[str, int], span: int, max_delay: int, limit: int
) -> None:
    zone, handled = where
    now = handled + span * 60
    timing = {"every": expression} if expression[0].isdigit() and " " not in expression else {"cron": expression}
    try:
        recurrence = Recurrence(**timing, timezone=zone, start_at=FIRST)
    except InvalidRequest as error:
        assume("can never run" not in error.message)
        raise
    between = [run for run in recurrence.next_runs(handled, span + 1) if run <= now]
    missed = recurrence.missed_runs(handled, now, max_delay, limit)
    if not between:
        assert missed == MissedRuns()
        return
    *earlier, latest = between
    callable_ = now < latest + max_delay * 60
    skipped = earlier if callable_ else between
    assert missed.call == (latest if callable_ else None)
    assert list(missed.skip) == (skipped[-limit:] if limit else [])
    assert missed.more_skipped == (len(skipped) > limit)
