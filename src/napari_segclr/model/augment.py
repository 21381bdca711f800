"""Batched, on-device augmentations of (B, C, Z, Y, X) views for SegCLR training.

Each transform draws its random parameters per sample from its own CPU
``torch.Generator``, so a seed gives the same augmentation on CPU and GPU. Only
the few parameters are drawn on the CPU; the views never leave their device.
The random shift of the view centre is not here: views are extracted shifted.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..exceptions import ShapeMismatchError
from ..views.spec import INPUT_KINDS
from .presets import ModelConfig

#: The spatial axes of a view, in array order after (batch, channel).
AXES = ("z", "y", "x")


def _generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def _check_views(views: torch.Tensor) -> None:
    if views.ndim != 5 or not views.is_floating_point():
        raise ShapeMismatchError(
            f"views must be a float (B, C, Z, Y, X) tensor, got {views.dtype} of shape "
            f"{tuple(views.shape)}"
        )


def _check_axes(axes: Sequence[str], name: str) -> tuple[str, ...]:
    chosen = tuple(axes)
    if isinstance(axes, str) or len(set(chosen)) != len(chosen) or not set(chosen) <= set(AXES):
        raise ValueError(f"{name} must be distinct axes among {AXES}, got {axes!r}")
    return chosen


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) values shaped (B, 1, 1, 1, 1) on the device and in the dtype of ``like``."""
    return values.to(device=like.device, dtype=like.dtype).view(-1, 1, 1, 1, 1)


