"""napari sample data contribution: the synthetic neuropil (File > Open Sample)."""

from __future__ import annotations

from .layers import LayerData, sample_layers


def synthetic_neuropil() -> list[LayerData]:
    """EM, segmentation (with true cell types in its features) and hidden ground truth."""
    return sample_layers(seed=0)
