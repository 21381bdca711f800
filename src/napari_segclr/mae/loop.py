"""The training loop both stages share: optimiser, schedule, checkpoints, exact resume.

It keeps SegCLR training's conventions (:mod:`napari_segclr.train`) and its
helpers: everything random in step ``k`` comes from seeds of ``(seed, k)`` and
the learning rate is a function of ``k``, so a run resumed from its checkpoint
at step ``k`` continues exactly as the uninterrupted run would (bit for bit on
the CPU). A checkpoint is ``<checkpoint>`` (weights, model config, training
config, step and data provenance) and ``<checkpoint>.state-<step>`` beside it
(the optimiser state); both appear atomically, the state first.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from ..embed import resolve_device
from ..exceptions import CheckpointError, OutputExistsError
from ..runs import append_log, load_state, save_run, start_log, step_seeds
from ..train import TrainProgress, TrainResult
from ..views import prefetch_map
from .checkpoint import load_model, save_model
from .config import FinetuneConfig, PretrainConfig

Batch = TypeVar("Batch")
#: Random streams of a step (see ``napari_segclr.runs.step_seeds``).
MASK_STREAM, DATA_STREAM = 0, 1
FORMATS = {"mae": "napari-segclr/mae-pretrain", "affinity": "napari-segclr/mae-finetune"}


def step_generator(seed: int, step: int) -> np.random.Generator:
    """The numpy generator of step ``step``'s data (crops, augmentations)."""
    (value,) = step_seeds(seed, step, DATA_STREAM, count=1)
    return np.random.default_rng(value)


def step_torch_generator(seed: int, step: int) -> torch.Generator:
    """The CPU torch generator of step ``step``'s masks."""
    (value,) = step_seeds(seed, step, MASK_STREAM, count=1)
    return torch.Generator().manual_seed(value % 2**63)


def fit(
    *,
    kind: str,
    build: Callable[[], nn.Module],
    config: PretrainConfig | FinetuneConfig,
    provenance: dict[str, Any],
    checkpoint: str | os.PathLike[str],
    resume: bool,
    make_batch: Callable[[int], Batch],
    loss: Callable[[nn.Module, Batch, int, torch.device], torch.Tensor],
    workers: int,
    progress: Callable[[TrainProgress], None] | None,
    log: str | os.PathLike[str] | None,
    time_limit_s: float | None,
) -> TrainResult:
    """Train ``build()`` (or the network resumed from ``checkpoint``) up to ``config.steps``.

    ``make_batch(k)`` cuts step ``k``'s data (in ``workers`` threads, ahead of
    the network); ``loss(model, batch, k, device)`` computes its loss. After
    ``time_limit_s`` seconds the run stops at the end of a step, with a
    checkpoint there.
    """
    path = Path(checkpoint).expanduser()
    device = resolve_device(config.device)
    provenance = json.loads(json.dumps(provenance))
    model, optimizer, start, elapsed_before = _start(
        path, kind, build, config, provenance, resume, device
    )
    log_path = None if log is None else Path(log).expanduser()
    if log_path is not None:
        start_log(log_path, start)
    losses: list[float] = []
    started = time.perf_counter()
    use_bf16 = config.bf16 and device.type == "cuda"
    model.train()
    ahead = max(1, 2 * workers)
    batches = prefetch_map(make_batch, range(start, config.steps), workers=workers, ahead=ahead)
    with contextlib.closing(batches):
        for step, batch in enumerate(batches, start=start):
            lr = config.learning_rate_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                value = loss(model, batch, step, device)
            loss_value = float(value.detach())
            if not math.isfinite(loss_value):
                raise FloatingPointError(
                    f"the loss became {loss_value} at step {step + 1}; lower the learning rate"
                )
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            losses.append(loss_value)
            done = step + 1
            seconds = time.perf_counter() - started
            elapsed = elapsed_before + seconds
            if log_path is not None:  # before the checkpoint: a resume never misses a row
                append_log(log_path, (done, loss_value, lr, elapsed))
            out_of_time = time_limit_s is not None and seconds >= time_limit_s
            if done % config.checkpoint_every == 0 or done == config.steps or out_of_time:
                _save(path, kind, model, optimizer, config, provenance, done, elapsed, loss_value)
            if progress is not None:
                rate = len(losses) / max(seconds, 1e-9)
                progress(TrainProgress(done, config.steps, loss_value, lr, elapsed, rate))
            if out_of_time:
                break
    return TrainResult.of_call(
        model,
        path,
        step=start + len(losses),
        start_step=start,
        losses=losses,
        elapsed_before=elapsed_before,
        started=started,
    )


def _start(
    path: Path,
    kind: str,
    build: Callable[[], nn.Module],
    config: PretrainConfig | FinetuneConfig,
    provenance: dict[str, Any],
    resume: bool,
    device: torch.device,
) -> tuple[nn.Module, torch.optim.Optimizer, int, float]:
    """The network, optimiser, first step and time spent so far: fresh or from the checkpoint."""
    if path.exists() and not resume:
        raise OutputExistsError(
            f"checkpoint {path} exists; resume it (resume=True, --resume) or choose another path"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if resume and path.exists():
        model, info = load_model(path, kind=kind)
        if info.get("format") != FORMATS[kind]:
            raise CheckpointError(f"{path} holds weights only, no training run to resume")
        _check_resumable(path, info, config, provenance)
        state = load_state(path, info)
        model = model.to(device)
        optimizer = _optimizer(model, config)
        optimizer.load_state_dict(state["optimizer"])
        return model, optimizer, int(info["step"]), float(info["elapsed_s"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = build()
    model = model.to(device)
    return model, _optimizer(model, config), 0, 0.0


def _optimizer(model: nn.Module, config: PretrainConfig | FinetuneConfig) -> torch.optim.Optimizer:
    trained = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(
        trained, lr=config.learning_rate, betas=(0.9, 0.95), weight_decay=config.weight_decay
    )


def _check_resumable(
    path: Path,
    info: dict[str, Any],
    config: PretrainConfig | FinetuneConfig,
    provenance: dict[str, Any],
) -> None:
    # Data first: the intensity normalisation in the config is measured on it.
    if info.get("data") != provenance:
        raise CheckpointError(
            f"{path} was trained on other data; resume it on the same volumes or start anew"
        )
    try:
        stored = type(config).from_dict(info["train_config"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} holds an invalid training config: {error}") from error
    keep = {name: getattr(config, name) for name in config.RESUMABLE_CHANGES}
    if replace(stored, **keep) != config:
        differ = [
            f.name
            for f in fields(config)
            if f.name not in config.RESUMABLE_CHANGES
            and getattr(stored, f.name) != getattr(config, f.name)
        ]
        raise CheckpointError(
            f"{path} was trained with another config (it differs in {', '.join(differ)}); "
            "resume with the same settings or start a new checkpoint"
        )


def _save(
    path: Path,
    kind: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: PretrainConfig | FinetuneConfig,
    provenance: dict[str, Any],
    step: int,
    elapsed_s: float,
    loss: float,
) -> None:
    """Write the optimiser state, then the checkpoint that names it (see :func:`save_run`)."""
    extra = {
        "format": FORMATS[kind],
        "train_config": config.to_dict(),
        "loss": loss,
        "elapsed_s": elapsed_s,
        "data": provenance,
    }
    save_run(
        path, optimizer, step=step, extra=extra, write=lambda e: save_model(path, model, extra=e)
    )
