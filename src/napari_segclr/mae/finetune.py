"""Fine-tuning: an affinity network on raw EM and its labels, from an MAE or from scratch."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..embed import volume_identity
from ..exceptions import CheckpointError, SegmentationDtypeError, ShapeMismatchError
from ..io import Volume
from ..model import model_signature
from ..train import TrainProgress, TrainResult
from .affinity import AffinityModel, affinity_loss
from .checkpoint import load_model
from .config import FinetuneConfig, MAEConfig, get_preset
from .data import check_volume, labelled_tiles, measure_intensity
from .loop import fit, step_generator

#: The network a run from scratch trains when the config names none.
DEFAULT_PRESET = "small"

Batch = tuple[np.ndarray, np.ndarray, np.ndarray]


def finetune(
    raw: Volume,
    labels: Volume,
    config: FinetuneConfig,
    *,
    checkpoint: str | os.PathLike[str],
    init: str | os.PathLike[str] | None = None,
    resume: bool = False,
    workers: int = 1,
    progress: Callable[[TrainProgress], None] | None = None,
    log: str | os.PathLike[str] | None = None,
    time_limit_s: float | None = None,
) -> TrainResult:
    """Train an :class:`~napari_segclr.mae.AffinityModel` to predict the affinities of labels.

    Each step crops ``config.batch_size`` tiles at random from ``raw`` and the
    same places of ``labels``, flips and swaps axes of both at random, turns the
    labels into affinities (two neighbours are affine when they hold the same
    non-zero id) and takes one AdamW step on the class-balanced cross-entropy
    plus Dice loss (:func:`~napari_segclr.mae.affinity_loss`).

    Parameters
    ----------
    raw, labels
        The EM and its dense segmentation (integer ids, 0 where unknown or
        boundary), on the same voxel grid.
    config
        The :class:`~napari_segclr.mae.FinetuneConfig`.
    checkpoint
        Where the checkpoint is written; its optimiser state goes beside it.
    init
        A pre-training checkpoint (:func:`~napari_segclr.mae.pretrain`) whose
        encoder starts the network, with its config and intensity normalisation;
        None trains from scratch (``config.model``, else the "small" preset, with
        the intensity normalisation measured on ``raw``).
    resume, workers, progress, log, time_limit_s
        As for :func:`~napari_segclr.mae.pretrain`; a resumed run needs the same ``init``.

    Raises
    ------
    CheckpointError
        ``init`` is no MAE pre-training checkpoint (a SegCLR or an affinity one, say),
        or holds another architecture than ``config.model``.
    SegmentationDtypeError, ShapeMismatchError, VoxelSizeError
        The labels are not integers, or the volumes do not share one grid, are at
        another voxel size than the network, or are smaller than a tile.
    """
    _check_pair(raw, labels)
    encoder_state, init_provenance, model_config = None, None, config.model
    if init is not None:
        mae, info = load_model(init, kind="mae")
        model_config = _init_config(Path(init), mae.config, config.model)
        encoder_state = mae.encoder.state_dict()
        init_provenance = {
            "checkpoint": str(Path(init).expanduser().resolve()),
            "signature": model_signature(mae),
            "step": info.get("step"),
        }
    elif model_config is None:
        model_config = get_preset(DEFAULT_PRESET)
    check_volume(raw, model_config, what="raw volume")
    if not model_config.has_intensity:
        mean, std = measure_intensity([raw], model_config.tile_shape, seed=config.seed)
        model_config = replace(model_config, intensity_mean=mean, intensity_std=std)
    config = replace(config, model=model_config)

    def build() -> AffinityModel:
        model = AffinityModel(model_config)
        if encoder_state is not None:
            model.encoder.load_state_dict(encoder_state)
        return model

    def make_batch(step: int) -> Batch:
        generator = step_generator(config.seed, step)
        return labelled_tiles(
            raw, labels, model_config, generator, count=config.batch_size, flips=config.flips
        )

    def loss(model: nn.Module, batch: Batch, step: int, device: torch.device) -> torch.Tensor:
        tiles, target, valid = (torch.from_numpy(a).to(device, non_blocking=True) for a in batch)
        return affinity_loss(model(tiles), target, valid, dice_weight=config.dice_weight)

    provenance: dict[str, Any] = {
        "raw": volume_identity(raw),
        "labels": volume_identity(labels),
        "init": init_provenance,
    }
    return fit(
        kind="affinity",
        build=build,
        config=config,
        provenance=provenance,
        checkpoint=checkpoint,
        resume=resume,
        make_batch=make_batch,
        loss=loss,
        workers=workers,
        progress=progress,
        log=log,
        time_limit_s=time_limit_s,
    )


def _check_pair(raw: Volume, labels: Volume) -> None:
    if not np.issubdtype(labels.dtype, np.integer):
        raise SegmentationDtypeError(
            f"labels {labels.source} must hold integer segment ids, got dtype {labels.dtype}"
        )
    same = (
        raw.shape == labels.shape
        and np.allclose(raw.voxel_size, labels.voxel_size)
        and np.allclose(raw.offset, labels.offset)
    )
    if not same:
        raise ShapeMismatchError(
            f"labels {labels.source} (shape {labels.shape}, voxel size {labels.voxel_size} nm, "
            f"offset {labels.offset} nm) do not lie on the voxel grid of the raw volume "
            f"{raw.source} (shape {raw.shape}, voxel size {raw.voxel_size} nm, "
            f"offset {raw.offset} nm)"
        )


def _init_config(path: Path, found: MAEConfig, asked: MAEConfig | None) -> MAEConfig:
    """The pre-trained network's config, which ``asked`` (if any) must agree with."""
    if asked is None:
        return found
    differ = [
        name
        for name, value in asked.to_dict().items()
        if not name.startswith("intensity_") and found.to_dict()[name] != value
    ]
    if differ:
        raise CheckpointError(
            f"{path} holds an MAE of another architecture than asked for (it differs in "
            f"{', '.join(differ)}); leave the model config out to take the checkpoint's"
        )
    return found
