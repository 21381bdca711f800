"""Nearest-neighbour affinities: the network that predicts them, their targets and loss.

Channel ``c`` of an affinity volume (3, Z, Y, X) links each voxel to its
neighbour one voxel back along axis ``c``: channel 0 to ``z - 1``, 1 to
``y - 1``, 2 to ``x - 1``. Two voxels are affine when they hold the same
non-zero segment id.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetResBlock, UnetrUpBlock
from monai.networks.blocks.dynunet_block import get_conv_layer
from torch import nn

from .config import MAEConfig, normalise_intensity
from .model import ViTEncoder

#: Normalisation of the convolutional decoder's blocks (batch-size independent).
NORM = "instance"


class AffinityModel(nn.Module):
    """A ViT encoder with a UNETR-style decoder: tiles (B, 1, Z, Y, X) → affinity logits.

    The decoder climbs from the token grid to full resolution one factor of 2 at a
    time (per axis, until that axis's patch side is undone), joining at each level
    the tokens of an earlier transformer block brought up to it, and at full
    resolution convolutional features of the input (Hatamizadeh et al. 2022).

    Attributes
    ----------
    config
        The :class:`~napari_segclr.mae.MAEConfig`.
    patch_shape
        The input tile (z, y, x) in voxels, ``config.tile_shape`` (the ViT's own
        patches are ``config.patch_shape``).
    voxel_size_nm
        Voxel size (z, y, x) in nm the network was trained at.

    Examples
    --------
    >>> from napari_segclr.mae import get_preset
    >>> model = AffinityModel(get_preset("tiny")).eval()
    >>> model(torch.zeros(1, 1, 8, 16, 16)).shape
    torch.Size([1, 3, 8, 16, 16])
    """

    def __init__(self, config: MAEConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_shape = config.tile_shape
        self.voxel_size_nm = config.voxel_size_nm
        self.encoder = ViTEncoder(config)
        factors = upsampling_factors(config.patch_shape)
        levels = len(factors)
        width = [config.feature_size * 2**level for level in range(levels)]
        self.skip_layers = [config.num_layers * level // levels for level in range(1, levels)]
        self.stem = UnetrBasicBlock(
            3, 1, width[0], kernel_size=3, stride=1, norm_name=NORM, res_block=True
        )
        self.skips = nn.ModuleList(
            _TokenUpsampler(config.hidden_size, width[level], factors[level:])
            for level in range(1, levels)
        )
        self.ups = nn.ModuleList(
            UnetrUpBlock(
                3,
                config.hidden_size if level == levels - 1 else width[level + 1],
                width[level],
                kernel_size=3,
                upsample_kernel_size=factors[level],
                norm_name=NORM,
                res_block=True,
            )
            for level in range(levels)
        )
        self.head = UnetOutBlock(3, width[0], 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Affinity logits (B, 3, Z, Y, X) of tiles (B, 1, *patch_shape), float."""
        last, hidden = self.encoder(x)
        grid = self.config.grid_shape
        features = [self.stem(x)] + [
            skip(_token_volume(hidden[layer], grid))
            for skip, layer in zip(self.skips, self.skip_layers, strict=True)
        ]
        out = _token_volume(last, grid)
        for level in reversed(range(len(self.ups))):
            out = self.ups[level](out, features[level])
        return self.head(out)

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        """Raw intensities as the network's float32 input (the training normalisation)."""
        return normalise_intensity(raw, self.config)


class _TokenUpsampler(nn.Sequential):
    """Tokens on their grid, brought up to a finer level by transposed convolutions."""

    def __init__(self, hidden: int, width: int, factors: list[tuple[int, int, int]]) -> None:
        layers: list[nn.Module] = []
        channels = hidden
        for factor in reversed(factors):
            layers.append(
                get_conv_layer(
                    3, channels, width, kernel_size=factor, stride=factor,
                    conv_only=True, is_transposed=True,
                )
            )  # fmt: skip
            channels = width
        layers.append(UnetResBlock(3, width, width, kernel_size=3, stride=1, norm_name=NORM))
        super().__init__(*layers)


def upsampling_factors(patch_shape: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """Factor (z, y, x) between level ``k`` and ``k + 1`` of the decoder, for each ``k``.

    Level 0 is full resolution and the last level the token grid: each step
    halves every axis whose patch side is not yet undone.

    >>> upsampling_factors((2, 8, 8))
    [(2, 2, 2), (1, 2, 2), (1, 2, 2)]
    """
    sides = np.array(patch_shape)
    factors = []
    done = np.ones(3, dtype=int)
    while np.any(done < sides):
        step = np.where(done < sides, 2, 1)
        done *= step
        z, y, x = (int(f) for f in step)
        factors.append((z, y, x))
    return factors


def _token_volume(tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """Tokens (B, N, C) as a volume (B, C, *grid)."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)


# ----------------------------------------------------------------------------- targets


def labels_to_affinities(labels: np.ndarray) -> np.ndarray:
    """Affinities (3, Z, Y, X) uint8 of a label volume (Z, Y, X).

    1 where a voxel and its neighbour one back along the channel's axis hold the
    same non-zero id; the first plane of each axis, with no neighbour, is 0.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be a 3D (z, y, x) array, got shape {labels.shape}")
    out = np.zeros((3, *labels.shape), dtype=np.uint8)
    for axis in range(3):
        here = [slice(None)] * 3
        back = [slice(None)] * 3
        here[axis], back[axis] = slice(1, None), slice(None, -1)
        same = (labels[tuple(here)] == labels[tuple(back)]) & (labels[tuple(here)] != 0)
        out[(axis, *here)] = same
    return out


def affinity_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    *,
    dice_weight: float = 1.0,
) -> torch.Tensor:
    """Class-balanced binary cross-entropy plus Dice loss of the boundary class.

    ``logits``, ``target`` (0/1) and ``valid`` (0/1, where the target is known)
    are (B, 3, Z, Y, X). Within each channel, affine and non-affine voxels weigh
    half of the cross-entropy each; the soft Dice loss is taken on the boundaries
    (1 - affinity), the rare class. Computed in float32.
    """
    logits, target, valid = logits.float(), target.float(), valid.float()
    dims = (0, 2, 3, 4)
    count = valid.sum(dims).clamp_min(1.0)
    positive = ((target * valid).sum(dims) / count).clamp(0.01, 0.99)
    shape = (1, -1, 1, 1, 1)
    weight = valid * torch.where(
        target > 0.5, 0.5 / positive.view(shape), 0.5 / (1 - positive).view(shape)
    )
    bce = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum")
    bce = bce / valid.sum().clamp_min(1.0)
    boundary = (1 - torch.sigmoid(logits)) * valid
    truth = (1 - target) * valid
    overlap = (boundary * truth).sum(dims)
    dice = 1 - (2 * overlap + 1) / (boundary.sum(dims) + truth.sum(dims) + 1)
    return bce + dice_weight * dice.mean()
