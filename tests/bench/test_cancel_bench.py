"""The cancel measurement's smoke run (`python -m bench.cancel --entries 300`): it must not rot.

Nothing is timed but what the api function itself must hold: every call answers within its 10 s.
"""

from __future__ import annotations

from pathlib import Path

from tests.bench.conftest import run_bench


def test_the_cancel_measurement_cancels_every_entry_within_the_functions_timeout(tmp_path: Path) -> None:
    result, _ = run_bench("bench.cancel", "--entries", "300", output=tmp_path / "cancel.json")
    assert result["cancelled"] == 300 and result["still_pending"] == 0
    assert [call["status"] for call in result["calls"]][-1] == 200
    assert all(call["seconds"] < result["function_timeout_seconds"] for call in result["calls"])
