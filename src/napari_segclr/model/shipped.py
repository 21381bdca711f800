"""The SegCLR checkpoint that ships with napari-segclr: the ``lite`` preset.

It was trained on synthetic neuropil only (``examples/train_shipped_model.py``;
seeds below 1000, which are kept apart from the seeds used for evaluation),
and is stored with float16 weights to stay small; loading gives a float32 model.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch

from ..exceptions import CheckpointError
from .presets import get_preset
from .segclr import SegclrModel, load_checkpoint, save_checkpoint

SHIPPED_PRESET = "lite"
SHIPPED_FILE = "segclr_lite.pt"
#: Heads fitted on the shipped model's embeddings of labelled synthetic neuropil, by
#: annotation target: one click on a segment gets an answer before any labelling.
SHIPPED_HEAD_FILES = {
    "compartment": "segclr_lite_compartment.head.npz",
    "cell_type": "segclr_lite_cell_type.head.npz",
}


def shipped_checkpoint_path() -> Path:
    """Where the shipped ``lite`` checkpoint lies (inside the installed package)."""
    return Path(__file__).resolve().parent.parent / "weights" / SHIPPED_FILE


def shipped_head_paths() -> dict[str, Path]:
    """The shipped heads that are installed, by annotation target."""
    folder = shipped_checkpoint_path().parent
    paths = {target: folder / name for target, name in SHIPPED_HEAD_FILES.items()}
    return {target: path for target, path in paths.items() if path.is_file()}


def load_shipped_model(*, map_location: str | torch.device = "cpu") -> tuple[SegclrModel, dict]:
    """The shipped ``lite`` model (float32, eval mode) and its checkpoint's ``extra`` dict.

    Raises
    ------
    CheckpointError
        The checkpoint is not installed, is damaged, or is not of the ``lite`` preset.
    """
    path = shipped_checkpoint_path()
    if not path.is_file():
        raise CheckpointError(
            f"the shipped '{SHIPPED_PRESET}' checkpoint {path} is not installed; create it with "
            "'python examples/train_shipped_model.py' or pass a checkpoint of your own"
        )
    model, extra = load_checkpoint(path, map_location=map_location)
    if model.config != get_preset(SHIPPED_PRESET):
        raise CheckpointError(f"{path} does not hold the '{SHIPPED_PRESET}' preset's network")
    return model, extra


def save_compact_checkpoint(
    path: str | os.PathLike[str], model: SegclrModel, *, extra: dict
) -> None:
    """Write ``model`` as a checkpoint with float16 weights (half the size).

    :func:`~napari_segclr.model.load_checkpoint` reads it into a float32 model;
    the weights keep about three significant digits, far below what changes
    an embedding's neighbours.
    """
    compact = copy.deepcopy(model).cpu().half()
    save_checkpoint(path, compact, extra=extra)