class RandomIntensity(nn.Module):
    """Brightness, contrast and gamma of the EM channels, as in SegCLR.

    Each sample gets ``clip(x * a + b, 0, 1) ** g`` with ``a = 1 + U(-contrast,
    contrast)``, ``b = U(-brightness, brightness)`` and ``g = 2 ** U(-gamma_log2,
    gamma_log2)``, the same for all EM channels of that sample. EM channels hold
    values in [0, 1]. Mask channels are left as they are, and masked-EM voxels that
    are 0 (outside the segment) stay 0.

    Parameters
    ----------
    input_kinds
        Kind of each channel (see :data:`~napari_segclr.model.presets.INPUT_KINDS`).
    contrast, brightness, gamma_log2
        Half-widths of the uniform ranges above (SegCLR: 0.25, 0.25, 1).
    seed
        Seed of this transform's generator; ``None`` seeds it at random.
    """

    def __init__(
        self,
        input_kinds: Sequence[str],
        *,
        contrast: float = 0.25,
        brightness: float = 0.25,
        gamma_log2: float = 1.0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        kinds = tuple(input_kinds)
        if isinstance(input_kinds, str) or not kinds or not set(kinds) <= set(INPUT_KINDS):
            raise ValueError(
                f"input_kinds must be a sequence of {INPUT_KINDS}, got {input_kinds!r}"
            )
        for name, value in (
            ("contrast", contrast),
            ("brightness", brightness),
            ("gamma_log2", gamma_log2),
        ):
            if not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a finite number ≥ 0, got {value!r}")
        self.input_kinds = kinds
        self.contrast = contrast
        self.brightness = brightness
        self.gamma_log2 = gamma_log2
        self.generator = _generator(seed)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        _check_views(views)
        if views.shape[1] != len(self.input_kinds):
            raise ShapeMismatchError(
                f"views have {views.shape[1]} channels but input_kinds names "
                f"{len(self.input_kinds)}: {self.input_kinds}"
            )
        u = torch.rand(3, views.shape[0], generator=self.generator) * 2 - 1
        scale = _per_sample(1 + self.contrast * u[0], views)
        offset = _per_sample(self.brightness * u[1], views)
        gamma = _per_sample(2 ** (self.gamma_log2 * u[2]), views)
        changed = (views * scale + offset).clamp(0, 1).pow(gamma)

        def channels(*kinds: str) -> torch.Tensor:
            flags = torch.tensor([k in kinds for k in self.input_kinds], device=views.device)
            return flags.view(1, -1, 1, 1, 1)

        keep = ~channels("em", "masked_em") | (channels("masked_em") & (views == 0))
        return torch.where(keep, views, changed)

    def extra_repr(self) -> str:
        return (
            f"input_kinds={self.input_kinds}, contrast={self.contrast}, "
            f"brightness={self.brightness}, gamma_log2={self.gamma_log2}"
        )


class RandomFlip(nn.Module):
    """Flip each sample along each of ``axes`` with probability ``p``, independently."""

    def __init__(
        self, *, axes: Sequence[str] = AXES, p: float = 0.5, seed: int | None = None
    ) -> None:
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
        self.axes = _check_axes(axes, "axes")
        self.p = p
        self.generator = _generator(seed)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        _check_views(views)
        flips = torch.rand(views.shape[0], len(self.axes), generator=self.generator) < self.p
        for column, axis in zip(flips.T, self.axes, strict=True):
            if column.any():
                dim = 2 + AXES.index(axis)
                flip = column.to(views.device).view(-1, 1, 1, 1, 1)
                views = torch.where(flip, views.flip(dim), views)
        return views

    def extra_repr(self) -> str:
        return f"axes={self.axes}, p={self.p}"


class RandomAxisPermutation(nn.Module):
    """Permute ``axes`` of each sample by a permutation drawn uniformly.

    ``axes=("z", "y", "x")`` suits isotropic views; for anisotropic data permute
    only ``("y", "x")``. Views must have equal sizes along the permuted axes.
    """

    def __init__(self, *, axes: Sequence[str] = AXES, seed: int | None = None) -> None:
        super().__init__()
        self.axes = _check_axes(axes, "axes")
        if len(self.axes) < 2:
            raise ValueError(f"axes must name at least two axes to permute, got {self.axes!r}")
        self.generator = _generator(seed)
        # Each permutation as the full order of the spatial dims (batch and channel stay).
        positions = [AXES.index(a) for a in self.axes]
        self._orders = []
        for perm in itertools.permutations(positions):
            order = [0, 1, 2, 3, 4]
            for position, source in zip(positions, perm, strict=True):
                order[2 + position] = 2 + source
            self._orders.append(tuple(order))

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        _check_views(views)
        sizes = {views.shape[2 + AXES.index(a)] for a in self.axes}
        if len(sizes) > 1:
            raise ShapeMismatchError(
                f"views of shape {tuple(views.shape[2:])} (z, y, x) cannot have axes "
                f"{self.axes} permuted: their sizes differ"
            )
        choice = torch.randint(len(self._orders), (views.shape[0],), generator=self.generator)
        out = torch.empty_like(views)
        for k in choice.unique().tolist():
            index = (choice == k).nonzero().squeeze(1).to(views.device)
            out[index] = views[index].permute(self._orders[k])
        return out

    def extra_repr(self) -> str:
        return f"axes={self.axes}"


class SegclrAugment(nn.Sequential):
    """The SegCLR augmentations in order: intensity (EM channels), flips, axis permutation.

    Parameters
    ----------
    input_kinds
        Kind of each channel, as in the model config.
    flip_axes
        Axes to flip at random; empty to switch flips off.
    permute_axes
        Axes to permute at random; fewer than two to switch permutation off.
    contrast, brightness, gamma_log2
        Intensity ranges, see :class:`RandomIntensity`.
    seed
        One seed for all three transforms (each gets its own stream); ``None`` for random.

    Examples
    --------
    >>> import torch
    >>> from napari_segclr.model import get_preset
    >>> cfg = get_preset("tiny")
    >>> augment = SegclrAugment.from_config(cfg, seed=0)
    >>> augment(torch.rand(4, cfg.in_channels, *cfg.view_shape)).shape
    torch.Size([4, 1, 17, 17, 17])
    """

    def __init__(
        self,
        input_kinds: Sequence[str],
        *,
        flip_axes: Sequence[str] = AXES,
        permute_axes: Sequence[str] = AXES,
        contrast: float = 0.25,
        brightness: float = 0.25,
        gamma_log2: float = 1.0,
        seed: int | None = None,
    ) -> None:
        seeds: list[int | None] = [None] * 3
        if seed is not None:
            seeds = [int(s) for s in np.random.SeedSequence(seed).generate_state(3, np.uint64)]
        transforms: list[nn.Module] = [
            RandomIntensity(
                input_kinds,
                contrast=contrast,
                brightness=brightness,
                gamma_log2=gamma_log2,
                seed=seeds[0],
            )
        ]
        if flip_axes:
            transforms.append(RandomFlip(axes=flip_axes, seed=seeds[1]))
        if len(tuple(permute_axes)) >= 2:
            transforms.append(RandomAxisPermutation(axes=permute_axes, seed=seeds[2]))
        super().__init__(*transforms)

    @classmethod
    def from_config(cls, config: ModelConfig, *, seed: int | None = None) -> SegclrAugment:
        """Augmentations for a model config: permute all axes of cubic, isotropic views,
        only y/x where only those match (anisotropic data), else none."""
        return cls(config.input_kinds, permute_axes=equivalent_axes(config), seed=seed)


def equivalent_axes(config: ModelConfig) -> tuple[str, ...]:
    """The axes of a view that may be exchanged: same voxel count and voxel size."""

    def same(a: int, b: int) -> bool:
        return config.view_shape[a] == config.view_shape[b] and math.isclose(
            config.voxel_size_nm[a], config.voxel_size_nm[b], rel_tol=1e-6
        )

    if same(0, 1) and same(1, 2):
        return AXES
    if same(1, 2):
        return ("y", "x")
    return ()
