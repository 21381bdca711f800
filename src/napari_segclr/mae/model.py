"""The 3D ViT encoder and the masked autoencoder built on it.

A tile (B, 1, Z, Y, X) is cut into ``config.grid_shape`` patches of
``config.patch_shape`` voxels; token ``i`` is patch ``(z, y, x)`` in C order
(``i = (z * gy + y) * gx + x``), the order of :func:`patchify`. Pre-training
hides a random subset of the tokens from the encoder, and a light transformer
decoder predicts the voxels of the hidden patches, each patch normalised to
mean 0 and variance 1 (He et al. 2022; in 3D EM, Cheng et al. 2023).

The transformer blocks are PyTorch's pre-norm ``TransformerEncoderLayer``
(fused scaled-dot-product attention on CPU and GPU). Position embeddings are
fixed sines and cosines of each patch centre in physical units, so anisotropic
patches of anisotropic voxels keep their true geometry.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..exceptions import ShapeMismatchError
from .config import MAEConfig, masked_count, normalise_intensity

#: Added to the patch variance before dividing by its square root.
TARGET_EPS = 1e-6


class ViTEncoder(nn.Module):
    """Patch embedding, transformer blocks and a final layer norm.

    ``forward(x, keep)`` encodes tiles (B, 1, Z, Y, X), or only the tokens at
    indices ``keep`` (B, K), and returns the normalised last tokens
    (B, N or K, hidden) and the output of every block (before the norm).
    """

    def __init__(self, config: MAEConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embedding = nn.Conv3d(
            1, config.hidden_size, kernel_size=config.patch_shape, stride=config.patch_shape
        )
        self.register_buffer(
            "position", position_embedding(config, config.hidden_size), persistent=False
        )
        self.blocks = nn.ModuleList(
            transformer_block(config.hidden_size, config.num_heads, config.mlp_dim)
            for _ in range(config.num_layers)
        )
        self.norm = nn.LayerNorm(config.hidden_size)

    def forward(
        self, x: torch.Tensor, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        check_tiles(x, self.config)
        tokens = self.patch_embedding(x).flatten(2).transpose(1, 2) + self.position
        if keep is not None:
            tokens = torch.gather(tokens, 1, keep[..., None].expand(-1, -1, tokens.shape[-1]))
        hidden = []
        for block in self.blocks:
            tokens = block(tokens)
            hidden.append(tokens)
        return self.norm(tokens), hidden


class MaskedAutoencoder(nn.Module):
    """A ViT encoder that sees part of each tile and a decoder that predicts the rest.

    Examples
    --------
    >>> from napari_segclr.mae import get_preset, patchify, reconstruction_loss
    >>> model = MaskedAutoencoder(get_preset("tiny"))
    >>> tiles = torch.randn(2, 1, 8, 16, 16)
    >>> prediction, mask = model(tiles, mask_ratio=0.75)
    >>> prediction.shape, int(mask.sum(1)[0])
    (torch.Size([2, 32, 64]), 24)
    >>> loss = reconstruction_loss(prediction, patchify(tiles, (4, 4, 4)), mask)
    """

    def __init__(self, config: MAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ViTEncoder(config)
        width = config.decoder_hidden_size
        self.decoder_embed = nn.Linear(config.hidden_size, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.register_buffer(
            "decoder_position", position_embedding(config, width), persistent=False
        )
        self.decoder_blocks = nn.Sequential(
            *(
                transformer_block(width, config.decoder_num_heads, config.decoder_mlp_dim)
                for _ in range(config.decoder_num_layers)
            ),
            nn.LayerNorm(width),
        )
        self.decoder_pred = nn.Linear(width, config.patch_voxels)

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask_ratio: float,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict every patch of tiles (B, 1, Z, Y, X) from a random part of them.

        Returns the predicted voxels (B, N, patch voxels), meant to match the
        normalised patches (:func:`patch_targets`), and the mask (B, N) bool, True
        where a patch was hidden from the encoder. Which patches are hidden is
        drawn on the CPU from ``generator`` (the same on any device).
        """
        keep, mask = random_masking(
            len(x), self.config.num_patches, mask_ratio, generator=generator, device=x.device
        )
        latent, _ = self.encoder(x, keep)
        latent = self.decoder_embed(latent)
        tokens = self.mask_token.to(latent.dtype).expand(len(x), self.config.num_patches, -1)
        tokens = tokens.scatter(1, keep[..., None].expand(-1, -1, latent.shape[-1]), latent)
        decoded = self.decoder_blocks(tokens + self.decoder_position)
        return self.decoder_pred(decoded), mask

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        """Raw intensities as the network's float32 input (the training normalisation)."""
        return normalise_intensity(raw, self.config)


