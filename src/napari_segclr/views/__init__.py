"""Views for SegCLR: cubes around points on segments, defined in nm.

A view is cut in physical space and resampled from each volume's own voxels,
so the EM and the segmentation may differ in voxel size::

    from napari_segclr.model import get_preset
    from napari_segclr.views import ViewSpec, extract_views

    spec = ViewSpec.from_config(get_preset("lite"))  # 33³ voxels of 128 nm, masked EM
    views = extract_views(dataset, segment_ids, centers_nm, spec)  # (B, 1, 33, 33, 33)

:class:`ViewLoader` batches the views of many skeleton nodes for embedding (in
background threads), and :func:`sample_pairs` / :class:`PairBatches` give
positive pairs along skeletons for contrastive training.
"""

from .extract import (
    MAX_UPSAMPLING,
    as_dataset,
    extract_views,
    jitter_centers,
    view_groups,
)
from .loader import ViewLoader, ViewPoints, prefetch_map, spatial_order
from .pairs import PairBatches, Pairs, PairSampler, sample_pairs
from .spec import INPUT_KINDS, UINT8_SCALE, ViewSpec, as_view_spec

__all__ = [
    "INPUT_KINDS",
    "MAX_UPSAMPLING",
    "UINT8_SCALE",
    "PairBatches",
    "PairSampler",
    "Pairs",
    "ViewLoader",
    "ViewPoints",
    "ViewSpec",
    "as_dataset",
    "as_view_spec",
    "extract_views",
    "jitter_centers",
    "prefetch_map",
    "sample_pairs",
    "spatial_order",
    "view_groups",
]
