"""A small synthetic neuropil to train on, rendered once per session."""

from __future__ import annotations

import pytest

from napari_segclr.synthetic import NeuropilConfig
from napari_segclr.train import TrainingData

#: 8.2 µm of neuropil at 128 nm: the tiny preset's 4.4 µm views fit several times.
NEUROPIL = NeuropilConfig(shape=(64, 64, 64), voxel_size=(128.0, 128.0, 128.0), seed=7)


@pytest.fixture(scope="session")
def neuropil_data() -> TrainingData:
    return TrainingData.synthetic(NEUROPIL)