def transformer_block(width: int, heads: int, mlp_dim: int) -> nn.TransformerEncoderLayer:
    """A pre-norm transformer block with GELU and no dropout."""
    return nn.TransformerEncoderLayer(
        width,
        heads,
        mlp_dim,
        dropout=0.0,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )


def position_embedding(config: MAEConfig, width: int) -> torch.Tensor:
    """Fixed sine-cosine embeddings (1, N, width) of the patch centres.

    Each axis gets ``width / 3`` channels: sines and cosines of the centre's
    coordinate in units of the mean patch side (nm), at geometric frequencies.
    """
    grid = np.stack(np.meshgrid(*map(np.arange, config.grid_shape), indexing="ij"), -1)
    patch = np.array(config.patch_nm)
    centres = (grid.reshape(-1, 3) + 0.5) * patch / patch.mean()
    per_axis = width // 6
    frequencies = 1.0 / 10_000.0 ** (np.arange(per_axis) / per_axis)
    angles = centres[:, :, None] * frequencies  # (N, 3, per_axis)
    table = np.concatenate([np.sin(angles), np.cos(angles)], axis=-1).reshape(len(centres), -1)
    return torch.from_numpy(table.astype(np.float32))[None]


def random_masking(
    batch: int,
    num_patches: int,
    mask_ratio: float,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the patches each tile keeps (B, K) and the mask (B, N), True where hidden.

    Exactly ``round(mask_ratio * num_patches)`` patches are hidden in every
    tile, chosen uniformly; the kept indices are sorted.
    """
    hidden = masked_count(num_patches, mask_ratio)
    if not 0 < hidden < num_patches:
        raise ValueError(
            f"mask_ratio {mask_ratio:g} hides {hidden} of {num_patches} patches; "
            "at least one must be hidden and one seen"
        )
    noise = torch.rand(batch, num_patches, generator=generator)
    keep = noise.argsort(dim=1)[:, : num_patches - hidden].sort(dim=1).values
    mask = torch.ones(batch, num_patches, dtype=torch.bool)
    mask.scatter_(1, keep, False)
    return keep.to(device), mask.to(device)


def patchify(x: torch.Tensor, patch_shape: tuple[int, int, int]) -> torch.Tensor:
    """Tiles (B, 1, Z, Y, X) as patches (B, N, pz·py·px), tokens in C order of the grid."""
    b, _, z, y, x_ = x.shape
    pz, py, px = patch_shape
    cut = x.reshape(b, z // pz, pz, y // py, py, x_ // px, px)
    return cut.permute(0, 1, 3, 5, 2, 4, 6).reshape(b, -1, pz * py * px)


def patch_targets(patches: torch.Tensor) -> torch.Tensor:
    """Each patch (…, P) shifted and scaled to mean 0 and variance 1."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, unbiased=False, keepdim=True)
    return (patches - mean) / torch.sqrt(var + TARGET_EPS)


def reconstruction_loss(
    prediction: torch.Tensor, patches: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean squared error to the normalised patches, over the hidden patches only.

    ``prediction`` and ``patches`` are (B, N, P); ``mask`` (B, N) is True where
    a patch was hidden. Computed in float32 whatever the prediction's dtype.
    """
    error = (prediction.float() - patch_targets(patches.float())).pow(2).mean(dim=-1)
    weights = mask.to(error.dtype)
    return (error * weights).sum() / weights.sum()


def check_tiles(x: torch.Tensor, config: MAEConfig) -> None:
    """Tiles must be float (B, 1, *config.tile_shape)."""
    expected = (1, *config.tile_shape)
    if x.ndim != 5 or tuple(x.shape[1:]) != expected:
        raise ShapeMismatchError(
            f"tiles must have shape (B, {', '.join(map(str, expected))}) for this model, "
            f"got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"tiles must be a float tensor, got {x.dtype}")
