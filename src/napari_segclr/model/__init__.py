"""SegCLR in PyTorch: the network, the contrastive loss and the augmentations.

Compose a training step in a few lines::

    import torch
    from napari_segclr.model import NTXentLoss, SegclrAugment, SegclrModel, get_preset

    config = get_preset("lite")
    model = SegclrModel(config)
    augment = SegclrAugment.from_config(config, seed=0)
    loss_fn = NTXentLoss(config.temperature)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    views1, views2 = ...  # (B, C, Z, Y, X) float views of B positive pairs
    _, z1 = model(augment(views1))
    _, z2 = model(augment(views2))
    loss = loss_fn(z1, z2)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

and embed with ``model.eval().embed(views)`` (B, 64).
"""

from ..views.spec import INPUT_KINDS
from .augment import (
    AXES,
    RandomAxisPermutation,
    RandomFlip,
    RandomIntensity,
    SegclrAugment,
    equivalent_axes,
)
from .encoder import SegclrEncoder, resnet_backbone
from .heads import MLPHead, ProjectionHead
from .loss import NTXentLoss, nt_xent_loss
from .presets import PRESETS, ModelConfig, get_preset
from .segclr import (
    SegclrModel,
    atomic_torch_save,
    count_flops,
    load_checkpoint,
    model_signature,
    save_checkpoint,
    weights_digest,
)

__all__ = [
    "AXES",
    "INPUT_KINDS",
    "PRESETS",
    "MLPHead",
    "ModelConfig",
    "NTXentLoss",
    "ProjectionHead",
    "RandomAxisPermutation",
    "RandomFlip",
    "RandomIntensity",
    "SegclrAugment",
    "SegclrEncoder",
    "SegclrModel",
    "atomic_torch_save",
    "count_flops",
    "equivalent_axes",
    "get_preset",
    "load_checkpoint",
    "model_signature",
    "nt_xent_loss",
    "resnet_backbone",
    "save_checkpoint",
    "weights_digest",
]
