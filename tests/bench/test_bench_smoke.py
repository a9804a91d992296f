"""The benchmark's smoke run (`make bench-smoke`): every figure comes out, positive and finite.

Nothing here is timed: the point is that the benchmark keeps working as the code changes.
"""

from __future__ import annotations

import math
from pathlib import Path

from bench.report import REQUIRED_FIGURES
from bench.simulate import FIGURES as SIMULATION_FIGURES
from tests.bench.conftest import run_bench


def test_the_smoke_benchmark_reports_every_figure(tmp_path: Path) -> None:
    results, printed = run_bench("bench", "--smoke", output=tmp_path / "results-smoke.json")

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
    assert "write units per task" in printed, "the table is printed"
    assert "Check against the local runs" in printed, "the simulation's check is printed"
