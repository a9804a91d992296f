"""The web console in a real browser: headless Chromium (Debian's package) driven by Playwright.

One local stack and one browser serve the whole module. Entries are made through the API, a minute is
dispatched with the tick hook to a loopback sink that answers 200 for some and 500 or 404 for others,
and the page is checked as a person would use it. Every test fails on any error in the browser's
console or any uncaught exception in the page, except the failed requests the test provokes on
purpose, and on any request that leaves the stack's origin. Screenshots go to
.pytest_cache/console-screenshots/ (look at them).

The last hour's charts are drawn from the real /stats of a stack whose dispatcher ran in the current
minute. The Schedules tab reads the real GET /schedule/.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import Sink, serve_sink
from tests.e2e.conftest import ROOT, LocalStack, next_minute

playwright_api = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, expect, sync_playwright  # noqa: E402

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = ROOT / ".pytest_cache" / "console-screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}
ZONE = "Asia/Kolkata"  # UTC+5:30: a local time that cannot be mistaken for UTC


@dataclass
class Seeded:
    """The entries the module's stack holds, by role."""

    minute: int
    keys: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    with serve_sink() as recorder:
        yield recorder


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    started = LocalStack(tmp_path_factory.mktemp("console") / "state").start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def seeded(stack: LocalStack, sink: Sink) -> Seeded:
    """Entries in every state: two called successfully, two failed (500 after a retry, 404), pending ones."""
    minute = next_minute()
    seeded = Seeded(minute)
    for name, path, statuses, extra in (
        ("paid-invoice", "/ok", (200,), {"callback_method": "POST", "payload": '{"invoice": 42}'}),
        ("welcome-mail", "/ok2", (200,), {}),
        ("nightly-report", "/broken", (500,), {"retry": 1}),
        ("old-hook", "/gone", (404,), {"retry": 3}),
    ):
        stack.put(name, trigger_at=minute, callback=sink.on(path, *statuses), **extra)
        seeded.keys[name] = f"{name}@{minute}"
    for name in ("to-cancel", "upcoming"):
        stack.put(name, trigger_at=minute + 7200, callback="https://example.com/hooks/later")
        seeded.keys[name] = f"{name}@{minute + 7200}"
    report = stack.tick(minute + 1)
    assert (report["succeeded"], report["failed"]) == (2, 2), report
    return seeded


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (as root), or apt-get install it")
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


class Watched:
    """A page whose console errors, uncaught exceptions and off-origin requests are collected."""

    def __init__(self, page: Page, origin: str) -> None:
        self.page = page
        self.origin = origin
        self.problems: list[str] = []
        self.expected: list[tuple[str, str]] = []  # (a part of the URL, a part of the message)
        self.requests: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        page.on("request", lambda request: self.requests.append(request.url))

    def expect_failure(self, url_part: str, message_part: str) -> None:
        """A failed request the test provokes: the browser logs it as an error, and that is fine."""
        self.expected.append((url_part, message_part))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type not in ("error", "warning"):
            return
        url = message.location.get("url", "")
        if any(part in url and text in message.text for part, text in self.expected):
            return
        self.problems.append(f"{message.type}: {message.text} ({url})")

    def open(self, hash_: str = "") -> Page:
        self.page.goto(f"{self.origin}/console{hash_}")
        return self.page

    def check(self) -> None:
        assert not self.problems, "the browser reported:\n" + "\n".join(self.problems)
        outside = [url for url in self.requests if not url.startswith(self.origin + "/")]
        assert not outside, f"requests outside the API's origin: {outside}"


@pytest.fixture
def watched(browser: Browser, stack: LocalStack, seeded: Seeded) -> Iterator[Callable[..., Watched]]:
    contexts = []
    pages: list[Watched] = []

    def open_page(viewport: dict[str, int] = DESKTOP, origin: str | None = None, **options: Any) -> Watched:
        context = browser.new_context(viewport=viewport, locale="en-US", timezone_id=ZONE, **options)
        contexts.append(context)
        page = Watched(context.new_page(), origin or stack.url)
        pages.append(page)
        return page

    yield open_page
    try:
        for page in pages:
            page.check()
    finally:
        for context in contexts:
            context.close()


