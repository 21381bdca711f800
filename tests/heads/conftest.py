"""Labelled embeddings of a few well-separated classes, small enough for second-long fits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from napari_segclr.heads import HeadOptions

CLASSES = ("axon", "dendrite", "glia")
DIM = 16
#: Smaller networks than the defaults: the tests check behaviour, not capacity.
FAST = HeadOptions(hidden=32, steps=100, batch_size=256, random_features=128)


def blobs(n: int, seed: int, *, spread: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` embeddings around one centre per class (centres 6 apart), and their labels."""
    rng = np.random.default_rng(seed)
    centres = 6.0 * np.eye(DIM)[: len(CLASSES)]
    y = rng.integers(0, len(CLASSES), n)
    x = centres[y] + spread * rng.normal(size=(n, DIM))
    return x.astype(np.float32), np.asarray(CLASSES)[y]


@pytest.fixture(scope="module")
def train() -> tuple[np.ndarray, np.ndarray]:
    return blobs(300, seed=1)


@pytest.fixture(scope="module")
def test_set() -> tuple[np.ndarray, np.ndarray]:
    return blobs(300, seed=2)


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """For module-scoped fixtures, set up before the suite's autouse one-thread fixture."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
