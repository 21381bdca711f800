"""Configurations of the MAE network and of its two training stages.

Importing this module loads no torch, so the command line can describe presets
and check shapes before loading it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Self

import numpy as np

from ..exceptions import ShapeMismatchError, VoxelSizeError
from ..io.volume import as_voxel_size

_NETWORK_SIZES = (
    "hidden_size",
    "num_layers",
    "num_heads",
    "mlp_dim",
    "decoder_hidden_size",
    "decoder_num_layers",
    "decoder_num_heads",
    "decoder_mlp_dim",
    "feature_size",
)

#: Largest ratio between the longest and the shortest physical side of a patch.
#: The position embedding and the decoder's up-sampling treat patches as cubes.
MAX_PATCH_ANISOTROPY = 2.0


@dataclass(frozen=True)
class MAEConfig:
    """The 3D ViT (encoder, MAE decoder and affinity decoder) and what its inputs mean.

    Parameters
    ----------
    tile_shape
        Voxels (z, y, x) of the cube the network sees at once.
    patch_shape
        Voxels (z, y, x) of one ViT patch (token). Each side divides the tile's and is a
        power of two; use fewer voxels along an axis with larger voxels, so that
        patches are roughly cubes in nm (e.g. (2, 8, 8) for 40 × 10 × 10 nm voxels).
    voxel_size_nm
        Voxel size (z, y, x) in nm of the volumes the network is trained on and applied to.
    hidden_size, num_layers, num_heads, mlp_dim
        Width, depth, attention heads and MLP width of the ViT encoder; ``hidden_size``
        is a multiple of 6 (sine-cosine position embedding over three axes) and of
        ``num_heads``.
    decoder_hidden_size, decoder_num_layers, decoder_num_heads, decoder_mlp_dim
        The same for the light transformer that reconstructs masked patches
        (pre-training only).
    feature_size
        Channels of the affinity decoder at full resolution (doubling at each coarser level).
    intensity_mean, intensity_std
        Intensity normalisation: a raw value ``v`` enters the network as
        ``(v - intensity_mean) / intensity_std``. None until training measures them
        on its data.

    Examples
    --------
    >>> cfg = get_preset("tiny")
    >>> cfg.grid_shape, cfg.num_patches
    ((2, 4, 4), 32)
    >>> MAEConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    tile_shape: tuple[int, int, int] = (32, 64, 64)
    patch_shape: tuple[int, int, int] = (8, 8, 8)
    voxel_size_nm: tuple[float, float, float] = (10.0, 10.0, 10.0)
    hidden_size: int = 192
    num_layers: int = 8
    num_heads: int = 6
    mlp_dim: int = 768
    decoder_hidden_size: int = 96
    decoder_num_layers: int = 2
    decoder_num_heads: int = 4
    decoder_mlp_dim: int = 384
    feature_size: int = 16
    intensity_mean: float | None = None
    intensity_std: float | None = None

    def __post_init__(self) -> None:
        for name in ("tile_shape", "patch_shape"):
            object.__setattr__(self, name, _shape(getattr(self, name), name))
        for name in _NETWORK_SIZES:
            _check_positive_int(getattr(self, name), name)
        object.__setattr__(self, "voxel_size_nm", as_voxel_size(self.voxel_size_nm, "the model"))
        tile, patch = np.array(self.tile_shape), np.array(self.patch_shape)
        if np.any(tile % patch):
            axis = "zyx"[int(np.flatnonzero(tile % patch)[0])]
            raise ShapeMismatchError(
                f"tile_shape {self.tile_shape} is not divisible by patch_shape "
                f"{self.patch_shape} along {axis}"
            )
        if np.any(patch & (patch - 1)) or patch.max() < 2:
            raise ShapeMismatchError(
                f"patch_shape sides must be powers of two, at least one of them 2 or more "
                f"(the affinity decoder up-samples by 2), got {self.patch_shape}"
            )
        if self.num_patches < 2:
            raise ShapeMismatchError(
                f"tile_shape {self.tile_shape} holds a single patch of {self.patch_shape}; "
                "masking needs at least two"
            )
        self._check_anisotropy()
        for hidden, heads in (
            ("hidden_size", "num_heads"),
            ("decoder_hidden_size", "decoder_num_heads"),
        ):
            size = getattr(self, hidden)
            if size % 6 or size % getattr(self, heads):
                raise ValueError(
                    f"{hidden} must be a multiple of 6 and of {heads} "
                    f"({getattr(self, heads)}), got {size}"
                )
        for name in ("intensity_mean", "intensity_std"):
            value = getattr(self, name)
            if value is None:
                continue
            if not _is_number(value) or (name == "intensity_std" and value <= 0):
                what = "a positive number" if name == "intensity_std" else "a finite number"
                raise ValueError(f"{name} must be {what} or None, got {value!r}")
            object.__setattr__(self, name, float(value))
        if (self.intensity_mean is None) != (self.intensity_std is None):
            raise ValueError("intensity_mean and intensity_std are given together or not at all")

    def _check_anisotropy(self) -> None:
        extent = np.array(self.patch_nm)
        ratio = extent.max() / extent.min()
        if ratio <= MAX_PATCH_ANISOTROPY:
            return
        sides = " × ".join(f"{e:g}" for e in extent)
        # Suggest the nearest near-cubic patch that tiles the tile: as fine as the finest
        # side asked for, else as coarse as the mean or the coarsest side.
        sizes = (extent.min(), float(np.exp(np.log(extent).mean())), extent.max())
        tile = np.array(self.tile_shape)
        shapes = [patch_shape_for(self.voxel_size_nm, patch_nm=float(size)) for size in sizes]
        fitting = [s for s in shapes if s is not None and not np.any(tile % s)]
        hint = (
            f"; use patch_shape {fitting[0]}"
            if fitting
            else "; no power-of-two patch within the tile is near a cube: resample the volume"
        )
        raise VoxelSizeError(
            f"patch_shape {self.patch_shape} at voxel size {self.voxel_size_nm} nm spans "
            f"{sides} nm, {ratio:.3g}× anisotropic (at most {MAX_PATCH_ANISOTROPY:g}×){hint}"
        )

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """Patches (z, y, x) along each side of a tile."""
        z, y, x = (t // p for t, p in zip(self.tile_shape, self.patch_shape, strict=True))
        return (z, y, x)

    @property
    def num_patches(self) -> int:
        """Patches (tokens) per tile."""
        return math.prod(self.grid_shape)

    @property
    def patch_voxels(self) -> int:
        """Voxels per patch."""
        return math.prod(self.patch_shape)

    @property
    def patch_nm(self) -> tuple[float, float, float]:
        """Physical size (z, y, x) of a patch in nm."""
        z, y, x = (p * v for p, v in zip(self.patch_shape, self.voxel_size_nm, strict=True))
        return (z, y, x)

    @property
    def has_intensity(self) -> bool:
        """Whether the intensity normalisation is known (set by training)."""
        return self.intensity_mean is not None

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-able dict."""
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in fields(self)
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MAEConfig:
        """Build a config from :meth:`to_dict` output; missing keys take the defaults."""
        return cls(**_known_keys(cls, data, "MAE config"))


def patch_shape_for(voxel_size_nm: Any, *, patch_nm: float) -> tuple[int, int, int] | None:
    """The power-of-two patch shape closest to a cube of ``patch_nm`` at this voxel size.

    None where no such shape is within :data:`MAX_PATCH_ANISOTROPY` of a cube.

    >>> patch_shape_for((40, 10, 10), patch_nm=80)
    (2, 8, 8)
    """
    voxel = np.array(as_voxel_size(voxel_size_nm), dtype=float)
    sides = 2 ** np.maximum(np.round(np.log2(patch_nm / voxel)), 0).astype(int)
    extent = sides * voxel
    if extent.max() / extent.min() > MAX_PATCH_ANISOTROPY or sides.max() < 2:
        return None
    z, y, x = (int(s) for s in sides)
    return (z, y, x)


# ----------------------------------------------------------------------------- training


@dataclass(frozen=True)
class _TrainingConfig:
    """Options both training stages share; see :class:`PretrainConfig`."""

    steps: int = 10_000
    batch_size: int = 8
    learning_rate: float = 5e-4
    schedule: str = "cosine"
    warmup_fraction: float = 0.05
    weight_decay: float = 0.05
    flips: bool = True
    seed: int = 0
    checkpoint_every: int = 500
    device: str = "auto"
    bf16: bool = True

    #: Fields a resumed run may change: they do not change what a step computes.
    RESUMABLE_CHANGES = ("steps", "checkpoint_every", "device", "bf16")

    def __post_init__(self) -> None:
        for name, minimum in (("steps", 1), ("batch_size", 1), ("checkpoint_every", 1)):
            object.__setattr__(self, name, _int_at_least(getattr(self, name), name, minimum))
        object.__setattr__(self, "seed", _int_at_least(self.seed, "seed", 0))
        for name, lo, hi in (
            ("learning_rate", 0.0, math.inf),
            ("warmup_fraction", 0.0, 1.0),
            ("weight_decay", 0.0, math.inf),
        ):
            value = getattr(self, name)
            if not (_is_number(value) and lo <= value <= hi):
                raise ValueError(f"{name} must be a number in [{lo:g}, {hi:g}], got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.learning_rate == 0:
            raise ValueError("learning_rate must be positive")
        from ..embed import resolve_device
        from ..train import SCHEDULES

        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        resolve_device(self.device, check=False)
        object.__setattr__(self, "bf16", bool(self.bf16))
        object.__setattr__(self, "flips", bool(self.flips))

    def learning_rate_at(self, step: int) -> float:
        """The learning rate of the update that makes step ``step`` (0-based)."""
        from ..train import TrainConfig

        # SegCLR training's warm-up + cosine schedule; it reads only steps,
        # learning_rate, warmup_fraction and schedule, which mean the same here.
        return TrainConfig.learning_rate_at(self, step)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-able dict (the model config as its own dict)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        if isinstance(data.get("model"), MAEConfig):
            data["model"] = data["model"].to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build a config from :meth:`to_dict` output; missing keys take the defaults."""
        return cls(**_known_keys(cls, data, "training config"))


@dataclass(frozen=True)
class PretrainConfig(_TrainingConfig):
    """How an MAE is pre-trained on unlabelled EM.

    Parameters
    ----------
    model
        An :class:`MAEConfig` or a preset name; its voxel size must be the data's.
    mask_ratio
        Fraction of each tile's patches hidden from the encoder (rounded to whole
        patches; at least one is hidden and one is seen).
    steps
        Optimiser steps in all (a resumed run counts those already done).
    batch_size
        Tiles per step, random crops of the volumes (drawn in proportion to their sizes).
    learning_rate, schedule, warmup_fraction, weight_decay
        Peak AdamW learning rate; "cosine" (linear warm-up, cosine decay to 0 at
        ``steps``) or "constant" (warm-up, then constant); AdamW's weight decay.
    flips
        Augment tiles by flipping each axis at random and swapping y and x.
    seed
        Seeds the initial weights and everything drawn at each step.
    checkpoint_every
        Write the checkpoint every this many steps (and after the last).
    device
        "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
    bf16
        On CUDA, run the network under bfloat16 autocast (losses stay float32).
    """

    model: MAEConfig | str = "small"
    mask_ratio: float = 0.75

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "model", _model_config(self.model))
        if not (_is_number(self.mask_ratio) and 0 < self.mask_ratio < 1):
            raise ValueError(f"mask_ratio must be a number in (0, 1), got {self.mask_ratio!r}")
        object.__setattr__(self, "mask_ratio", float(self.mask_ratio))
        masked = masked_count(self.model.num_patches, self.mask_ratio)
        if not 0 < masked < self.model.num_patches:
            raise ValueError(
                f"mask_ratio {self.mask_ratio:g} hides {masked} of the "
                f"{self.model.num_patches} patches of a tile; at least one must be hidden "
                "and one seen"
            )