def shot(page: Page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def row(page: Page, name: str) -> Any:
    return page.locator("#entries-body tr").filter(has=page.get_by_role("link", name=name, exact=True))


def local_text(seconds: float) -> str:
    """The minute as the page shows it in ZONE (en-US, medium date, short time)."""
    moment = datetime.fromtimestamp(seconds, ZoneInfo(ZONE))
    return f"{moment:%b} {moment.day}, {moment.year}, {moment.hour % 12 or 12}:{moment:%M} {moment:%p}"


def plain(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\u202f", " ")).strip()


# -- the list ---------------------------------------------------------------------------------------


def test_the_list_shows_each_entry_with_state_time_host_attempts_status_and_lateness(
    watched: Callable[..., Watched], stack: LocalStack, seeded: Seeded
) -> None:
    page = watched().open()
    expect(row(page, "paid-invoice")).to_have_count(1)
    shot(page, "entries")
    expected = {
        "paid-invoice": ("successful", "1", "200"),
        "welcome-mail": ("successful", "1", "200"),
        "nightly-report": ("failed", "2", "500"),
        "old-hook": ("failed", "1", "404"),
        "to-cancel": ("pending", "0", "—"),
        "upcoming": ("pending", "0", "—"),
    }
    for name, (state, attempts, status) in expected.items():
        cells = row(page, name).locator("td")
        entry = stack.entry(seeded.keys[name])
        expect(cells.nth(1)).to_have_text(state)
        assert plain(cells.nth(2).inner_text()) == local_text(entry["trigger_at"])
        assert cells.nth(2).locator("time").get_attribute("title") == (
            datetime.fromtimestamp(entry["trigger_at"], UTC).strftime("%Y-%m-%d %H:%M UTC")
        )
        host = "example.com" if state == "pending" else stack_sink_host(entry["callback"])
        expect(cells.nth(3)).to_have_text(host)
        expect(cells.nth(4)).to_have_text(attempts)
        expect(cells.nth(5)).to_have_text(status)
        lateness = cells.nth(6).inner_text()
        if state == "pending":
            assert lateness == "—"
        else:
            late = entry["executed_at"] - entry["trigger_at"]
            assert lateness == js_span(late), (name, late)


def js_span(seconds: float) -> str:
    """A lateness under a minute as the console writes it: JavaScript's Math.round and toFixed(1)
    round a tie up, on the double's exact value (Python's round and format round a tie to even)."""
    if seconds < 1:
        return f"{math.floor(seconds * 1000 + 0.5)} ms"
    return f"{Decimal(seconds).quantize(Decimal('0.1'), ROUND_HALF_UP)} s"


def stack_sink_host(callback: str) -> str:
    return callback.split("/")[2]


def test_filters_by_state_name_and_upcoming(watched: Callable[..., Watched], stack: LocalStack, seeded: Seeded) -> None:
    watch = watched()
    watch.expect_failure("/status/nobody-here", "404")
    page = watch.open()
    expect(row(page, "paid-invoice")).to_have_count(1)
    page.select_option("#filter-state", "failed")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"#/entries\?state=failed$"))
    names = page.locator("#entries-body tr td:first-child a")
    expect(names).to_have_text(["nightly-report", "old-hook"])
    expect(page.locator("#entries-summary")).to_contain_text("2 failed entries")

    page.select_option("#filter-state", "")
    page.fill("#filter-name", "welcome-mail")
    page.keyboard.press("Enter")
    expect(names).to_have_text(["welcome-mail"])

    # Every entry here is in the future (PUT refuses past minutes; the tick hook moved only the
    # dispatcher's clock), so future_only is checked as sent, against the API's own answer.
    page.fill("#filter-name", "")
    page.check("#filter-future")
    with page.expect_request(re.compile(r"/status/\?.*future_only=true")):
        page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"#/entries\?future_only=true$"))
    upcoming = stack.request("GET", "/status/?future_only=true&limit=50").json()["tasks"]
    expect(names).to_have_text([task["task_name"] for task in upcoming])

    page.fill("#filter-name", "nobody-here")
    page.uncheck("#filter-future")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#entries-empty")).to_have_text("Task nobody-here has no entries.")


