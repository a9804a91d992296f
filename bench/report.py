"""The figures of a benchmark run: values (medians of the runs), targets, and the table printed."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Every figure a run reports (results.json "figures"); each must come out positive and finite.
REQUIRED_FIGURES = (
    "capacity.write_units_per_task",
    "capacity.write_units_base_per_task",
    "capacity.write_units_gsi_per_task",
    "capacity.lease_write_units_per_shard_run",
    "capacity.stats_write_units_per_shard_run",
    "capacity.read_units_per_task",
    "capacity.read_units_before_call_per_task",
    "capacity.original_write_units_per_task",
    "schedules.write_units_per_run",
    "schedules.chain_write_units_per_run",
    "schedules.write_units_over_a_one_off",
    "throughput.callbacks_per_second",
    "throughput.dispatch_seconds",
    "throughput.storage_only_seconds",
    "throughput.http_only_seconds",
    "throughput.ratio_to_slower_ceiling",
    "throughput.sink_alone_rps",
    "throughput.dispatcher_cpu_ms_per_callback",
    "floor.put_item_cpu_ms",
    "floor.get_cpu_ms",
    "floor.dispatcher_over_floor",
    "throughput.storage_cpu_ms_per_callback",
    "throughput.http_cpu_ms_per_callback",
    "throughput.dynamodb_cpu_ms_per_callback",
    "throughput.machine_busy",
    "slow.dispatch_seconds",
    "slow.queue_excess_seconds",
    *(f"lateness.{run}.{what}_p{p}" for run in ("fast", "slow") for what in ("call", "record") for p in (50, 99)),
    "coldstart.boto3_ms",
    "coldstart.api_ms",
    "coldstart.dispatcher_ms",
    "coldstart.api_ratio",
    "coldstart.dispatcher_ratio",
    "api.put_task_ms",
    "listing.plain_page_ms",
    "listing.plain_page_read_units",
    "listing.future_first_page_ms",
    "listing.future_page_read_units_max",
    "listing.future_page_requests_max",
    "listing.future_pages",
    "listing.future_all_ms",
    "cost.callme_per_million_usd",
    "cost.original_design_per_million_usd",
    "cost.read_before_call_per_million_usd",
    "cost.without_read_before_call_per_million_usd",
    "cost.fixed_per_month_usd",
    "cost.eventbridge_scheduler_per_million_usd",
    "cost.eventbridge_api_destination_per_million_usd",
    "cost.cloud_tasks_per_million_usd",
    "cost.qstash_per_million_usd",
)


@dataclass
class Figure:
    key: str
    label: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None
    runs: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def figure(key: str, label: str, runs: list[float], unit: str, target: str = "", limit: float | None = None) -> Figure:
    """A figure from its runs' values; ``limit`` (an upper bound) decides ``met`` when given."""
    value = median(runs)
    met = None if limit is None else value <= limit
    return Figure(key, label, round(value, 6), unit, target, met, [round(v, 6) for v in runs])


def table(figures: list[Figure]) -> str:
    rows = [("figure", "value", "target", "met?")]
    for f in figures:
        value = f"{_number(f.value)} {f.unit}".strip()
        met = "" if f.met is None else ("yes" if f.met else "NO")
        rows.append((f.label, value, f.target, met))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 0.01:
        return f"{value:.3g}"
    return f"{value:.2g}"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": memory_gb,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "load_average_at_start": _load(),
        "git_commit": _git_commit(),
        "packages": {name: _version(name) for name in ("boto3", "moto", "requests", "aws-lambda-powertools")},
    }


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return ""


def _git_commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    except OSError:
        return ""
    commit = done.stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=False)
    return commit + ("+changes" if dirty.stdout.strip() else "")


def load_now() -> list[float]:
    return _load()
