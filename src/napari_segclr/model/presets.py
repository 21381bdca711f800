"""Model configuration: one frozen dataclass and the named presets.

This module imports no torch, so the command line and the widgets can list,
validate and describe configurations without loading it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..views.spec import ViewSpec


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes a SegCLR network's shape and what its inputs mean.

    Parameters
    ----------
    view_shape
        Voxels of one view (z, y, x); odd sizes keep the segment point at the centre voxel.
    voxel_size_nm
        Voxel size of the views in nm (z, y, x); views are resampled to it.
    input_kinds
        One of :data:`~napari_segclr.views.spec.INPUT_KINDS` per channel, in channel order.
    stage_widths
        Channels of the four ResNet stages (the stem has the first width).
    stage_blocks
        Basic residual blocks per stage; ``(2, 2, 2, 2)`` is ResNet-18.
    embedding_dim, embedding_hidden
        Size of the embedding and hidden sizes of the MLP that maps pooled features to it.
    projection_dim, projection_hidden
        Size of the projection used by the contrastive loss (training only) and hidden
        sizes of the MLP that maps the embedding to it.
    temperature
        NT-Xent temperature.

    Examples
    --------
    >>> cfg = ModelConfig(view_shape=(65, 65, 65), voxel_size_nm=(64.0, 64.0, 64.0))
    >>> cfg.field_of_view_nm
    (4160.0, 4160.0, 4160.0)
    >>> ModelConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    view_shape: tuple[int, int, int] = (129, 129, 129)
    voxel_size_nm: tuple[float, float, float] = (32.0, 32.0, 32.0)
    input_kinds: tuple[str, ...] = ("masked_em",)
    stage_widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    stage_blocks: tuple[int, int, int, int] = (2, 2, 2, 2)
    embedding_dim: int = 64
    embedding_hidden: tuple[int, ...] = (512, 512)
    projection_dim: int = 16
    projection_hidden: tuple[int, ...] = (64, 64)
    temperature: float = 0.1

    def __post_init__(self) -> None:
        # JSON gives lists; store tuples so configs hash, compare and stay immutable.
        lengths = {"view_shape": 3, "stage_widths": 4, "stage_blocks": 4}
        for name in (
            "view_shape",
            "stage_widths",
            "stage_blocks",
            "embedding_hidden",
            "projection_hidden",
        ):
            value = _positive_ints(getattr(self, name), name, length=lengths.get(name))
            object.__setattr__(self, name, value)
        for name in ("embedding_dim", "projection_dim"):
            if not _is_positive_int(getattr(self, name)):
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        view = ViewSpec(self.view_shape, self.voxel_size_nm, self.input_kinds)  # validates them
        object.__setattr__(self, "voxel_size_nm", view.voxel_size_nm)
        object.__setattr__(self, "input_kinds", view.input_kinds)
        if not (isinstance(self.temperature, int | float) and 0 < self.temperature < math.inf):
            raise ValueError(f"temperature must be a positive number, got {self.temperature!r}")
        object.__setattr__(self, "temperature", float(self.temperature))

    @property
    def in_channels(self) -> int:
        """Number of input channels (one per input kind)."""
        return len(self.input_kinds)

    @property
    def field_of_view_nm(self) -> tuple[float, float, float]:
        """Physical extent of a view in nm (z, y, x)."""
        z, y, x = (n * s for n, s in zip(self.view_shape, self.voxel_size_nm, strict=True))
        return (z, y, x)

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-able dict (lists, numbers, strings)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Build a config from :meth:`to_dict` output; missing keys take the defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; known keys are {sorted(known)}")
        return cls(**data)


def _positive_ints(value: Any, name: str, *, length: int | None = None) -> tuple[int, ...]:
    try:
        items = tuple(value)
    except TypeError:
        items = ()
    if (
        not items
        or not all(_is_positive_int(v) for v in items)
        or (length is not None and len(items) != length)
    ):
        count = f"{length} " if length is not None else ""
        raise ValueError(f"{name} must be {count}positive integers, got {value!r}")
    return items


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


PRESETS: dict[str, ModelConfig] = {
    # The published network: 129³ views at 32 nm (4.1 µm), ResNet-18 at full width.
    "paper": ModelConfig(),
    # CPUs: the same 4.2 µm field of view at 128 nm (33³, 64× fewer voxels) and a
    # quarter of the widths: 0.165 GFLOP and 2.1 M parameters against 74 GFLOP and
    # 33 M for "paper". Measured on 2 idle cores at batch 32, fp32, channels-last:
    # the encoder embeds 1,000 views/s (the former 65³ at 64 nm, half width: 34), and
    # training runs 2.8 steps/s of 32 pairs, so a CPU trains it for 10⁴ steps in an
    # hour. Neurites stay visible: the thinnest axons (r 110 nm) are 1.7 voxels across,
    # boutons (r 200–500 nm) 3–8.
    "lite": ModelConfig(
        view_shape=(33, 33, 33),
        voxel_size_nm=(128.0, 128.0, 128.0),
        stage_widths=(16, 32, 64, 128),
        embedding_hidden=(128, 128),
    ),
    # Tests and demos: seconds on a CPU, still a 4.4 µm field of view.
    "tiny": ModelConfig(
        view_shape=(17, 17, 17),
        voxel_size_nm=(256.0, 256.0, 256.0),
        stage_widths=(8, 16, 32, 64),
        embedding_hidden=(64, 64),
        projection_hidden=(32, 32),
    ),
}


def get_preset(name: str) -> ModelConfig:
    """The preset config called ``name`` ("paper", "lite" or "tiny")."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}"
        ) from None