def test_a_long_list_is_paged_through_next(watched: Callable[..., Watched], stack_factory: Any) -> None:
    own = stack_factory()  # a stack of its own, so that the other tests' lists stay one page long
    first = next_minute() + 3600
    for i in range(55):  # the console asks for 50 a page
        own.put("bulk", trigger_at=first + 60 * i, callback="https://example.com/bulk")
    page = watched(origin=own.url).open("#/entries?name=bulk")
    rows = page.locator("#entries-body tr")
    expect(rows).to_have_count(50)
    expect(page.locator("#entries-summary")).to_have_text("50 entries of task bulk; more below")
    page.get_by_role("button", name="Load more").click()
    expect(rows).to_have_count(55)
    expect(page.get_by_role("button", name="Load more")).to_be_hidden()
    expect(page.locator("#entries-summary")).to_have_text("55 entries of task bulk")


# -- one entry --------------------------------------------------------------------------------------


def test_a_successful_entry_shows_its_call_on_the_timeline(
    watched: Callable[..., Watched], stack: LocalStack, seeded: Seeded
) -> None:
    page = watched().open()
    page.get_by_role("link", name="paid-invoice", exact=True).click()
    expect(page.locator("#entry-title")).to_have_text(seeded.keys["paid-invoice"])
    entry = stack.entry(seeded.keys["paid-invoice"])
    [attempt] = entry["history"]
    steps = page.locator(".timeline li")
    expect(steps).to_have_count(2)
    expect(steps.nth(0).locator(".what")).to_have_text("Attempt 1: HTTP 200")
    expect(steps.nth(0)).to_have_class("ok")
    expect(steps.nth(0).locator(".when")).to_contain_text(f"took {attempt['duration_ms']} ms")
    assert steps.nth(0).locator("time").get_attribute("title") == (
        datetime.fromtimestamp(attempt["at"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    )
    expect(steps.nth(1).locator(".what")).to_have_text("Ended successful")
    expect(page.locator("#entry-body")).to_contain_text("POST http://127.0.0.1")
    expect(page.locator("#entry-body")).to_contain_text('{"invoice": 42}')
    expect(page.get_by_role("button", name="Cancel…")).to_be_hidden()
    shot(page, "entry-successful")


def test_a_failed_entry_shows_every_attempt_and_why(
    watched: Callable[..., Watched], stack: LocalStack, seeded: Seeded
) -> None:
    page = watched().open(f"#/entry/{seeded.keys['nightly-report']}")
    steps = page.locator(".timeline li")
    expect(steps).to_have_count(3)
    expect(steps.nth(0).locator(".what")).to_have_text("Attempt 1: HTTP 500 (expected 200)")
    expect(steps.nth(1).locator(".what")).to_have_text("Attempt 2: HTTP 500 (expected 200)")
    expect(steps.nth(2).locator(".what")).to_have_text("Ended failed")
    for i in range(2):
        expect(steps.nth(i)).to_have_class("bad")
    expect(steps.nth(2)).to_have_class("bad end")
    expect(page.locator(".facts").nth(1)).to_contain_text("Last status500")
    shot(page, "entry-failed")

    page.goto(f"{stack.url}/console#/entry/{seeded.keys['old-hook']}")
    expect(page.locator("#entry-title")).to_have_text(seeded.keys["old-hook"])
    expect(page.locator(".timeline li .what")).to_have_text(["Attempt 1: HTTP 404 (expected 200)", "Ended failed"])


def test_cancel_asks_first_and_escape_keeps_the_entry(
    watched: Callable[..., Watched], stack: LocalStack, seeded: Seeded
) -> None:
    key = seeded.keys["to-cancel"]
    page = watched().open(f"#/entry/{key}")
    cancel = page.get_by_role("button", name="Cancel…")
    cancel.click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"Cancel {key}?")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert stack.entry(key)["task_state"] == "pending"

    cancel.click()
    expect(page.locator("#confirm-yes")).to_be_focused()
    shot(page, "cancel-dialog")
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    expect(page.locator(".notice")).to_have_text("Cancelled.")
    expect(page.locator(".facts .state")).to_have_text("cancelled")
    assert stack.entry(key)["task_state"] == "cancelled"
    expect(cancel).to_be_hidden()


def test_reschedule_a_failed_entry_to_a_chosen_minute(
    watched: Callable[..., Watched], stack: LocalStack, seeded: Seeded
) -> None:
    key = seeded.keys["old-hook"]
    page = watched().open(f"#/entry/{key}")
    page.get_by_role("button", name="Reschedule…").click()
    expect(page.locator("#reschedule-at")).to_be_focused()
    page.keyboard.type("+30m")
    before = int(time.time()) // 60 * 60
    page.keyboard.press("Enter")
    expect(page.locator(".notice")).to_be_visible()
    after = int(time.time()) // 60 * 60
    successor = stack.entry(key)["rescheduled_to"]
    assert successor, "the entry was not rescheduled"
    expect(page.locator("#entry-title")).to_have_text(successor)
    expect(page.locator(".notice")).to_have_text(f"Rescheduled from {key}.")
    expect(page.locator(".facts .state")).to_have_text("pending")
    new = stack.entry(successor)
    assert new["trigger_at"] in (before + 1800, after + 1800)  # +30m from the minute it was asked in
    assert new["rescheduled_from"] == key
    expect(page.get_by_role("link", name=key)).to_be_visible()


def test_a_refused_reschedule_shows_the_api_error_in_the_dialog(
    watched: Callable[..., Watched], seeded: Seeded
) -> None:
    watch = watched()
    watch.expect_failure("/reschedule/", "400")
    page = watch.open(f"#/entry/{seeded.keys['nightly-report']}")
    page.get_by_role("button", name="Reschedule…").click()
    page.keyboard.type("+6hx")
    page.keyboard.press("Enter")
    expect(page.locator("#confirm-error")).to_contain_text("trigger_at '+6hx' is not a relative time")
    expect(page.locator("#confirm-dialog")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#confirm-dialog")).to_be_hidden()


# -- create -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "error_part"),
    [
        ("trigger_at", "+6hx", "trigger_at '+6hx' is not a relative time"),
        ("callback", "http://10.0.0.1/hook", "callback 'http://10.0.0.1/hook' is refused"),
        ("max_delay", "0", "max_delay must be between 1 and"),
    ],
)
def test_a_refused_create_shows_the_api_error_next_to_its_field(
    watched: Callable[..., Watched], stack: LocalStack, field: str, value: str, error_part: str
) -> None:
    watch = watched()
    watch.expect_failure("/task/refused", "400")
    page = watch.open("#/new")
    form = {"task_name": "refused", "trigger_at": "+5m", "callback": "https://example.com/hook", field: value}
    for name, text in form.items():
        page.fill(f"#f-{name}", text)
    page.get_by_role("button", name="Create task").click()
    error = page.locator(f"#e-{field}")
    expect(error).to_contain_text(error_part)
    body = {k: (int(v) if v.isdigit() else v) for k, v in form.items() if k != "task_name" and v}
    answer = stack.request("PUT", "/task/refused", body)
    assert answer.status_code == 400
    expect(error).to_have_text(answer.json()["error"])  # the API's own words, next to the field it names
    expect(page.locator(f"#f-{field}")).to_have_attribute("aria-invalid", "true")
    expect(page.locator(f"#f-{field}")).to_be_focused()
    others = [f for f in ("task_name", "trigger_at", "callback", "max_delay", "form") if f != field]
    for other in others:
        expect(page.locator(f"#e-{other}")).to_have_text("")
    shot(page, f"create-refused-{field}")


def test_create_with_every_field_lands_on_the_new_entry(watched: Callable[..., Watched], stack: LocalStack) -> None:
    page = watched().open("#/new")
    page.fill("#f-task_name", "made-in-console")
    page.fill("#f-trigger_at", "+90m")
    page.fill("#f-callback", "https://example.com/console")
    page.select_option("#f-callback_method", "PUT")
    page.fill("#f-expected_http_status", "204")
    page.fill("#f-retry", "4")
    page.fill("#f-max_delay", "25")
    page.fill("#f-payload", '{"from": "console"}')
    page.get_by_role("button", name="Create task").click()
    expect(page.locator(".notice")).to_have_text("Created.")
    key = page.locator("#entry-title").inner_text()
    entry = stack.entry(key)
    assert {k: entry[k] for k in ("callback", "callback_method", "expected_http_status", "retry", "max_delay")} == {
        "callback": "https://example.com/console",
        "callback_method": "PUT",
        "expected_http_status": 204,
        "retry": 4,
        "max_delay": 25,
    }
    assert entry["payload"] == '{"from": "console"}'
    expect(page.locator("#entry-body")).to_contain_text("Not called yet")


# -- the last hour ----------------------------------------------------------------------------------------


def test_without_a_stats_route_the_charts_say_no_stats_yet(watched: Callable[..., Watched]) -> None:
    watch = watched()
    features(watch.page, stats=False)  # an API from before /stats
    page = watch.open("#/stats")
    expect(page.locator("#stats-summary")).to_have_text("No stats yet.")
    expect(page.locator("#chart-calls .nodata")).to_contain_text("does not serve /stats")
    expect(page.locator("#chart-lateness .nodata")).to_be_visible()


def features(page: Page, **flags: bool) -> None:
    """The console's config as an API with (or without) the optional routes would answer it."""
    body = {"auth": "none", "features": {"stats": False, "schedules": False, **flags}}
    page.route("**/console/config.json", lambda route: route.fulfill(json=body))


@pytest.fixture(scope="module")
def dispatched(tmp_path_factory: pytest.TempPathFactory, sink: Sink) -> Iterator[tuple[LocalStack, dict[str, Any]]]:
    """A stack of its own whose dispatcher ran in the current minute (the shared one's run is in the
    next minute, beyond the window /stats shows): two successes, one failure, one retried entry."""
    stack = LocalStack(tmp_path_factory.mktemp("stats") / "state").start()
    try:
        if time.time() % 60 > 40:  # the run and its retry must stay inside the minute they are shown in
            time.sleep(61 - time.time() % 60)
        for name, path, statuses, extra in (
            ("stats-ok-1", "/stats-ok1", (200,), {}),
            ("stats-ok-2", "/stats-ok2", (200,), {}),
            ("stats-down", "/stats-down", (500,), {"retry": 0}),
            ("stats-flaky", "/stats-flaky", (503, 200), {"retry": 1}),
        ):
            stack.put(name, trigger_at="+0m", callback=sink.on(path, *statuses), **extra)
        report = stack.tick(time.time())
        assert (report["calls"], report["succeeded"], report["failed"], report["retried"]) == (5, 3, 1, 1), report
        yield stack, report
    finally:
        stack.stop()


def test_the_last_hour_draws_calls_by_outcome_and_lateness_from_stats(
    watched: Callable[..., Watched], dispatched: tuple[LocalStack, dict[str, Any]]
) -> None:
    stack, report = dispatched
    watch = watched(origin=stack.url)
    page = watch.page
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if "/stats?" in request.url else None)
    watch.open("#/stats")
    # The real /stats: what the dispatcher stored for the minute it ran in.
    expect(page.locator("#stats-summary")).to_contain_text(f"{report['calls']} calls from ")
    answer = stack.request("GET", "/stats").json()  # what the page was answered (a minute later at most)
    assert asked and asked[0].endswith("/stats?minutes=60")
    totals = {k: sum(m[k] for m in answer["minutes"]) for k in ("calls", "succeeded", "retried", "failed", "skipped")}
    assert totals == {k: report[k] for k in totals}
    expect(page.locator("#stats-summary")).to_contain_text(
        f"{totals['succeeded']} succeeded, {totals['retried']} retried, {totals['failed']} failed, "
        f"{totals['skipped']} skipped."
    )
    bars = page.locator("#chart-calls rect.bar")
    cells = [(m, k) for m in answer["minutes"] for k in ("succeeded", "retried", "failed", "skipped") if m[k]]
    expect(bars).to_have_count(len(cells))
    # Bars are stacked to scale: each stack is as tall as its minute's count.
    heights: dict[int, float] = {}
    for i in range(bars.count()):
        box = bars.nth(i).bounding_box()
        assert box is not None
        heights[round(box["x"])] = heights.get(round(box["x"]), 0.0) + box["height"]
    outcomes = ("succeeded", "retried", "failed", "skipped")
    counts = [c for m in answer["minutes"] if (c := sum(m[k] for k in outcomes))]
    per_call = [h / c for h, c in zip(heights.values(), counts, strict=True)]
    assert max(per_call) - min(per_call) < 0.05 * max(per_call), per_call
    expect(page.locator("#chart-calls .legend li")).to_have_text(list(outcomes))
    # Lateness: a p50 and a p99 line, one point per minute with calls, none for the quiet minutes.
    busy = [m for m in answer["minutes"] if m["lateness_p50"] is not None]
    assert busy and all(0 <= m["lateness_p50"] <= m["lateness_p99"] < 60 for m in busy)
    expect(page.locator("#chart-lateness path.line")).to_have_count(2)
    expect(page.locator("#chart-lateness circle")).to_have_count(2 * len(busy))
    title = page.locator("#chart-calls rect.bar title").first.text_content() or ""
    assert "UTC" in title and "succeeded" in title
    shot(page, "stats")


