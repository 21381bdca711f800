"""What every benchmark report starts with: when, where and how loaded the machine was."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime


def report_header(benchmark: str, *, threads: int | None = None) -> dict:
    """The first keys of a benchmark's JSON report.

    The cores may be shared: a 1-minute load above the thread count at the start
    means the timings that follow were contended.
    """
    header = {
        "benchmark": benchmark,
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    if threads is not None:
        header["torch_threads"] = threads
    header["load_average_1min_start"] = round(os.getloadavg()[0], 2)
    return header