@dataclass(frozen=True)
class FinetuneConfig(_TrainingConfig):
    """How an affinity network is trained on raw EM and its label volume.

    Parameters
    ----------
    model
        An :class:`MAEConfig` or a preset name for a network trained from scratch;
        None takes the config of the MAE checkpoint that :func:`finetune` starts
        from (and "small" without one).
    dice_weight
        Weight of the Dice loss on the boundary class beside the class-balanced
        binary cross-entropy.
    steps, batch_size, learning_rate, schedule, warmup_fraction, weight_decay, flips,
    seed, checkpoint_every, device, bf16
        As in :class:`PretrainConfig`; flips and axis swaps act on raw and labels
        together, before the labels become affinities.
    """

    model: MAEConfig | str | None = None
    dice_weight: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model is not None:
            object.__setattr__(self, "model", _model_config(self.model))
        if not (_is_number(self.dice_weight) and self.dice_weight >= 0):
            raise ValueError(f"dice_weight must be a number >= 0, got {self.dice_weight!r}")
        object.__setattr__(self, "dice_weight", float(self.dice_weight))


def masked_count(num_patches: int, mask_ratio: float) -> int:
    """Patches of a tile hidden from the encoder at ``mask_ratio``."""
    return round(mask_ratio * num_patches)


def normalise_intensity(raw: np.ndarray, config: MAEConfig) -> np.ndarray:
    """Raw intensities as float32 network input: ``(raw - mean) / std`` of ``config``."""
    if not config.has_intensity:
        raise ValueError(
            "the model's intensity normalisation is unknown: it is measured when training starts"
        )
    out = np.array(raw, dtype=np.float32)
    out -= np.float32(config.intensity_mean)
    out /= np.float32(config.intensity_std)
    return out