def test_a_404_from_stats_is_no_stats_yet(watched: Callable[..., Watched]) -> None:
    watch = watched()
    watch.expect_failure("/stats", "404")
    features(watch.page, stats=True)
    # An API that lists /stats but answers 404 for it (a deployment in the middle of an update).
    watch.page.route("**/stats?*", lambda route: route.fulfill(status=404, json={"error": "no route GET /stats"}))
    page = watch.open("#/stats")
    expect(page.locator("#chart-calls .nodata")).to_contain_text("answered 404 for /stats")


# -- schedules ------------------------------------------------------------------------------------------


def test_the_schedules_tab_is_hidden_while_the_api_has_none(watched: Callable[..., Watched]) -> None:
    watch = watched()
    features(watch.page, schedules=False)  # an API without the /schedule routes
    page = watch.open()
    expect(page.get_by_role("link", name="Entries")).to_be_visible()
    expect(page.get_by_role("link", name="Schedules")).to_be_hidden()


def test_schedules_show_their_next_runs(watched: Callable[..., Watched], stack_factory: Any) -> None:
    own = stack_factory()  # a stack of its own, so that the schedules' runs stay out of the other tests' lists
    for name, timing in (
        ("digest", {"cron": "0 9 * * MON-FRI", "timezone": "Europe/Paris"}),
        ("sync", {"every": "15m", "paused": True}),
    ):
        response = own.request("PUT", f"/schedule/{name}", {"callback": "https://example.com/hooks", **timing})
        assert response.status_code == 201, response.text
    runs = own.request("GET", "/schedule/digest").json()["next_runs"]
    page = watched(origin=own.url).open()
    page.get_by_role("link", name="Schedules").click()
    rows = page.locator("#schedules-body tr")
    expect(rows).to_have_count(2)
    digest = rows.filter(has=page.get_by_role("link", name="digest", exact=True))
    sync = rows.filter(has=page.get_by_role("link", name="sync", exact=True))
    expect(digest.locator("td").nth(1)).to_have_text("active")
    expect(digest.locator("td").nth(2)).to_have_text("0 9 * * MON-FRI")
    expect(digest.locator("td").nth(4).locator("time")).to_have_count(3)
    assert plain(digest.locator("time").first.inner_text()) == local_text(runs[0])
    expect(sync.locator("td").nth(1)).to_have_text("paused")
    expect(sync.locator("td").nth(2)).to_have_text("every 15m")
    shot(page, "schedules")
    page.get_by_role("link", name="digest").click()
    expect(page).to_have_url(re.compile(r"#/entries\?name=digest$"))
    expect(row(page, "digest")).to_have_count(1)  # its pending run, an ordinary entry
    expect(row(page, "digest").locator("td").nth(1)).to_have_text("pending")


