"""Segmentation from an affinity network: tiled inference, agglomeration, scores.

Predict affinities over a lazily read volume tile by tile, turn them into a
segmentation (seeded watershed + mean-affinity agglomeration), and score a
segmentation against ground truth::

    from napari_segclr.io import open_volume
    from napari_segclr.mae import load_affinity_model
    from napari_segclr.segment import segment_volume, segmentation_scores

    em = open_volume("raw.tif", voxel_size=(10, 10, 10))
    model = load_affinity_model("affinities.pt")  # written by finetune-mae
    seg = segment_volume(em, model, out="seg.ome.zarr")
    truth = open_volume("labels.tif", voxel_size=(10, 10, 10))
    whole = tuple(slice(0, n) for n in em.shape)
    print(segmentation_scores(truth.read(whole), seg.read(whole)))

torch is imported only when affinities are predicted.
"""

from .agglomerate import (
    agglomerate,
    agglomerate_sweep,
    fragment_graph,
    merge_fragments,
    watershed_fragments,
)
from .distributed import predict_affinities_distributed
from .metrics import (
    adapted_rand_error,
    contingency_table,
    segmentation_scores,
    variation_of_information,
)
from .pipeline import segment_volume
from .tiling import AffinityPredictor, TileGrid, model_level, predict_affinities

__all__ = [
    "AffinityPredictor",
    "TileGrid",
    "adapted_rand_error",
    "agglomerate",
    "agglomerate_sweep",
    "contingency_table",
    "fragment_graph",
    "merge_fragments",
    "model_level",
    "predict_affinities",
    "predict_affinities_distributed",
    "segment_volume",
    "segmentation_scores",
    "variation_of_information",
    "watershed_fragments",
]
