"""Configuration of a synthetic neuropil volume."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..io.volume import Vec3, as_vec3, as_voxel_size
from .cell_types import CELL_TYPES

#: Voxel sizes (nm) the EM look is designed for.
VOXEL_SIZE_RANGE = (2.0, 200.0)


@dataclass(frozen=True)
class NeuropilConfig:
    """What to generate and how it should look; all lengths in nm.

    Parameters
    ----------
    shape
        Size of the virtual volume in voxels (z, y, x). Only crops that are
        read are rendered, so it may be far larger than memory.
    voxel_size
        Voxel size in nm (z, y, x), 2–200 nm; anisotropic sizes are fine. The
        physical scene does not depend on it.
    seed
        Everything (cells, ids, textures, errors) follows from it.
    offset
        Physical position (nm) of the centre of voxel (0, 0, 0); moves the
        window over the (unbounded) neuropil.
    density
        Multiplier on the cable density of neurites and glial processes.
    soma_density
        Multiplier on the number of somata per volume.
    cell_types
        Relative abundance per type name (missing types: 1.0, 0 removes a
        type); see :mod:`napari_segclr.synthetic.cell_types`.
    merge_rate, split_rate
        Probability per cell of being merged into a touching cell, and of
        having a subtree split off into its own segment.
    noise
        Standard deviation (grey levels at mid grey) of the per-voxel noise.
    contrast_variation
        Relative amplitude of slow brightness/contrast drift across the volume
        and from one z slice to the next.
    """

    shape: tuple[int, int, int] = (160, 256, 256)
    voxel_size: Vec3 = (32.0, 32.0, 32.0)
    seed: int = 0
    offset: Vec3 = (0.0, 0.0, 0.0)
    density: float = 1.0
    soma_density: float = 1.0
    cell_types: Mapping[str, float] = field(default_factory=dict)
    merge_rate: float = 0.0
    split_rate: float = 0.0
    noise: float = 8.0
    contrast_variation: float = 0.15

    def __post_init__(self) -> None:
        shape = np.asarray(self.shape)
        if shape.shape != (3,) or not np.issubdtype(shape.dtype, np.integer) or np.any(shape <= 0):
            raise ValueError(
                f"NeuropilConfig.shape must be three positive voxel counts, got {self.shape!r}"
            )
        set_ = object.__setattr__
        set_(self, "shape", tuple(int(s) for s in shape))
        vs = as_voxel_size(self.voxel_size, "NeuropilConfig.voxel_size")
        if not VOXEL_SIZE_RANGE[0] <= min(vs) <= max(vs) <= VOXEL_SIZE_RANGE[1]:
            raise ValueError(
                f"NeuropilConfig.voxel_size must lie in {VOXEL_SIZE_RANGE} nm, got {vs}"
            )
        set_(self, "voxel_size", vs)
        set_(self, "offset", as_vec3(self.offset, "NeuropilConfig.offset"))
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, (int, np.integer))
            or self.seed < 0
        ):
            raise ValueError(
                f"NeuropilConfig.seed must be a non-negative integer, got {self.seed!r}"
            )
        set_(self, "seed", int(self.seed))
        for name, hi in (
            ("density", 4.0),
            ("soma_density", 50.0),
            ("merge_rate", 1.0),
            ("split_rate", 1.0),
            ("noise", 100.0),
            ("contrast_variation", 0.5),
        ):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= hi):
                raise ValueError(
                    f"NeuropilConfig.{name} must be a number in [0, {hi}], got {value!r}"
                )
            set_(self, name, float(value))
        if self.density == 0:
            raise ValueError("NeuropilConfig.density must be positive, got 0")
        unknown = sorted(set(self.cell_types) - set(CELL_TYPES))
        if unknown:
            raise ValueError(
                f"NeuropilConfig.cell_types has unknown type(s) {unknown}; "
                f"known: {sorted(CELL_TYPES)}"
            )
        for name, weight in self.cell_types.items():
            if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
                raise ValueError(
                    f"NeuropilConfig.cell_types[{name!r}] must be a non-negative number, "
                    f"got {weight!r}"
                )
        set_(self, "cell_types", {k: float(v) for k, v in self.cell_types.items()})

    def type_weight(self, name: str) -> float:
        """Relative abundance of a cell type (1.0 unless set)."""
        return self.cell_types.get(name, 1.0)