# -- authentication and failures ------------------------------------------------------------------------


def test_with_an_api_key_the_page_asks_once_and_keeps_it_for_the_tab(watched: Callable[..., Watched]) -> None:
    watch = watched()
    watch.expect_failure("/status/", "403")
    page = watch.page
    sent: list[str | None] = []

    def gate(route: Route) -> None:  # API Gateway with a usage plan: only the right key gets through
        key = route.request.headers.get("x-api-key")
        sent.append(key)
        if key == "right-key":
            route.continue_()
        else:
            route.fulfill(
                status=403, json={"error": "missing or unknown API key: send a valid key in the x-api-key header"}
            )

    page.route("**/console/config.json", lambda route: route.fulfill(json={"auth": "api_key", "features": {}}))
    page.route("**/status/**", gate)
    watch.open()
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#key-input")).to_be_focused()
    page.keyboard.type("wrong-key")
    page.keyboard.press("Enter")
    expect(page.locator("#key-error")).to_contain_text("The API refused this key: missing or unknown API key")
    expect(dialog).to_be_visible()
    expect(page.locator("#auth-state")).to_have_text("API key needed")
    expect(page.locator("#banner")).to_be_hidden()  # the dialog says it
    shot(page, "api-key-refused")
    page.fill("#key-input", "right-key")
    page.keyboard.press("Enter")
    expect(row(page, "paid-invoice")).to_have_count(1)
    assert sent[:2] == ["wrong-key", "right-key"]
    assert page.evaluate("sessionStorage.getItem('callme.apiKey')") == "right-key"
    assert page.evaluate("localStorage.length") == 0
    expect(page.locator("#auth-state")).to_have_text("API key set for this tab")
    page.reload()
    expect(row(page, "paid-invoice")).to_have_count(1)
    expect(dialog).to_be_hidden()  # the same tab remembers it

    other = page.context.new_page()  # another tab asks again
    other.route("**/console/config.json", lambda route: route.fulfill(json={"auth": "api_key", "features": {}}))
    other.goto(f"{watch.origin}/console")
    expect(other.locator("#key-dialog")).to_be_visible()


