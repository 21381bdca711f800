"""MAE pre-training on unlabelled EM volumes."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from ..embed import volume_identity
from ..io import Volume
from ..train import TrainProgress, TrainResult
from .config import PretrainConfig
from .data import TileSampler, check_volume, measure_intensity, raw_tiles
from .loop import fit, step_generator, step_torch_generator
from .model import MaskedAutoencoder, patchify, reconstruction_loss


def pretrain(
    volumes: Volume | Sequence[Volume],
    config: PretrainConfig,
    *,
    checkpoint: str | os.PathLike[str],
    resume: bool = False,
    workers: int = 1,
    progress: Callable[[TrainProgress], None] | None = None,
    log: str | os.PathLike[str] | None = None,
    time_limit_s: float | None = None,
) -> TrainResult:
    """Pre-train a masked autoencoder on random tiles of EM volumes.

    Each step crops ``config.batch_size`` tiles at random from the volumes,
    normalises their intensities (with the model config's, measured on random
    tiles of these volumes when it has none), flips and swaps axes at random,
    hides ``config.mask_ratio`` of each tile's patches from the encoder and
    takes one AdamW step on the reconstruction loss of the hidden patches.

    Parameters
    ----------
    volumes
        EM volumes at the model's voxel size, each at least one tile large
        (:func:`~napari_segclr.io.open_volume` opens them lazily; only tiles are read).
    config
        The :class:`~napari_segclr.mae.PretrainConfig`.
    checkpoint
        Where the checkpoint is written (every ``config.checkpoint_every`` steps and
        after the last); its optimiser state goes beside it.
    resume
        Continue the run at ``checkpoint``, or start one if there is none. The config
        may differ only in ``steps``, ``checkpoint_every``, ``device`` and ``bf16``,
        and the volumes must be the same. Without it an existing checkpoint is an
        error, never overwritten.
    workers
        Threads that crop the next steps' tiles while the network trains.
    progress
        Called with a :class:`~napari_segclr.train.TrainProgress` after every step;
        an exception it raises stops training (the last checkpoint stays as it was).
    log
        CSV file of one row per step: step, loss, learning_rate, elapsed_s.
    time_limit_s
        Stop after the first step that ends this many seconds after the start,
        with a checkpoint there (a later call with ``resume`` goes on).

    Raises
    ------
    VoxelSizeError, ShapeMismatchError
        A volume is at another voxel size than the model, or smaller than a tile.
    OutputExistsError, CheckpointError
        As for :func:`napari_segclr.train.train`.
    """
    volumes = [volumes] if isinstance(volumes, Volume) else list(volumes)
    if not volumes or not all(isinstance(v, Volume) for v in volumes):
        raise TypeError("volumes must be a Volume or a non-empty sequence of them")
    model_config = config.model
    for volume in volumes:
        check_volume(volume, model_config, what="pre-training volume")
    if not model_config.has_intensity:
        mean, std = measure_intensity(volumes, model_config.tile_shape, seed=config.seed)
        config = replace(
            config, model=replace(model_config, intensity_mean=mean, intensity_std=std)
        )
    sampler = TileSampler(volumes, config.model.tile_shape)

    def make_batch(step: int) -> np.ndarray:
        generator = step_generator(config.seed, step)
        return raw_tiles(
            sampler, config.model, generator, count=config.batch_size, flips=config.flips
        )

    def loss(model: nn.Module, tiles: np.ndarray, step: int, device: torch.device) -> torch.Tensor:
        batch = torch.from_numpy(tiles).to(device, non_blocking=True)
        masks = step_torch_generator(config.seed, step)
        prediction, mask = model(batch, mask_ratio=config.mask_ratio, generator=masks)
        return reconstruction_loss(prediction, patchify(batch, config.model.patch_shape), mask)

    return fit(
        kind="mae",
        build=lambda: MaskedAutoencoder(config.model),
        config=config,
        provenance={"volumes": [volume_identity(v) for v in volumes]},
        checkpoint=checkpoint,
        resume=resume,
        make_batch=make_batch,
        loss=loss,
        workers=workers,
        progress=progress,
        log=log,
        time_limit_s=time_limit_s,
    )
