"""The SegCLR encoder: a 3D ResNet-18 backbone and an MLP to the embedding.

The backbone is MONAI's maintained 3D ResNet (basic blocks, 7³ stride-2 stem,
max-pool, four stages, global average pool), with its widths, blocks per stage
and input channels taken from a :class:`~napari_segclr.model.presets.ModelConfig`.
"""

from __future__ import annotations

import torch
from monai.networks.nets import ResNet
from torch import nn

from .heads import MLPHead
from .presets import ModelConfig


def resnet_backbone(config: ModelConfig) -> ResNet:
    """The 3D ResNet of ``config``: (B, C, Z, Y, X) views → (B, stage_widths[-1]) features."""
    return ResNet(
        "basic",
        list(config.stage_blocks),
        list(config.stage_widths),
        spatial_dims=3,
        n_input_channels=config.in_channels,
        conv1_t_size=7,
        conv1_t_stride=2,
        feed_forward=False,
        # The 1×1 shortcut convolutions feed a batch norm: a bias there is redundant.
        bias_downsample=False,
    )


class SegclrEncoder(nn.Module):
    """Views (B, C, Z, Y, X) → embeddings (B, embedding_dim).

    Examples
    --------
    >>> import torch
    >>> from napari_segclr.model import get_preset
    >>> cfg = get_preset("tiny")
    >>> encoder = SegclrEncoder(cfg).eval()
    >>> encoder(torch.rand(2, cfg.in_channels, *cfg.view_shape)).shape
    torch.Size([2, 64])
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = resnet_backbone(config)
        self.head = MLPHead(config.stage_widths[-1], config.embedding_hidden, config.embedding_dim)

    def features(self, views: torch.Tensor) -> torch.Tensor:
        """Globally pooled backbone features (B, stage_widths[-1])."""
        return self.backbone(views)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(views))