def test_in_iam_mode_the_page_says_how_to_reach_it_instead(watched: Callable[..., Watched]) -> None:
    watch = watched()
    page = watch.page
    page.route("**/console/config.json", lambda route: route.fulfill(json={"auth": "iam", "features": {}}))
    watch.open()
    expect(page.locator("#view-iam")).to_be_visible()
    expect(page.locator("#view-iam")).to_contain_text("cannot sign requests")
    expect(page.locator("#iam-command")).to_contain_text("python -m local")
    expect(page.locator("nav")).to_be_hidden()
    shot(page, "iam")
    assert not [url for url in watch.requests if "/status/" in url], "it must not call the API unsigned"


def test_storage_unavailable_and_network_down_are_said_plainly_and_can_be_retried(
    watched: Callable[..., Watched],
) -> None:
    watch = watched()
    watch.expect_failure("/status/", "503")
    watch.expect_failure("/status/", "ERR_CONNECTION_REFUSED")
    page = watch.page
    unavailable = {"error": "storage unavailable after retries: retry the request"}
    page.route("**/status/**", lambda route: route.fulfill(status=503, json=unavailable, headers={"Retry-After": "1"}))
    watch.open()
    banner = page.locator("#banner")
    expect(banner).to_contain_text("Storage is unavailable right now (503): storage unavailable after retries")
    expect(page.locator("#entries-empty")).to_have_text("Entries could not be loaded.")
    shot(page, "storage-unavailable")

    page.unroute("**/status/**")
    page.route("**/status/**", lambda route: route.abort("connectionrefused"))
    page.get_by_role("button", name="Retry").click()
    expect(banner).to_contain_text("Cannot reach the API")

    page.unroute("**/status/**")
    page.get_by_role("button", name="Retry").click()
    expect(banner).to_be_hidden()
    expect(row(page, "paid-invoice")).to_have_count(1)


