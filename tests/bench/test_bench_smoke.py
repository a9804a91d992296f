"""The benchmark's smoke run (`make bench-smoke`): every figure comes out, positive and finite.

Nothing here is timed: the point is that the benchmark keeps working as the code changes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.report import REQUIRED_FIGURES
from bench.simulate import FIGURES as SIMULATION_FIGURES

ROOT = Path(__file__).resolve().parents[2]


def test_the_smoke_benchmark_reports_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "results-smoke.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLME_", "POWERTOOLS_"))}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--output", str(output)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results: dict[str, Any] = json.loads(output.read_text())

    figures = results["figures"]
    assert set(REQUIRED_FIGURES) | set(SIMULATION_FIGURES) <= set(figures)
    for key, found in figures.items():
        value = found["value"]
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, f"{key} = {value!r}"
        assert found["runs"], f"{key} keeps its runs' raw values"
        assert all(math.isfinite(v) for v in found["runs"]), key

    machine = results["machine"]
    assert machine["cores"] and machine["python"] and machine["platform"] and machine["date"]
    assert results["targets"], "the targets are written with the figures"
    assert results["cost"]["callme_lines"], "the cost arithmetic is written out"
    assert "write units per task" in done.stdout, "the table is printed"
    assert "Check against the local runs" in done.stdout, "the simulation's check is printed"
