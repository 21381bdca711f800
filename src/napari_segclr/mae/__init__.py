"""MAE self-pre-training of a 3D ViT on unlabelled EM, and affinity networks built on it.

Pre-train on unlabelled volumes, fine-tune on a labelled one, and hand the
result to segmentation::

    from napari_segclr.io import open_volume
    from napari_segclr.mae import FinetuneConfig, PretrainConfig, finetune, pretrain
    from napari_segclr.mae import load_affinity_model

    em = open_volume("unlabelled.tif", voxel_size=10)
    pretrain(em, PretrainConfig(model="small", mask_ratio=0.75, steps=2000), checkpoint="mae.pt")
    raw = open_volume("raw.tif", voxel_size=10)
    labels = open_volume("labels.tif", voxel_size=10, kind="labels")
    finetune(raw, labels, FinetuneConfig(steps=2000), init="mae.pt", checkpoint="aff.pt")
    model = load_affinity_model("aff.pt")  # tiles (B, 1, *model.patch_shape) → (B, 3, …) logits

The pieces compose too: :class:`MaskedAutoencoder` with :func:`patchify` and
:func:`reconstruction_loss`; :class:`AffinityModel` with
:func:`labels_to_affinities` and :func:`affinity_loss`.
"""

from .affinity import AffinityModel, affinity_loss, labels_to_affinities, upsampling_factors
from .checkpoint import load_affinity_model, load_model, save_model
from .config import (
    MAX_PATCH_ANISOTROPY,
    PRESETS,
    FinetuneConfig,
    MAEConfig,
    PretrainConfig,
    get_preset,
    normalise_intensity,
    patch_shape_for,
)
from .finetune import finetune
from .model import (
    MaskedAutoencoder,
    ViTEncoder,
    patch_targets,
    patchify,
    random_masking,
    reconstruction_loss,
)
from .pretrain import pretrain

__all__ = [
    "MAX_PATCH_ANISOTROPY",
    "PRESETS",
    "AffinityModel",
    "FinetuneConfig",
    "MAEConfig",
    "MaskedAutoencoder",
    "PretrainConfig",
    "ViTEncoder",
    "affinity_loss",
    "finetune",
    "get_preset",
    "labels_to_affinities",
    "load_affinity_model",
    "load_model",
    "normalise_intensity",
    "patch_shape_for",
    "patch_targets",
    "patchify",
    "pretrain",
    "random_masking",
    "reconstruction_loss",
    "save_model",
    "upsampling_factors",
]
