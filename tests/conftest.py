"""Shared fixtures: the real EM data in ``../shared/data`` and small helpers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SEGCLR_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real data folder; tests that need it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout's root folder."""
    return REPO


@pytest.fixture(autouse=True)
def one_torch_thread():
    """CI has 2 shared cores: more torch threads than free cores make small networks slower."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def thread_cluster():
    """A Dask client of two worker threads in this process (starts in well under a second).

    The in-process workers set torch to one thread; the caller's count is restored after.
    """
    import torch
    from distributed import Client, LocalCluster

    threads = torch.get_num_threads()
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
    torch.set_num_threads(threads)
