"""Volume I/O: open EM volumes and segmentations lazily, in physical space.

Formats: TIFF stacks, HDF5, Zarr v2/v3 and OME-Zarr, N5 and neuroglancer
precomputed. Every volume carries its voxel size and offset in nm (z, y, x).
"""

from .dataset import Dataset, open_dataset
from .describe import describe
from .open import can_open, infer_kind, open_volume
from .volume import LazyArray, Volume
from .write import write_ome_zarr

__all__ = [
    "Dataset",
    "LazyArray",
    "Volume",
    "can_open",
    "describe",
    "infer_kind",
    "open_dataset",
    "open_volume",
    "write_ome_zarr",
]
