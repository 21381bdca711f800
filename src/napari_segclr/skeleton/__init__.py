"""Skeletons of segments: nodes in nm along each cell, and distances along them.

Segments are skeletonised with kimimaro (TEASAR) in physical units. A
:class:`Skeleton` keeps the node graph (a parent per node), so views can be cut
around its nodes and distances measured along the cell, not through space.
"""

from .chunks import skeletonize_volume
from .graph import Skeleton, nodes_within, path_distances, resample, smooth
from .segment import skeletonize_segment
from .teasar import SkeletonParams, skeletonize_labels

__all__ = [
    "Skeleton",
    "SkeletonParams",
    "nodes_within",
    "path_distances",
    "resample",
    "skeletonize_labels",
    "skeletonize_segment",
    "skeletonize_volume",
    "smooth",
]