def test_the_list_does_not_jump_while_it_loads(watched: Callable[..., Watched]) -> None:
    watch = watched()
    page = watch.page
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.route("**/status/**", hold)
    watch.open()
    page.locator("#entries-body tr.skeleton").first.wait_for()
    loading = page.locator("#entries").bounding_box()
    summary = page.locator("#entries-summary").bounding_box()
    expect(page.locator("#entries-summary")).to_have_text("Loading…")
    for _ in range(100):  # the route's handler runs when Playwright next dispatches its events
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "the list was not requested"
    for route in held:
        route.continue_()
    expect(row(page, "paid-invoice")).to_have_count(1)
    assert page.locator("#entries").bounding_box()["y"] == loading["y"]
    assert page.locator("#entries-summary").bounding_box() == summary


# -- a phone, and the keyboard --------------------------------------------------------------------------


def test_on_a_phone_everything_fits_the_screen(watched: Callable[..., Watched], seeded: Seeded) -> None:
    # In dark mode too, as many phones are: the screenshots show both at once.
    page = watched(viewport=PHONE, is_mobile=True, has_touch=True, color_scheme="dark").open()
    expect(row(page, "paid-invoice")).to_have_count(1)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide on a {PHONE['width']} px screen"
    expect(page.locator("#entries thead")).to_be_hidden()
    card = row(page, "nightly-report").bounding_box()
    assert card is not None and card["width"] <= PHONE["width"] and card["height"] < 200
    for link in ("Entries", "Last hour", "New task"):
        box = page.get_by_role("link", name=link).bounding_box()
        assert box is not None and box["x"] + box["width"] <= PHONE["width"], link
    shot(page, "phone-entries")
    page.get_by_role("link", name="nightly-report").click()
    expect(page.locator(".timeline li")).to_have_count(3)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot(page, "phone-entry")
    page.get_by_role("link", name="New task").click()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot(page, "phone-new")


