"""Contrastive training of SegCLR models on EM volumes and the skeletons of their segments.

Train the ``tiny`` preset for a few hundred steps on a synthetic neuropil::

    from napari_segclr.synthetic import NeuropilConfig
    from napari_segclr.train import TrainConfig, TrainingData, train

    data = TrainingData.synthetic(NeuropilConfig(shape=(64, 64, 64), voxel_size=128, seed=7))
    result = train(data, TrainConfig(model="tiny", steps=300), checkpoint="tiny.pt")
    result.losses[-10:]  # NT-Xent loss of the last steps

Each step draws ``batch_size`` positive pairs (two points of one segment within
``max_path_nm`` of each other along its skeleton), cuts a view around each
point with a random shift of its centre, augments both views and takes one
optimiser step on the NT-Xent loss of their projections.

Everything random in step ``k`` (pairs, shifts, augmentations) is drawn from
generators seeded by ``(seed, k)``, and the learning rate is a function of
``k``: a run resumed from its checkpoint at step ``k`` continues exactly as
the uninterrupted run would (bit for bit on the CPU).

A checkpoint is two files: ``<checkpoint>`` (written by
:func:`~napari_segclr.model.save_checkpoint`: weights, model config, training
config, step and data provenance; what :func:`~napari_segclr.model.load_checkpoint`
and ``napari-segclr embed`` read) and ``<checkpoint>.state-<step>`` beside it
(the optimiser state, needed only to resume). Both appear atomically, the
state first, so a run stopped at any moment leaves a checkpoint that resumes.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .embed import dataset_identity, resolve_device
from .exceptions import CheckpointError, OutputExistsError, SegmentTooSmallError
from .io import Dataset, Volume
from .model import (
    ModelConfig,
    SegclrAugment,
    SegclrModel,
    get_preset,
    load_checkpoint,
    nt_xent_loss,
    save_checkpoint,
)
from .runs import (
    append_log,
    load_state,
    save_run,
    start_log,
    step_seeds,
)
from .skeleton import Skeleton, SkeletonParams, skeletonize_volume
from .synthetic import Neuropil, NeuropilConfig, render_dataset
from .views import PairSampler, ViewSpec, extract_views, prefetch_map

TRAIN_FORMAT = "napari-segclr/train"
SCHEDULES = ("cosine", "constant")
DEVICES = ("auto", "cpu", "cuda")
#: Fields of :class:`TrainConfig` that a resumed run may change: they do not
#: change what a step computes (``steps`` stretches the schedule).
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "device", "bf16")


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class TrainConfig:
    """How a SegCLR model is trained.

    Parameters
    ----------
    model
        A :class:`~napari_segclr.model.ModelConfig` or a preset name ("paper",
        "lite", "tiny").
    steps
        Optimiser steps in all (a resumed run counts the steps already done).
    batch_size
        Positive pairs per step; each step embeds twice as many views, and every
        other view of the batch is a negative.
    learning_rate
        Peak learning rate of AdamW.
    schedule
        "cosine": linear warm-up, then cosine decay to 0 at ``steps``;
        "constant": warm-up, then constant.
    warmup_fraction
        Fraction of ``steps`` spent warming up linearly from 0.
    weight_decay
        AdamW's decoupled weight decay.
    max_path_nm
        Largest distance along the skeleton between the two points of a pair.
    jitter_nm
        Random shift of every view centre, up to this many nm along each axis.
    seed
        Seeds the initial weights and everything drawn at each step.
    checkpoint_every
        Write the checkpoint every this many steps (and after the last).
    device
        "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
    bf16
        On CUDA, run the network under bfloat16 autocast (the loss stays float32).
    """

    model: ModelConfig | str = "lite"
    steps: int = 10_000
    batch_size: int = 32
    learning_rate: float = 1e-3
    schedule: str = "cosine"
    warmup_fraction: float = 0.05
    weight_decay: float = 1e-4
    max_path_nm: float = 4_000.0
    jitter_nm: float = 300.0
    seed: int = 0
    checkpoint_every: int = 500
    device: str = "auto"
    bf16: bool = True

    def __post_init__(self) -> None:
        model = self.model
        if isinstance(model, str):
            model = get_preset(model)
        elif isinstance(model, Mapping):
            model = ModelConfig.from_dict(model)
        if not isinstance(model, ModelConfig):
            raise TypeError(f"model must be a ModelConfig or a preset name, got {model!r}")
        object.__setattr__(self, "model", model)
        for name, minimum in (("steps", 1), ("batch_size", 2), ("checkpoint_every", 1)):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | np.integer)
                or value < minimum
            ):
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
            object.__setattr__(self, name, int(value))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        for name, lo, hi in (
            ("learning_rate", 0.0, math.inf),
            ("warmup_fraction", 0.0, 1.0),
            ("weight_decay", 0.0, math.inf),
            ("max_path_nm", 0.0, math.inf),
            ("jitter_nm", 0.0, math.inf),
        ):
            value = getattr(self, name)
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not (ok and math.isfinite(value) and lo <= value <= hi):
                raise ValueError(f"{name} must be a number in [{lo:g}, {hi:g}], got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.learning_rate == 0 or self.max_path_nm == 0:
            raise ValueError("learning_rate and max_path_nm must be positive")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        resolve_device(self.device, check=False)
        object.__setattr__(self, "bf16", bool(self.bf16))

    def learning_rate_at(self, step: int) -> float:
        """The learning rate of the update that makes step ``step`` (0-based)."""
        warmup = self.warmup_fraction * self.steps
        factor = min(1.0, (step + 1) / warmup) if warmup >= 1 else 1.0
        if self.schedule == "cosine":
            factor *= 0.5 * (1 + math.cos(math.pi * min(step, self.steps) / self.steps))
        return self.learning_rate * factor

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-able dict (the model config as its own dict)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["model"] = self.model.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build a config from :meth:`to_dict` output; missing keys take the defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown training config keys {unknown}; known keys are {sorted(known)}"
            )
        return cls(**data)


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True, eq=False)
class TrainingData:
    """A volume pair to train on, the skeletons of its segments and where it came from.

    Attributes
    ----------
    dataset
        The EM and segmentation.
    skeletons
        Skeletons by segment id, nodes in nm; pairs are drawn along them. Only
        skeletons with at least one edge are kept.
    provenance
        JSON-able description of the data (volume sources and voxel sizes, or the
        synthetic neuropil's config and seed), stored in the checkpoint.
    """

    dataset: Dataset
    skeletons: Mapping[int, Skeleton]
    provenance: dict[str, Any]

    def __post_init__(self) -> None:
        if self.dataset.segmentation is None:
            raise ValueError("training needs a segmentation: the dataset has none")
        lo, hi = self.dataset.overlap_nm()
        kept = {
            int(sid): skel
            for sid, skel in sorted(self.skeletons.items())
            if skel.cable_length > 0 and np.all((skel.nodes >= lo) & (skel.nodes < hi))
        }
        if not kept:
            raise SegmentTooSmallError(
                f"{self.dataset.segmentation.source}: no segment has a skeleton with an edge "
                "inside the EM; nothing to draw training pairs from"
            )
        object.__setattr__(self, "skeletons", kept)
        object.__setattr__(self, "provenance", json.loads(json.dumps(self.provenance)))

    @classmethod
    def synthetic(
        cls, config: NeuropilConfig, *, progress: Callable[[int, int], None] | None = None
    ) -> TrainingData:
        """Render a synthetic neuropil into memory, with skeletons from its ground truth.

        The EM and segmentation are rendered once (``progress(done, total)`` over
        slabs); the skeletons come from the true node table (no skeletonisation),
        keeping the nodes that lie within a voxel of their own segment's voxels.
        """
        neuropil = Neuropil(config)
        settings = _plain(asdict(config))
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
        name = f"synthetic neuropil (seed {config.seed}, config {digest})"
        crop, dataset = render_dataset(neuropil, name=name, progress=progress)
        nodes = neuropil.nodes()
        visible = nodes_on_segment(nodes, dataset.segmentation, crop.segmentation)
        skeletons = skeletons_from_nodes(nodes[visible])
        return cls(dataset, skeletons, {"kind": "synthetic", "neuropil": settings})

    @classmethod
    def from_dataset(
        cls,
        dataset: Dataset,
        *,
        skeletons: Mapping[int, Skeleton] | None = None,
        segment_ids: Sequence[int] | None = None,
        params: SkeletonParams | None = None,
        chunk_shape: int | Sequence[int] = (256, 256, 256),
        progress: Callable[[int, int], None] | None = None,
    ) -> TrainingData:
        """Training data from an EM volume and its segmentation.

        Without ``skeletons`` the segmentation is skeletonised chunk by chunk
        (:func:`~napari_segclr.skeleton.skeletonize_volume`, ``progress(done,
        total)`` over chunks), all segments or ``segment_ids``.
        """
        if dataset.segmentation is None:
            raise ValueError("training needs a segmentation: the dataset has none")
        if skeletons is None:
            params = params or SkeletonParams()
            skeletons = skeletonize_volume(
                dataset.segmentation,
                chunk_shape=chunk_shape,
                segment_ids=segment_ids,
                params=params,
                progress=progress,
            )
            how: Any = {"skeletonize_volume": _plain(asdict(params))}
        else:
            how = "given"
        provenance = {"kind": "volumes", "data": dataset_identity(dataset), "skeletons": how}
        return cls(dataset, skeletons, provenance)


def skeletons_from_nodes(nodes: pd.DataFrame) -> dict[int, Skeleton]:
    """Per-segment skeletons from a node table such as :meth:`Neuropil.nodes`.

    ``nodes`` needs columns ``cell_id``, ``node``, ``parent`` (-1 for a root),
    ``z_nm``, ``y_nm``, ``x_nm``, ``radius_nm`` and ``segment_id``. A node is
    linked to its parent where both are in the table and in the same segment;
    a segment made of several cells (a merge) or of a cell's part (a split)
    becomes a forest. Segment id 0 is skipped.
    """
    table = nodes[nodes["segment_id"] != 0].sort_values(
        ["segment_id", "cell_id", "node"], kind="stable"
    )
    if not len(table):
        return {}
    cells = table["cell_id"].to_numpy(np.uint64)
    key = pd.MultiIndex.from_arrays([cells, table["node"].to_numpy(np.int64)])
    parent_row = key.get_indexer(
        pd.MultiIndex.from_arrays([cells, table["parent"].to_numpy(np.int64)])
    )
    segments = table["segment_id"].to_numpy(np.uint64)
    linked = (parent_row >= 0) & (segments[np.maximum(parent_row, 0)] == segments)
    child = np.flatnonzero(linked)  # ascending, so edges follow the segment order
    parent = parent_row[child]
    positions = table[["z_nm", "y_nm", "x_nm"]].to_numpy(np.float64)
    radii = table["radius_nm"].to_numpy(np.float64)
    starts = np.flatnonzero(np.r_[True, segments[1:] != segments[:-1]])
    stops = np.r_[starts[1:], len(segments)]
    edge_starts = np.searchsorted(child, starts)
    edge_stops = np.searchsorted(child, stops)
    skeletons = {}
    for a, b, ea, eb in zip(starts, stops, edge_starts, edge_stops, strict=True):
        sid = int(segments[a])
        edges = np.stack([child[ea:eb], parent[ea:eb]], axis=1) - a
        skeletons[sid] = Skeleton.from_edges(sid, positions[a:b], edges, radii[a:b])
    return skeletons


def nodes_on_segment(nodes: pd.DataFrame, volume: Volume, labels: np.ndarray) -> np.ndarray:
    """Which nodes have a voxel of their own segment within one voxel of them.

    Processes thinner than a voxel may not be rendered at all; views around
    their nodes would hold nothing of the segment.
    """
    positions = nodes[["z_nm", "y_nm", "x_nm"]].to_numpy(np.float64)
    voxels = np.rint(volume.to_voxel(positions)).astype(np.int64)
    ids = nodes["segment_id"].to_numpy(np.uint64)
    hit = np.zeros(len(nodes), dtype=bool)
    for step in itertools.product((-1, 0, 1), repeat=3):
        z, y, x = np.clip(voxels + step, 0, np.asarray(labels.shape) - 1).T
        hit |= labels[z, y, x] == ids
    return hit & (ids != 0)


# ----------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainProgress:
    """What the ``progress`` callback of :func:`train` gets after every step.

    Attributes
    ----------
    step
        Steps done so far, counting those before a resume.
    total
        Steps of the whole run (``config.steps``).
    loss
        NT-Xent loss of this step.
    learning_rate
        Learning rate of this step.
    elapsed_s
        Training time of the whole run so far, in seconds.
    steps_per_s
        Steps per second in this call so far.
    """

    step: int
    total: int
    loss: float
    learning_rate: float
    elapsed_s: float
    steps_per_s: float


@dataclass(frozen=True, eq=False)
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    model
        The trained model, in eval mode, on the training device.
    checkpoint
        Path of the final checkpoint.
    step
        Steps done in all.
    start_step
        The step this call started from (0, or the resumed checkpoint's).
    losses
        Loss of each step of this call, (step - start_step,) float.
    elapsed_s
        Training time of the whole run, seconds.
    steps_per_s
        Steps per second of this call.
    """

    model: SegclrModel
    checkpoint: Path
    step: int
    start_step: int
    losses: np.ndarray
    elapsed_s: float
    steps_per_s: float

    @classmethod
    def of_call(
        cls,
        model: torch.nn.Module,
        checkpoint: Path,
        *,
        step: int,
        start_step: int,
        losses: Sequence[float],
        elapsed_before: float,
        started: float,
    ) -> TrainResult:
        """The result of a call that began at ``time.perf_counter() == started``."""
        seconds = time.perf_counter() - started
        return cls(
            model=model.eval(),
            checkpoint=checkpoint,
            step=step,
            start_step=start_step,
            losses=np.asarray(losses, dtype=np.float64),
            elapsed_s=elapsed_before + seconds,
            steps_per_s=len(losses) / seconds if len(losses) and seconds > 0 else 0.0,
        )


def train(
    data: TrainingData | Sequence[TrainingData],
    config: TrainConfig,
    *,
    checkpoint: str | os.PathLike[str],
    resume: bool = False,
    workers: int = 1,
    progress: Callable[[TrainProgress], None] | None = None,
    log: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """Train a SegCLR model with NT-Xent on positive pairs along skeletons.

    Parameters
    ----------
    data
        One :class:`TrainingData` or several (e.g. synthetic volumes of several
        seeds); each step's pairs are shared out evenly among them.
    config
        The :class:`TrainConfig`.
    checkpoint
        Where the checkpoint is written (every ``config.checkpoint_every`` steps
        and after the last); its training state goes beside it.
    resume
        Continue the run whose checkpoint is at ``checkpoint``, or start one if
        there is none. The config may differ only in :data:`RESUMABLE_CHANGES`
        and the data must be the same. Without ``resume`` an existing
        checkpoint is an error, never overwritten.
    workers
        Threads that cut the next steps' views while the current one trains.
    progress
        Called with a :class:`TrainProgress` after every step; an exception it
        raises stops training (the last checkpoint stays as it was).
    log
        A CSV file that gets one row per step: step, loss, learning_rate,
        elapsed_s. A fresh run starts it anew; a resumed one keeps the rows up to
        the checkpoint's step.

    Raises
    ------
    OutputExistsError
        ``checkpoint`` exists and ``resume`` is False.
    CheckpointError
        A checkpoint to resume that is not a training checkpoint, lacks its
        training state, or was made with another config or data.
    """
    sources = [data] if isinstance(data, TrainingData) else list(data)
    if not sources or not all(isinstance(d, TrainingData) for d in sources):
        raise TypeError("data must be a TrainingData or a non-empty sequence of them")
    if config.batch_size < len(sources):
        raise ValueError(
            f"batch_size ({config.batch_size}) must be at least the number of volumes "
            f"({len(sources)})"
        )
    path = Path(checkpoint).expanduser()
    device = resolve_device(config.device)
    provenance = [d.provenance for d in sources]
    model, optimizer, start, elapsed_before = _start(path, config, provenance, resume, device)
    log_path = None if log is None else Path(log).expanduser()
    if log_path is not None:
        start_log(log_path, start)
    losses: list[float] = []
    started = time.perf_counter()
    use_bf16 = config.bf16 and device.type == "cuda"
    model.train()
    batches = _batches(sources, config, start, workers)
    with contextlib.closing(batches):
        for step, views in enumerate(batches, start=start):
            lr = config.learning_rate_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = _step(model, optimizer, views, config, step, device, use_bf16)
            losses.append(loss)
            done = step + 1
            elapsed = elapsed_before + time.perf_counter() - started
            # Log first: a resumed run drops the rows after its checkpoint, never misses one.
            if log_path is not None:
                append_log(log_path, (done, loss, lr, elapsed))
            if done % config.checkpoint_every == 0 or done == config.steps:
                _save(path, model, optimizer, config, provenance, done, elapsed, loss)
            if progress is not None:
                rate = len(losses) / max(time.perf_counter() - started, 1e-9)
                progress(TrainProgress(done, config.steps, loss, lr, elapsed, rate))
    return TrainResult.of_call(
        model,
        path,
        step=max(start, config.steps),
        start_step=start,
        losses=losses,
        elapsed_before=elapsed_before,
        started=started,
    )


def _start(
    path: Path,
    config: TrainConfig,
    provenance: list[dict],
    resume: bool,
    device: torch.device,
) -> tuple[SegclrModel, torch.optim.Optimizer, int, float]:
    """The model, optimiser, first step and time spent so far: fresh, or from the checkpoint."""
    if path.exists() and not resume:
        raise OutputExistsError(
            f"checkpoint {path} exists; resume it (resume=True, --resume) or choose another path"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if resume and path.exists():
        model, extra = load_checkpoint(path)
        info = _training_info(path, extra)
        _check_resumable(path, info, config, provenance)
        state = load_state(path, info)
        model = _to_device(model, device)
        optimizer = _optimizer(model, config)
        optimizer.load_state_dict(state["optimizer"])
        return model, optimizer, int(info["step"]), float(info["elapsed_s"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = SegclrModel(config.model)
    model = _to_device(model, device)
    return model, _optimizer(model, config), 0, 0.0


def _optimizer(model: SegclrModel, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )


def _to_device(model: SegclrModel, device: torch.device) -> SegclrModel:
    # Channels-last 3D is faster on both: on 2 CPU cores it trains "lite" about 2.5× faster.
    return model.to(device, memory_format=torch.channels_last_3d)


def _batches(
    sources: list[TrainingData], config: TrainConfig, start: int, workers: int
) -> Iterator[np.ndarray]:
    """Views (2B, C, Z, Y, X) of steps ``start``, ``start + 1``, …: first views, then partners.

    Step ``k``'s views depend only on the data, the config and ``k``; ``workers``
    threads cut the next steps ahead.
    """
    spec = ViewSpec.from_config(config.model)
    samplers = [PairSampler(d.skeletons, max_path_nm=config.max_path_nm) for d in sources]
    shares = np.full(len(sources), config.batch_size // len(sources))
    shares[: config.batch_size % len(sources)] += 1

    def cut(step: int) -> np.ndarray:
        firsts, seconds = [], []
        for index, (source, sampler, share) in enumerate(
            zip(sources, samplers, shares, strict=True)
        ):
            pair_seed, shift_seed = step_seeds(config.seed, step, index + 1, count=2)
            ids, a, b = sampler.sample(int(share), generator=pair_seed)
            views = extract_views(
                source.dataset,
                np.concatenate([ids, ids]),
                np.concatenate([a, b]),
                spec,
                jitter_nm=config.jitter_nm,
                generator=shift_seed,
            )
            firsts.append(views[:share])
            seconds.append(views[share:])
        return np.concatenate(firsts + seconds)

    return prefetch_map(cut, range(start, config.steps), workers=workers, ahead=max(1, 2 * workers))


def _step(
    model: SegclrModel,
    optimizer: torch.optim.Optimizer,
    views: np.ndarray,
    config: TrainConfig,
    step: int,
    device: torch.device,
    use_bf16: bool,
) -> float:
    """One optimiser step on a batch of pairs; returns the loss."""
    (augment_seed,) = step_seeds(config.seed, step, 0, count=1)
    augment = SegclrAugment.from_config(config.model, seed=augment_seed)
    batch = torch.from_numpy(views).to(device, non_blocking=True)
    batch = augment(batch.contiguous(memory_format=torch.channels_last_3d))
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
        _, projections = model(batch)
    half = len(views) // 2
    loss = nt_xent_loss(
        projections[:half], projections[half:], temperature=config.model.temperature
    )
    value = float(loss.detach())
    if not math.isfinite(value):
        raise FloatingPointError(
            f"the loss became {value} at step {step + 1}; lower the learning rate"
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return value


# ----------------------------------------------------------------------------- checkpoints


def _save(
    path: Path,
    model: SegclrModel,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    provenance: list[dict],
    step: int,
    elapsed_s: float,
    loss: float,
) -> None:
    """Write the training state, then the checkpoint that names it (see :func:`save_run`)."""
    extra = {
        "format": TRAIN_FORMAT,
        "train_config": config.to_dict(),
        "loss": loss,
        "elapsed_s": elapsed_s,
        "data": provenance,
    }
    save_run(
        path,
        optimizer,
        step=step,
        extra=extra,
        write=lambda e: save_checkpoint(path, model, extra=e),
    )


def _training_info(path: Path, extra: dict) -> dict:
    if extra.get("format") != TRAIN_FORMAT:
        raise CheckpointError(f"{path} holds weights only, no training run to resume")
    return extra


def _check_resumable(path: Path, info: dict, config: TrainConfig, provenance: list[dict]) -> None:
    try:
        stored = TrainConfig.from_dict(info["train_config"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} holds an invalid training config: {error}") from error
    keep = {name: getattr(config, name) for name in RESUMABLE_CHANGES}
    if replace(stored, **keep) != config:
        differ = [
            f.name
            for f in fields(config)
            if f.name not in RESUMABLE_CHANGES
            and getattr(stored, f.name) != getattr(config, f.name)
        ]
        raise CheckpointError(
            f"{path} was trained with another config (it differs in {', '.join(differ)}); "
            "resume with the same settings or start a new checkpoint"
        )
    if info.get("data") != json.loads(json.dumps(provenance)):
        raise CheckpointError(
            f"{path} was trained on other data; resume it on the same volumes or start anew"
        )


def _plain(value: Any) -> Any:
    """Tuples, numpy scalars and nested mappings as plain JSON types."""
    return json.loads(json.dumps(value, default=lambda v: v.tolist()))
