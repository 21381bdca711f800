"""Checkpoints of MAE and affinity networks: weights, full config and provenance.

One file format for both kinds of network; ``kind`` says which it holds, so a
pre-training checkpoint is never taken for a segmentation network or the
other way round, and a SegCLR checkpoint is recognised and refused by name.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..exceptions import CheckpointError
from ..model import atomic_torch_save
from ..model.segclr import CHECKPOINT_FORMAT as SEGCLR_FORMAT
from .affinity import AffinityModel
from .config import MAEConfig
from .model import MaskedAutoencoder

CHECKPOINT_FORMAT = "napari-segclr/mae"
CHECKPOINT_VERSION = 1
#: What each kind of checkpoint holds, and the command that writes it.
KINDS: dict[str, tuple[type[nn.Module], str]] = {
    "mae": (MaskedAutoencoder, "an MAE pre-trained network (pretrain-mae)"),
    "affinity": (AffinityModel, "an affinity network (finetune-mae)"),
}


def kind_of(model: nn.Module) -> str:
    """The kind of checkpoint ("mae" or "affinity") that holds ``model``."""
    for kind, (cls, _) in KINDS.items():
        if type(model) is cls:
            return kind
    raise TypeError(f"not an MAE or affinity network: {type(model).__name__}")


def save_model(path: str | os.PathLike[str], model: nn.Module, *, extra: dict) -> None:
    """Write ``model``'s weights, its config and ``extra`` (JSON-able), atomically."""
    try:
        json.dumps(extra)
    except (TypeError, ValueError) as error:
        raise ValueError(f"extra must be JSON-serialisable: {error}") from None
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "kind": kind_of(model),
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "extra": extra,
    }
    atomic_torch_save(payload, Path(path))


def load_model(
    path: str | os.PathLike[str], *, kind: str, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Read a checkpoint of ``kind`` ("mae" or "affinity").

    Returns the network, in eval mode on ``device``, and the ``extra`` dict.

    Raises
    ------
    CheckpointError
        The file is missing, is not a napari-segclr checkpoint, holds another kind
        of network (a SegCLR one, or the other of MAE / affinity), or its weights
        do not fit its config.
    """
    cls, what = KINDS[kind]
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{path} is not a napari-segclr checkpoint ({type(error).__name__})"
        ) from error
    found = payload.get("format") if isinstance(payload, dict) else None
    if found == SEGCLR_FORMAT:
        raise CheckpointError(f"{path} holds a SegCLR network; {what} is needed here")
    if found != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a napari-segclr checkpoint")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {payload.get('version')!r}; "
            f"this napari-segclr reads version {CHECKPOINT_VERSION}"
        )
    if payload.get("kind") != kind:
        held = KINDS.get(payload.get("kind"), (None, f"a network of kind {payload.get('kind')!r}"))
        raise CheckpointError(f"{path} holds {held[1]}; {what} is needed here")
    try:
        config = MAEConfig.from_dict(payload["config"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} holds an invalid model config: {error}") from error
    if not config.has_intensity:
        raise CheckpointError(f"{path} lacks the intensity normalisation of its training data")
    model = cls(config)
    try:
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError) as error:
        raise CheckpointError(f"the weights in {path} do not match its model config") from error
    return model.to(device).eval(), dict(payload.get("extra", {}))


def load_affinity_model(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> AffinityModel:
    """The affinity network in a checkpoint written by :func:`~napari_segclr.mae.finetune`.

    In eval mode on ``device``; see :class:`~napari_segclr.mae.AffinityModel`
    for its tile shape, voxel size, ``normalise`` and output.
    """
    model, _ = load_model(path, kind="affinity", device=device)
    return model