# ----------------------------------------------------------------------------- helpers


def _model_config(value: Any) -> MAEConfig:
    if isinstance(value, str):
        return get_preset(value)
    if isinstance(value, Mapping):
        return MAEConfig.from_dict(value)
    if not isinstance(value, MAEConfig):
        raise TypeError(f"model must be an MAEConfig or a preset name, got {value!r}")
    return value


def _known_keys(cls: type, data: Mapping[str, Any], what: str) -> dict[str, Any]:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} keys {unknown}; known keys are {sorted(known)}")
    return dict(data)


def _shape(value: Any, name: str) -> tuple[int, int, int]:
    try:
        items = tuple(value)
    except TypeError:
        items = ()
    if len(items) != 3 or not all(_positive_int(v) for v in items):
        raise ShapeMismatchError(f"{name} must be three positive integers (z, y, x), got {value!r}")
    z, y, x = (int(v) for v in items)
    return (z, y, x)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool) and value > 0


def _check_positive_int(value: Any, name: str) -> None:
    if not _positive_int(value):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _int_at_least(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float | np.floating | np.integer)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


# ----------------------------------------------------------------------------- presets

PRESETS: dict[str, MAEConfig] = {
    # A GPU model: 32 × 128 × 128 tiles (0.3 × 1.3 × 1.3 µm at 10 nm), 1024 tokens,
    # a 12-layer ViT of width 384.
    "base": MAEConfig(
        tile_shape=(32, 128, 128),
        patch_shape=(8, 8, 8),
        hidden_size=384,
        num_layers=12,
        num_heads=6,
        mlp_dim=1536,
        decoder_hidden_size=192,
        decoder_num_layers=4,
        decoder_num_heads=6,
        decoder_mlp_dim=768,
        feature_size=16,
    ),
    # Minutes on a CPU: 16 × 32 × 32 tiles, 256 tokens of 4³ voxels, 4 layers of width 96.
    "small": MAEConfig(
        tile_shape=(16, 32, 32),
        patch_shape=(4, 4, 4),
        hidden_size=96,
        num_layers=4,
        num_heads=4,
        mlp_dim=192,
        decoder_hidden_size=48,
        decoder_num_layers=1,
        decoder_num_heads=2,
        decoder_mlp_dim=96,
        feature_size=8,
    ),
    # Tests: 32 tokens, 2 layers of width 24; milliseconds per step.
    "tiny": MAEConfig(
        tile_shape=(8, 16, 16),
        patch_shape=(4, 4, 4),
        hidden_size=24,
        num_layers=2,
        num_heads=2,
        mlp_dim=48,
        decoder_hidden_size=12,
        decoder_num_layers=1,
        decoder_num_heads=2,
        decoder_mlp_dim=24,
        feature_size=4,
    ),
}


def get_preset(name: str) -> MAEConfig:
    """The preset called ``name`` ("base", "small" or "tiny"), at 10 nm voxels."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown MAE preset {name!r}; choose one of {sorted(PRESETS)}") from None
