"""What the README states that can be checked without running anything."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_the_far_away_example_names_the_utc_times_of_its_timestamps() -> None:
    section = README.split("## The seed's examples", 1)[1].split("\n### ", 1)[0]
    sentence = re.search(r"Schedule two tasks on http://example.com/far-far-away for (.*?):\n", section, re.S)
    assert sentence is not None
    stamps = [
        int(s) for s in re.findall(r'"trigger_at":"(\d+)", "callback":"http://example.com/far-far-away"', section)
    ]
    assert len(stamps) == 2
    times = [datetime.fromtimestamp(s, UTC) for s in stamps]
    assert times[0].strftime("%H:%M") == "00:00" and "midnight" in sentence.group(1)
    assert f"{times[1]:%H:%M} UTC on {times[1]:%Y-%m-%d}" in " ".join(sentence.group(1).split())


def test_every_example_server_listens_on_loopback_only() -> None:
    servers = re.findall(r"python3 -m http\.server[^\n#&]*", README)
    assert servers
    assert all("--bind 127.0.0.1" in server for server in servers), servers
