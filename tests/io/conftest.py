"""Small volumes and a byte counter shared by the I/O tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

_PROC_IO = Path("/proc/self/io")


@pytest.fixture
def ramp() -> np.ndarray:
    """A (12, 16, 20) uint16 volume whose voxels all differ, so crops are checkable."""
    return np.arange(12 * 16 * 20, dtype=np.uint16).reshape(12, 16, 20)


@pytest.fixture
def bytes_read() -> Callable[[], int]:
    """Bytes this process has read from files so far (Linux ``/proc/self/io`` rchar).

    Counts every read system call, whatever library (tifffile, h5py, zarr,
    tensorstore) issues it, so the difference around a crop read is what the
    crop cost.
    """
    if not _PROC_IO.is_file():
        pytest.skip("needs /proc/self/io (Linux) to count bytes read")

    def rchar() -> int:
        for line in _PROC_IO.read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
        raise AssertionError("no rchar in /proc/self/io")

    return rchar