def focused(page: Page) -> str:
    return str(page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()"))


def tab_to(page: Page, target: str, limit: int = 40, key: str = "Tab") -> None:
    for _ in range(limit):
        page.keyboard.press(key)
        if focused(page) == target:
            outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            assert outline != "none", f"{target} has no visible focus"
            return
    raise AssertionError(f"Tab never reached {target!r}")


def test_the_main_actions_are_reachable_with_the_keyboard(watched: Callable[..., Watched], stack: LocalStack) -> None:
    page = watched().open()
    expect(row(page, "paid-invoice")).to_have_count(1)
    page.keyboard.press("Tab")
    assert focused(page) == "Skip to content"
    tab_to(page, "New task")
    shot(page, "keyboard-focus")
    page.keyboard.press("Enter")
    expect(page.locator("#new-title")).to_be_focused()
    page.keyboard.press("Tab")
    assert focused(page) == "f-task_name"
    page.keyboard.type("by-keyboard")
    page.keyboard.press("Tab")
    page.keyboard.type("+45m")
    page.keyboard.press("Tab")
    page.keyboard.type("https://example.com/keys")
    tab_to(page, "Create task")
    page.keyboard.press("Enter")
    expect(page.locator(".notice")).to_have_text("Created.")
    expect(page.locator("#entry-title")).to_be_focused()
    key = page.locator("#entry-title").inner_text()

    tab_to(page, "cancel-entry")
    page.keyboard.press("Enter")
    expect(page.locator("#confirm-dialog")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#confirm-dialog")).to_be_hidden()
    assert focused(page) == "cancel-entry"  # back where it was
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")
    expect(page.locator(".notice")).to_have_text("Cancelled.")
    assert stack.entry(key)["task_state"] == "cancelled"
    expect(page.locator("#entry-title")).to_be_focused()  # the button it was on is gone

    tab_to(page, "back", key="Shift+Tab")
    page.keyboard.press("Enter")
    expect(page.locator("#entries-title")).to_be_focused()
    tab_to(page, "filter-name")
    page.keyboard.type("by-keyboard")
    page.keyboard.press("Enter")
    expect(page.locator("#entries-body tr td:first-child a")).to_have_text(["by-keyboard"])
    assert focused(page) == "filter-name"  # a new filter keeps the focus where it is
    tab_to(page, "by-keyboard")
    page.keyboard.press("Enter")
    expect(page.locator("#entry-title")).to_have_text(key)


def test_the_console_files_are_served_with_their_types_and_a_strict_policy(stack: LocalStack) -> None:
    page = stack.request("GET", "/console")
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
    files = re.findall(r'(?:href|src)="console/([a-z.]+)\?v=([0-9a-f]{16})"', page.text)
    assert {name for name, _ in files} == {"app.css", "app.js", "icon.svg"}
    for name, version in files:
        answer = stack.request("GET", f"/console/{name}?v={version}")
        assert answer.status_code == 200, name
        assert answer.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    missing = stack.request("GET", "/console/nothing.js")
    assert (missing.status_code, missing.json()) == (404, {"error": "the console has no file 'nothing.js'"})
    assert json.loads(stack.request("GET", "/console/config.json").text) == {
        "auth": "none",
        "features": {"stats": True, "schedules": True},
    }
