"""The README's picture of the console: a local stack with real entries and real callbacks, photographed.

    .venv/bin/python scripts/console_screenshot.py docs/console.png

Starts the local stack in a temporary folder on a free port, registers tasks through the API, has the
dispatcher call a loopback receiver (200 for most, 500 and 404 for two) when their minute comes, and
saves the entries view as a 1280-pixel-wide PNG, rendered by Debian's chromium as the browser tests
do, and the last hour's charts (from the real GET /stats) beside it, as <name>-stats.png.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "functions")]

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from tests.conftest import serve_sink  # noqa: E402
from tests.e2e.conftest import LocalStack, next_minute  # noqa: E402
from tests.e2e.test_console import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402

TASKS = [  # name, path on the receiver, its answers, fields
    ("invoice-2291-paid", "/billing/paid", (200,), {"callback_method": "POST", "payload": '{"invoice": 2291}'}),
    ("welcome-mail-7f3a", "/mail/welcome", (200,), {"callback_method": "POST"}),
    ("nightly-export", "/export/run", (500,), {"retry": 2}),
    ("trial-expiry-5521", "/accounts/5521/expire", (404,), {"callback_method": "DELETE"}),
    ("cache-warmup", "/cache/warm", (200,), {}),
]
LATER = [("weekly-report", "+3h"), ("reminder-5521", "+1d"), ("invoice-2292-due", "+2d")]


def main(target: str) -> None:
    stats_target = str(Path(target).with_name(f"{Path(target).stem}-stats.png"))
    with tempfile.TemporaryDirectory() as state, serve_sink() as sink:
        stack = LocalStack(Path(state) / "state").start()
        try:
            minute = next_minute()
            for name, path, statuses, fields in TASKS:
                stack.put(name, trigger_at=minute, callback=sink.on(path, *statuses), **fields)
            for name, when in LATER:
                stack.put(name, trigger_at=when, callback=f"https://hooks.example.com/{name}")
            # Run the dispatcher when that minute has come (up to a minute's wait), as the stack's own
            # ticker would: the entries show a real lateness and the last hour's charts this minute's run.
            time.sleep(max(0.0, minute + 1 - time.time()))
            stack.tick(time.time())
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
                page = browser.new_page(viewport={"width": 1280, "height": 640}, locale="en-US")
                page.goto(f"{stack.url}/console")
                expect(page.locator("#entries-body tr:not(.skeleton)")).to_have_count(len(TASKS) + len(LATER))
                page.screenshot(path=target, full_page=True)
                page.goto(f"{stack.url}/console#/stats")
                expect(page.locator("#chart-calls rect.bar").first).to_be_visible()
                page.screenshot(path=stats_target, full_page=True)
                browser.close()
        finally:
            stack.stop()
    print(f"wrote {target} and {stats_target}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "docs" / "console.png"))
