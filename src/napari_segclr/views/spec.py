"""What a view is: its shape in voxels, its voxel size in nm and its channels.

This module imports no torch: a :class:`~napari_segclr.model.ModelConfig` is
read by its attributes, so the view machinery stays light to import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..io.volume import Vec3, as_voxel_size

#: What a view channel holds: raw EM (float in [0, 1]), the binary segment mask
#: (0 or 1), or EM inside the segment and 0 outside ("masked_em", the SegCLR default).
INPUT_KINDS = ("em", "mask", "masked_em")
#: Kinds that need the EM volume, and kinds that need the segmentation.
EM_KINDS = frozenset({"em", "masked_em"})
MASK_KINDS = frozenset({"mask", "masked_em"})
#: uint8 views hold round(UINT8_SCALE × the float view): a quarter of the bytes to carry.
UINT8_SCALE = 255


class HasViewFields(Protocol):
    """Anything that describes views the way ``ModelConfig`` does."""

    view_shape: tuple[int, int, int]
    voxel_size_nm: tuple[float, float, float]
    input_kinds: tuple[str, ...]


@dataclass(frozen=True)
class ViewSpec:
    """Shape, voxel size and channels of the views a model takes.

    Parameters
    ----------
    shape
        Voxels of one view (z, y, x); odd sizes put the centre on a voxel centre.
    voxel_size_nm
        Voxel size of the views in nm (z, y, x), or one number for cubic voxels;
        the volumes are resampled to it.
    input_kinds
        One entry of :data:`INPUT_KINDS` per channel, in channel order.

    Examples
    --------
    >>> spec = ViewSpec((65, 65, 65), 64.0)
    >>> spec.field_of_view_nm, spec.input_kinds
    ((4160.0, 4160.0, 4160.0), ('masked_em',))
    """

    shape: tuple[int, int, int]
    voxel_size_nm: Vec3
    input_kinds: tuple[str, ...] = ("masked_em",)

    def __post_init__(self) -> None:
        shape = tuple(self.shape) if not isinstance(self.shape, int | str) else ()
        if len(shape) != 3 or not all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape
        ):
            raise ValueError(f"view shape must be three positive integers, got {self.shape!r}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(
            self, "voxel_size_nm", as_voxel_size(self.voxel_size_nm, "voxel_size_nm")
        )
        kinds = self.input_kinds
        if isinstance(kinds, str) or not kinds or any(k not in INPUT_KINDS for k in kinds):
            raise ValueError(
                f"input_kinds must be a non-empty sequence of {INPUT_KINDS}, got {kinds!r}"
            )
        object.__setattr__(self, "input_kinds", tuple(kinds))

    @classmethod
    def from_config(cls, config: HasViewFields) -> ViewSpec:
        """The views a model config (``ModelConfig``) takes."""
        return cls(tuple(config.view_shape), config.voxel_size_nm, tuple(config.input_kinds))

    @property
    def in_channels(self) -> int:
        return len(self.input_kinds)

    @property
    def field_of_view_nm(self) -> Vec3:
        """Physical extent of a view in nm (z, y, x)."""
        z, y, x = (n * s for n, s in zip(self.shape, self.voxel_size_nm, strict=True))
        return (z, y, x)

    @property
    def needs_em(self) -> bool:
        return any(k in EM_KINDS for k in self.input_kinds)

    @property
    def needs_segmentation(self) -> bool:
        return any(k in MASK_KINDS for k in self.input_kinds)


def as_view_spec(spec: Any) -> ViewSpec:
    """A :class:`ViewSpec` from itself or from a model config."""
    if isinstance(spec, ViewSpec):
        return spec
    if all(hasattr(spec, name) for name in ("view_shape", "voxel_size_nm", "input_kinds")):
        return ViewSpec.from_config(spec)
    raise TypeError(f"spec must be a ViewSpec or a ModelConfig, got {type(spec).__name__}")
