"""A training run on disk, shared by SegCLR and MAE training.

A run is a checkpoint ``NAME.pt`` (weights, config, provenance, the step) with
its optimiser state ``NAME.pt.state-<step>`` beside it, written state first so
a checkpoint never names a state that is not there, and a CSV loss log
(``NAME.loss.csv`` by default). Each step draws its randomness from seeds
derived from (seed, step, stream) alone, so a resumed run repeats exactly the
steps an uninterrupted one would take.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .exceptions import CheckpointError
from .model import atomic_torch_save

STATE_FORMAT = "napari-segclr/train-state"
_LOG_COLUMNS = ("step", "loss", "learning_rate", "elapsed_s")


def step_seeds(seed: int, step: int, stream: int, *, count: int) -> list[int]:
    """``count`` seeds for one random stream of one step (stream 0: augmentations)."""
    state = np.random.SeedSequence([seed, step, stream]).generate_state(count, np.uint64)
    return [int(s) for s in state]


def _state_path(path: Path, step: int) -> Path:
    return path.with_name(f"{path.name}.state-{step:09d}")


def save_run(
    path: Path,
    optimizer: torch.optim.Optimizer,
    *,
    step: int,
    extra: dict[str, Any],
    write: Callable[[dict[str, Any]], None],
) -> None:
    """Write the optimiser state, then the checkpoint (``write(extra)``) that names it, then
    drop older states."""
    state_path = _state_path(path, step)
    payload = {"format": STATE_FORMAT, "step": step, "optimizer": optimizer.state_dict()}
    atomic_torch_save(payload, state_path)
    write({**extra, "step": step, "state_file": state_path.name})
    for old in path.parent.glob(f"{path.name}.state-*"):
        if old != state_path:
            old.unlink(missing_ok=True)


def load_state(path: Path, info: dict) -> dict:
    state_path = path.with_name(str(info.get("state_file", "")))
    if not info.get("state_file") or not state_path.is_file():
        raise CheckpointError(
            f"the training state {state_path.name} of {path} is missing; it cannot be resumed"
        )
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(f"{state_path} is not a napari-segclr training state") from error
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{state_path} is not a napari-segclr training state")
    if state.get("step") != info.get("step"):
        raise CheckpointError(f"{state_path} does not belong to step {info.get('step')} of {path}")
    return state


def start_log(path: Path, step: int) -> None:
    """A log with a header and the rows of steps up to ``step`` (kept from a resumed run)."""
    rows: list[list[str]] = []
    if step and path.is_file():
        with path.open(newline="") as f:
            reader = csv.reader(f)
            next(reader, None)
            rows = [row for row in reader if row and int(row[0]) <= step]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(_LOG_COLUMNS)
        writer.writerows(rows)


def append_log(path: Path, row: tuple[int, float, float, float]) -> None:
    step, loss, lr, elapsed = row
    with path.open("a", newline="") as f:
        csv.writer(f).writerow([step, f"{loss:.6f}", f"{lr:.6g}", f"{elapsed:.2f}"])


def loss_log_path(checkpoint: str | os.PathLike[str]) -> Path:
    """Where a run's loss log goes by default: ``NAME.loss.csv`` beside checkpoint ``NAME.pt``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.loss.csv")


def read_log(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A training log written by :func:`train`: step, loss, learning_rate, elapsed_s."""
    return pd.read_csv(path)
