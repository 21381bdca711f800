"""Cell types and compartments of reconstructed cells from mask views, against morphometrics.

The SegCLR recipe on light-microscopy reconstructions (SWC), where there is
no EM, only shape:

1. :func:`train_morphology_encoder`: a mask-only encoder is trained
   contrastively (no labels) on views of the training cells drawn as masks
   (:mod:`.morphology_views`); :func:`untrained_morphology_encoder` writes
   the untrained reference.
2. :func:`embed_cells`: each cell gets views around a few random sites along
   its cable and the nodes within the largest averaging radius of them.
3. :func:`evaluate_morphology`: for each radius R the embeddings are averaged
   within R µm along the skeleton
   (:func:`~napari_segclr.aggregate.aggregate_embeddings`), a head is fitted
   on the sites of the training cells and each test cell gets the combined
   prediction of its sites (:func:`~napari_segclr.heads.combine_segments`).
   Macro F1 and accuracy over test cells are set beside a random forest on
   whole-cell morphometrics (:mod:`.morphometrics`) on the same cells. Node
   compartments (axon, dendrite, apical dendrite from the SWC node types) are
   classified the same way, per reconstruction type where the table has one.
   Either a training and a test table, or stratified K-fold cross-validation
   over the cells of one table (every cell is tested once).
4. :func:`~.morphology_report.write_report`: JSON, a per-cell CSV and a figure.

In cross-validation the encoder may have seen every cell's shape (never a
label): the encoder is self-supervised; only the heads and the baseline are
fitted per fold.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..exceptions import CheckpointError, LabelError
from ..synthetic import Cell, Compartment
from .morphology_cells import MorphologyTable, check_classes
from .morphology_views import (
    CellsVolume,
    cells_dataset,
    render_settings,
    view_nodes,
)
from .morphometrics import morphometric_table

if TYPE_CHECKING:
    from ..model import ModelConfig, SegclrModel
    from ..store import EmbeddingTable
    from ..train import TrainConfig, TrainingData, TrainProgress, TrainResult

Progress = Callable[[int, int], None]

#: The phases of :func:`evaluate_morphology`, in order; ``progress(done, total)``
#: restarts from 0 at each (``cli.common.PhaseBars`` shows one bar per phase).
EVALUATE_PHASES = (
    "reading cells",
    "morphometrics",
    "embedding views",
    "aggregating",
    "classifying",
)
#: The phases of :func:`train_morphology_encoder`.
TRAIN_PHASES = ("reading cells", "timing a step", "training")
#: Compartment classes scored per node (soma nodes are left out).
COMPARTMENT_NAMES = {
    Compartment.AXON: "axon",
    Compartment.DENDRITE: "dendrite",
    Compartment.APICAL: "apical",
}
#: Space (nm) between a view's edge and the next cell, beyond half a view and the jitter.
_GAP_NM = 1000.0
#: Steps timed before a run of a given length in minutes (the first one is not counted).
_PROBE_STEPS = 3


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class MorphologyEvalConfig:
    """How cells are sampled, embedded and classified.

    Parameters
    ----------
    radii_um
        Averaging radii R (µm, along the skeleton) to score; 0: single views.
    spacing_um
        Spacing of the embedded nodes along the cable.
    sites
        Random sites per cell where predictions are made (None: every node
        ``spacing_um`` apart is a site; costly for long cells).
    head
        Head kind: "linear", "mlp" or "sngp".
    folds
        K for stratified K-fold cross-validation over the training table's
        cells (no test table); None for a training and a test table.
    seed
        Seeds the sites, the folds, the heads and the forest.
    batch_size, workers, device
        Views per batch, threads cutting views ahead, torch device.
    compartments
        Also classify node compartments (axon, dendrite, apical).
    group_column
        Table column whose values split the compartment scores (a group per
        value), e.g. "reconstruction_type" (full vs dendrite-only); all cells
        form one group where the column is absent.
    """

    radii_um: tuple[float, ...] = (0.0, 50.0, 100.0, 200.0)
    spacing_um: float = 10.0
    sites: int | None = 16
    head: str = "linear"
    folds: int | None = None
    seed: int = 0
    batch_size: int = 32
    workers: int = 1
    device: str = "auto"
    compartments: bool = True
    group_column: str | None = "reconstruction_type"

    def __post_init__(self) -> None:
        from ..heads import HEAD_KINDS

        radii = tuple(sorted({float(r) for r in self.radii_um}))
        if not radii or not all(0 <= r < math.inf for r in radii):
            raise ValueError(f"radii_um must be numbers >= 0, got {self.radii_um!r}")
        object.__setattr__(self, "radii_um", radii)
        if not 0 < self.spacing_um < math.inf:
            raise ValueError(f"spacing_um must be positive, got {self.spacing_um!r}")
        if self.sites is not None and self.sites < 1:
            raise ValueError(f"sites must be a positive integer or None, got {self.sites!r}")
        if self.head not in HEAD_KINDS:
            raise ValueError(f"head must be one of {', '.join(HEAD_KINDS)}, got {self.head!r}")
        if self.folds is not None and self.folds < 2:
            raise ValueError(f"folds must be at least 2, got {self.folds!r}")


@dataclass(frozen=True)
class RenderConfig:
    """How SWC cells are read and drawn (the encoder's, from its checkpoint, by default).

    Parameters
    ----------
    min_radius_nm
        File radii below this are raised to it.
    fixed_radius_nm
        One radius for every non-soma node, for reconstructions whose radii
        are unreliable; None keeps the file's radii.
    """

    min_radius_nm: float = 50.0
    fixed_radius_nm: float | None = None

    @classmethod
    def from_checkpoint(cls, extra: Mapping[str, Any]) -> RenderConfig | None:
        """The settings a :func:`train_morphology_encoder` checkpoint was trained with."""
        for source in extra.get("data") or []:
            if isinstance(source, Mapping) and source.get("kind") == "morphology":
                render = source["render"]
                return cls(render["min_radius_nm"], render["fixed_radius_nm"])
        return None


# ----------------------------------------------------------------------------- training


def morphology_training_data(
    cells: Sequence[Cell],
    config: ModelConfig,
    *,
    render: RenderConfig,
    jitter_nm: float,
    source: Mapping[str, Any],
) -> TrainingData:
    """:class:`~napari_segclr.train.TrainingData` of mask views of ``cells`` along their skeletons.

    ``config`` is the encoder's ``ModelConfig``; ``source`` describes where the
    cells come from (stored in the checkpoint with the render settings).
    """
    from ..train import TrainingData

    volume = _volume(cells, config, jitter_nm=jitter_nm)
    return TrainingData(volume.dataset, volume.skeletons(), _provenance(config, render, source))


def _provenance(
    config: ModelConfig, render: RenderConfig, source: Mapping[str, Any]
) -> dict[str, Any]:
    """What a morphology checkpoint records of its cells and how they were drawn."""
    return {
        "kind": "morphology",
        "source": dict(source),
        "render": render_settings(
            config.voxel_size_nm,
            min_radius_nm=render.min_radius_nm,
            fixed_radius_nm=render.fixed_radius_nm,
        ),
    }


def _check_mask_only(config: ModelConfig) -> None:
    if config.input_kinds != ("mask",):
        raise ValueError(f"morphology encoders take mask views only, not {config.input_kinds}")


def untrained_morphology_encoder(
    table: MorphologyTable,
    checkpoint: str | os.PathLike[str],
    config: ModelConfig,
    *,
    render: RenderConfig | None = None,
    seed: int = 0,
) -> SegclrModel:
    """Write a mask-only encoder with seeded random weights, not trained.

    The reference a trained encoder must beat. On the cell-type tasks of
    ``benchmarks/bench_morphology.py`` it scored higher than encoders trained
    for minutes on a CPU (see the README). The checkpoint records the table and
    the render settings as a trained one does, so :func:`evaluate_morphology`
    draws the cells the same way.
    """
    import torch

    from ..model import SegclrModel, save_checkpoint

    render = render or RenderConfig()
    _check_mask_only(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SegclrModel(config).eval()
    extra = {"step": 0, "seed": seed, "data": [_provenance(config, render, table.describe())]}
    save_checkpoint(checkpoint, model, extra=extra)
    return model


def train_morphology_encoder(
    table: MorphologyTable,
    checkpoint: str | os.PathLike[str],
    train_config: TrainConfig,
    *,
    render: RenderConfig | None = None,
    minutes: float | None = None,
    resume: bool = False,
    workers: int = 1,
    progress: Progress | None = None,
    on_step: Callable[[TrainProgress], None] | None = None,
    log: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """Train a mask-only SegCLR encoder on the cells of a table (no labels used).

    Parameters
    ----------
    table
        The cells to train on.
    checkpoint
        Checkpoint to write (see :func:`napari_segclr.train.train`).
    train_config
        A :class:`~napari_segclr.train.TrainConfig` whose model takes mask views only.
    render
        How cells are read and drawn (stored in the checkpoint).
    minutes
        Train for about this long instead of ``train_config.steps``: a few
        steps are timed first and the step count set from their pace; where
        later steps run slower (a busy machine), the run stops at the first
        checkpoint past the time, short of its planned steps (``--resume``
        with ``--steps`` finishes the plan).
    resume, workers, log
        As in :func:`~napari_segclr.train.train`.
    progress
        ``progress(done, total)`` over :data:`TRAIN_PHASES` (steps in the last).
    on_step
        Called with each step's :class:`~napari_segclr.train.TrainProgress`.

    Returns
    -------
    napari_segclr.train.TrainResult
    """
    from ..train import train

    render = render or RenderConfig()
    _check_mask_only(train_config.model)
    if minutes is not None and (resume or not 0 < minutes < math.inf):
        raise ValueError("minutes must be a positive number, and cannot be used to resume")
    cells = table.read_cells(
        min_radius_nm=render.min_radius_nm,
        fixed_radius_nm=render.fixed_radius_nm,
        progress=progress,
    )
    data = morphology_training_data(
        cells,
        train_config.model,
        render=render,
        jitter_nm=train_config.jitter_nm,
        source=table.describe(),
    )
    if progress is not None:
        progress(0, 1)
    deadline = math.inf
    if minutes is not None:
        deadline = time.perf_counter() + minutes * 60.0
        steps = _steps_in(minutes, data, train_config, workers)
        # Checkpoints every 2 % of the run, so that stopping at the deadline loses little.
        every = max(1, min(train_config.checkpoint_every, steps // 50))
        train_config = replace(train_config, steps=steps, checkpoint_every=every)
    if progress is not None:
        progress(1, 1)
    losses: list[float] = []

    def report(update: TrainProgress) -> None:
        losses.append(update.loss)
        if progress is not None:
            progress(update.step, update.total)
        if on_step is not None:
            on_step(update)
        at_checkpoint = update.step % train_config.checkpoint_every == 0
        if at_checkpoint and update.step < update.total and time.perf_counter() > deadline:
            raise _TimeUp

    try:
        return train(
            data,
            train_config,
            checkpoint=checkpoint,
            resume=resume,
            workers=workers,
            progress=report,
            log=log,
        )
    except _TimeUp:
        return _stopped_run(Path(checkpoint), losses)


class _TimeUp(Exception):
    """Raised from the progress callback to stop a run whose time is up."""


def _stopped_run(checkpoint: Path, losses: list[float]) -> TrainResult:
    """The result of a run stopped at its last checkpoint (steps slower than timed)."""
    from ..model import load_checkpoint
    from ..train import TrainResult

    model, extra = load_checkpoint(checkpoint)
    seconds = float(extra["elapsed_s"])
    return TrainResult(
        model=model,
        checkpoint=checkpoint,
        step=int(extra["step"]),
        start_step=0,
        losses=np.asarray(losses, dtype=np.float64),
        elapsed_s=seconds,
        steps_per_s=len(losses) / seconds if seconds > 0 else 0.0,
    )


def _steps_in(minutes: float, data: TrainingData, config: TrainConfig, workers: int) -> int:
    """Steps that fit in ``minutes``, from the pace of a few steps (their time counted)."""
    from ..train import train

    started = time.perf_counter()
    stamps: list[float] = []
    probe = replace(config, steps=_PROBE_STEPS, checkpoint_every=_PROBE_STEPS)
    with tempfile.TemporaryDirectory() as folder:
        train(
            data,
            probe,
            checkpoint=Path(folder) / "probe.pt",
            workers=workers,
            progress=lambda _: stamps.append(time.perf_counter()),
        )
    per_step = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    left = minutes * 60.0 - (time.perf_counter() - started)
    return max(1, int(left / per_step))


# ----------------------------------------------------------------------------- embedding


@dataclass(frozen=True, eq=False)
class EmbeddedCells:
    """Embeddings of the views cut around the sites of some cells.

    Attributes
    ----------
    volume
        The cells in their mask volume (skeletons, positions in its frame).
    table
        One row per embedded node: segment id = cell id, node id = the node's
        index in the cell.
    cell_index
        (rows,) the position of the row's cell in the cells embedded.
    site
        (rows,) which rows are sites.
    compartment
        (rows,) the node's compartment code.
    seconds
        Time spent cutting views and embedding them.
    """

    volume: CellsVolume
    table: EmbeddingTable
    cell_index: np.ndarray
    site: np.ndarray
    compartment: np.ndarray
    seconds: float


def embed_cells(
    model: SegclrModel,
    cells: Sequence[Cell],
    *,
    spacing_nm: float,
    sites: int | None,
    context_nm: float,
    seed: int,
    batch_size: int = 32,
    workers: int = 1,
    device: str = "auto",
    progress: Progress | None = None,
) -> EmbeddedCells:
    """Embed mask views around ``sites`` random sites per cell and their context.

    See :func:`~.morphology_views.view_nodes` for the nodes chosen; the
    model must take mask views only. ``progress(done, total)`` counts views.
    """
    import torch

    from ..embed import resolve_device
    from ..store import EmbeddingTable
    from ..views import ViewLoader, ViewPoints

    config = model.config
    if tuple(config.input_kinds) != ("mask",):
        raise CheckpointError(
            f"the encoder takes {', '.join(config.input_kinds)} views; reconstructed cells "
            "give masks only: train one with train-morphology"
        )
    volume = _volume(cells, config, jitter_nm=0.0)
    skeletons = volume.skeletons()
    parts: list[tuple[np.ndarray, ...]] = []
    for cell in volume.cells:
        pick = view_nodes(
            cell,
            spacing_nm=spacing_nm,
            sites=sites,
            context_nm=context_nm,
            seed=seed,
            skeleton=skeletons[cell.cell_id],
        )
        ids = np.full(len(pick.nodes), cell.cell_id, np.uint64)
        parts.append(
            (ids, pick.nodes, cell.nodes[pick.nodes], pick.sites, cell.compartments[pick.nodes])
        )
    ids, nodes, positions, site, compartment = (np.concatenate(p) for p in zip(*parts, strict=True))

    device_ = resolve_device(device)
    model = model.to(device_, memory_format=torch.channels_last_3d).eval()
    embeddings = np.zeros((len(ids), config.embedding_dim), np.float32)
    # Node ids of the points are row numbers, so each batch lands in its rows.
    points = ViewPoints(ids, np.arange(len(ids)), positions)
    loader = ViewLoader(
        volume.dataset,
        points,
        config,
        batch_size=batch_size,
        workers=workers,
        progress=progress,
        to_torch=True,
    )
    started = time.perf_counter()
    cuda = device_.type == "cuda"
    with torch.inference_mode(), torch.autocast(device_.type, torch.bfloat16, enabled=cuda):
        for views, batch in loader:
            views = views.to(device_, non_blocking=True)
            views = views.contiguous(memory_format=torch.channels_last_3d)
            embeddings[batch.node_ids] = model.embed(views).float().cpu().numpy()
    table = EmbeddingTable(ids, nodes, positions, embeddings)
    cell_index = np.repeat(np.arange(len(parts)), [len(p[0]) for p in parts])
    seconds = time.perf_counter() - started
    return EmbeddedCells(volume, table, cell_index, site, compartment, seconds)


def _volume(cells: Sequence[Cell], config: ModelConfig, *, jitter_nm: float) -> CellsVolume:
    """The cells in one mask volume at the encoder's voxel size, a view apart."""
    margin = max(config.field_of_view_nm) / 2 + jitter_nm + _GAP_NM
    return cells_dataset(cells, config.voxel_size_nm, margin_nm=margin)


# ----------------------------------------------------------------------------- evaluation


@dataclass(frozen=True, eq=False)
class MorphologyReport:
    """What :func:`evaluate_morphology` found.

    Attributes
    ----------
    summary
        JSON-able results: settings, cell counts, macro F1 and accuracy per
        radius and of the baseline, confusion matrices, compartment scores.
    cells
        One row per tested cell: table, file, label, fold, the prediction per
        radius (``predicted_R<r>``) and the baseline's (``predicted_baseline``).
    """

    summary: dict[str, Any]
    cells: pd.DataFrame


def evaluate_morphology(
    model: SegclrModel,
    train: MorphologyTable,
    test: MorphologyTable | None = None,
    *,
    config: MorphologyEvalConfig | None = None,
    render: RenderConfig | None = None,
    progress: Progress | None = None,
) -> MorphologyReport:
    """Cell types (and node compartments) from embeddings of mask views vs morphometrics.

    Parameters
    ----------
    model
        A mask-only SegCLR model (``SegclrModel``).
    train
        The training cells, with a label column; in cross-validation
        (``config.folds``) all cells.
    test
        The test cells (same label column), or None for cross-validation.
    config
        Sampling, radii, head and folds.
    render
        How cells are read and drawn; use the encoder's training settings.
    progress
        ``progress(done, total)`` over :data:`EVALUATE_PHASES`.

    Raises
    ------
    LabelError
        Fewer than two classes, a class with too few cells, a test class the
        training cells lack, or a cell listed twice.
    """
    from ..model import model_signature

    config = config or MorphologyEvalConfig()
    render = render or RenderConfig()
    if (test is None) == (config.folds is None):
        raise ValueError("give a test table or a number of folds (not both)")
    tables = [train] if test is None else [train, test]
    classes = _check_labels(train, test, config)
    started = time.perf_counter()
    cells = _read_cells(tables, render, progress)
    labels = np.array([c.cell_type for c in cells], dtype=object)
    in_test = np.repeat([False, True][: len(tables)], [len(t) for t in tables])
    _check_distinct(cells)
    timings = {"read_s": time.perf_counter() - started}

    clock = time.perf_counter()
    features = _morphometrics(cells, progress)
    timings["morphometrics_s"] = time.perf_counter() - clock
    embedded = embed_cells(
        model,
        cells,
        spacing_nm=config.spacing_um * 1000.0,
        sites=config.sites,
        context_nm=max(config.radii_um) * 1000.0,
        seed=config.seed,
        batch_size=config.batch_size,
        workers=config.workers,
        device=config.device,
        progress=progress,
    )
    timings["embed_s"] = embedded.seconds
    clock = time.perf_counter()
    averaged = _aggregate(embedded, config.radii_um, progress)
    timings["aggregate_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    signature = model_signature(model)
    splits = _splits(labels, in_test, config)
    found = _classify_cells(
        embedded, averaged, features, labels, splits, classes, config, signature, progress
    )
    cell_types = _cell_type_summary(labels, classes, *found)
    compartments = (
        _compartments(embedded, averaged, cells, splits, config, signature)
        if config.compartments
        else None
    )
    timings["classify_s"] = time.perf_counter() - clock
    timings["total_s"] = time.perf_counter() - started

    n_views = len(embedded.table)
    summary = {
        "task": "cell types from mask views of reconstructed cells (SegCLR) vs morphometrics",
        "mode": (
            f"{config.folds}-fold cross-validation over cells"
            if config.folds
            else "trained on one table, tested on another"
        ),
        "label": train.label,
        "classes": list(classes),
        "tables": [t.describe() for t in tables],
        "cells": {
            "train": None if test is None else len(train),
            "test": int(np.count_nonzero(found[2] >= 0)),
            "per_class": {c: int(np.count_nonzero(labels == c)) for c in classes},
        },
        "encoder": {
            "signature": signature,
            "config": model.config.to_dict(),
            "render": render_settings(
                model.config.voxel_size_nm,
                min_radius_nm=render.min_radius_nm,
                fixed_radius_nm=render.fixed_radius_nm,
            ),
        },
        "sampling": {
            "spacing_um": config.spacing_um,
            "sites_per_cell": config.sites,
            "context_um": max(config.radii_um),
            "views": n_views,
            "sites": int(np.count_nonzero(embedded.site)),
            "views_per_cell": round(n_views / len(cells), 1),
            "views_per_s": round(n_views / max(embedded.seconds, 1e-9), 1),
        },
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
        "cell_types": cell_types,
        "compartments": compartments,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }
    return MorphologyReport(summary, _cells_frame(tables, cells, labels, *found))


def _check_labels(
    train: MorphologyTable, test: MorphologyTable | None, config: MorphologyEvalConfig
) -> tuple[str, ...]:
    if train.label is None or (test is not None and test.label != train.label):
        raise LabelError("the training and test tables need the same label column")
    classes = check_classes(train.labels, what=str(train.path), folds=config.folds)
    if test is not None:
        unknown = sorted(set(test.labels) - set(classes))
        if unknown:
            raise LabelError(
                f"{test.path}: class {unknown[0]!r} has no training cells in {train.path}"
            )
    return classes


def _read_cells(
    tables: Sequence[MorphologyTable], render: RenderConfig, progress: Progress | None
) -> list[Cell]:
    """The cells of all tables in order; ``progress`` counts them over all tables."""
    total = sum(len(t) for t in tables)
    if progress is not None:
        progress(0, total)
    cells: list[Cell] = []
    for table in tables:
        before = len(cells)
        cells += table.read_cells(
            min_radius_nm=render.min_radius_nm,
            fixed_radius_nm=render.fixed_radius_nm,
            progress=None
            if progress is None
            else lambda done, _, before=before: progress(before + done, total),
        )
    return cells


def _check_distinct(cells: Sequence[Cell]) -> None:
    seen: set[int] = set()
    for cell in cells:
        if cell.cell_id in seen:
            raise LabelError(f"{cell.attributes['source']} is listed twice (in both tables?)")
        seen.add(cell.cell_id)


def _morphometrics(cells: Sequence[Cell], progress: Progress | None) -> np.ndarray:
    """(n_cells, n_features) whole-cell morphometrics."""
    rows = []
    for done, cell in enumerate(cells):
        if progress is not None:
            progress(done, len(cells))
        rows.append(morphometric_table([cell]))
    if progress is not None:
        progress(len(cells), len(cells))
    return pd.concat(rows).to_numpy(np.float64)


def _aggregate(
    embedded: EmbeddedCells, radii: Sequence[float], progress: Progress | None
) -> dict[float, np.ndarray]:
    """Embeddings averaged within each radius along the skeletons, by radius."""
    from ..aggregate import aggregate_embeddings

    skeletons = embedded.volume.skeletons()
    out = {}
    for done, radius in enumerate(radii):
        if progress is not None:
            progress(done, len(radii))
        out[radius] = aggregate_embeddings(
            embedded.table, radius_um=radius, metric="path", skeletons=skeletons
        ).embedding
    if progress is not None:
        progress(len(radii), len(radii))
    return out


def _splits(
    labels: np.ndarray, in_test: np.ndarray, config: MorphologyEvalConfig
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(training cells, test cells) index pairs: the two tables, or stratified folds."""
    if config.folds is None:
        return [(np.flatnonzero(~in_test), np.flatnonzero(in_test))]
    from sklearn.model_selection import StratifiedKFold

    folds = StratifiedKFold(n_splits=config.folds, shuffle=True, random_state=config.seed)
    return list(folds.split(np.zeros(len(labels)), labels.astype(str)))


def _classify_cells(
    embedded: EmbeddedCells,
    averaged: Mapping[float, np.ndarray],
    features: np.ndarray,
    labels: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    classes: tuple[str, ...],
    config: MorphologyEvalConfig,
    signature: str,
    progress: Progress | None,
) -> tuple[dict[float, np.ndarray], np.ndarray, np.ndarray, dict[float, float]]:
    """Per split: a head per radius on the training cells' sites, and the forest.

    Returns each cell's predicted class per radius and by the forest (''
    where untested), its fold (-1 where untested), and per radius the
    fraction of test sites predicted right on their own.
    """
    from ..heads import combine_segments, fit_head
    from .baselines import fit_forest

    cell_of = embedded.cell_index
    n = len(labels)
    predicted = {r: np.full(n, "", dtype=object) for r in config.radii_um}
    baseline = np.full(n, "", dtype=object)
    fold_of = np.full(n, -1)
    site_hits = dict.fromkeys(config.radii_um, 0)
    total = len(splits) * (len(config.radii_um) + 1)
    step = 0
    for fold, (train_idx, test_idx) in enumerate(splits):
        fold_of[test_idx] = fold
        train_rows = np.flatnonzero(embedded.site & np.isin(cell_of, train_idx))
        test_rows = np.flatnonzero(embedded.site & np.isin(cell_of, test_idx))
        for radius in config.radii_um:
            if progress is not None:
                progress(step, total)
            head = fit_head(
                averaged[radius][train_rows],
                labels[cell_of[train_rows]].astype(str),
                kind=config.head,
                classes=classes,
                encoder_signature=signature,
                seed=config.seed,
            )
            prediction = head.predict(averaged[radius][test_rows])
            site_hits[radius] += int(
                np.count_nonzero(prediction.labels == labels[cell_of[test_rows]])
            )
            # Combined per cell id, in id order; each id's first row names its cell.
            per_cell = combine_segments(prediction, embedded.table.segment_id[test_rows])
            first = np.unique(embedded.table.segment_id[test_rows], return_index=True)[1]
            predicted[radius][cell_of[test_rows[first]]] = per_cell.labels
            step += 1
        if progress is not None:
            progress(step, total)
        forest = fit_forest(features[train_idx], labels[train_idx].astype(str), seed=config.seed)
        baseline[test_idx] = forest.predict(features[test_idx])
        step += 1
    if progress is not None:
        progress(total, total)
    n_sites = np.count_nonzero(embedded.site & (fold_of[cell_of] >= 0))
    return predicted, baseline, fold_of, {r: h / n_sites for r, h in site_hits.items()}


def _cell_type_summary(
    labels: np.ndarray,
    classes: tuple[str, ...],
    predicted: Mapping[float, np.ndarray],
    baseline: np.ndarray,
    fold_of: np.ndarray,
    site_accuracy: Mapping[float, float],
) -> dict[str, Any]:
    """Scores over all tested cells, and per fold, per radius and of the forest."""
    from .metrics import classification_scores

    tested = fold_of >= 0
    folds = np.unique(fold_of[tested])

    def scores(guess: np.ndarray) -> dict[str, Any]:
        pooled = classification_scores(labels[tested], guess[tested], classes=classes)
        per_fold = [
            classification_scores(labels[fold_of == f], guess[fold_of == f], classes=classes)
            for f in folds
        ]
        return {
            **pooled,
            "fold_macro_f1": [f["macro_f1"] for f in per_fold],
            "fold_accuracy": [f["accuracy"] for f in per_fold],
        }

    by_radius = [
        {"radius_um": r, **scores(guess), "site_accuracy": round(site_accuracy[r], 4)}
        for r, guess in predicted.items()
    ]
    base = scores(baseline)
    best = max(by_radius, key=lambda e: (e["macro_f1"], e["accuracy"]))
    return {
        "by_radius": by_radius,
        "baseline": {"method": "random forest on whole-cell morphometrics", **base},
        "best_radius_um": best["radius_um"],
        "segclr_at_least_baseline": {
            f"{e['radius_um']:g}": bool(e["macro_f1"] >= base["macro_f1"]) for e in by_radius
        },
        "confusion": {
            "classes": list(classes),
            "rows": "true class",
            "columns": "predicted class",
            "segclr": best["confusion"],
            "baseline": base["confusion"],
        },
    }


def _compartments(
    embedded: EmbeddedCells,
    averaged: Mapping[float, np.ndarray],
    cells: Sequence[Cell],
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    config: MorphologyEvalConfig,
    signature: str,
) -> dict[str, Any]:
    """Node compartments per group of cells: a head per split and radius, pooled test scores.

    Heads train on every embedded non-soma node of a group's training cells
    and are scored on the test cells' nodes of the compartments they know.
    """
    from ..heads import fit_head
    from .metrics import classification_scores

    cell_of = embedded.cell_index
    names = np.array([COMPARTMENT_NAMES.get(int(c), "") for c in embedded.compartment])
    column = config.group_column
    group_of = np.array([str(c.attributes.get(column, "all")) if column else "all" for c in cells])
    groups: dict[str, Any] = {}
    for group in sorted(set(group_of)):
        member = (group_of[cell_of] == group) & (names != "")
        by_radius = []
        for radius in config.radii_um:
            truth, guess = [], []
            for train_idx, test_idx in splits:
                rows = np.flatnonzero(member & np.isin(cell_of, train_idx))
                known, counts = np.unique(names[rows], return_counts=True)
                known = known[counts >= 2]
                if len(known) < 2:
                    continue
                rows = rows[np.isin(names[rows], known)]
                head = fit_head(
                    averaged[radius][rows],
                    names[rows],
                    kind=config.head,
                    encoder_signature=signature,
                    seed=config.seed,
                )
                test_rows = np.flatnonzero(
                    member & np.isin(names, known) & np.isin(cell_of, test_idx)
                )
                truth.append(names[test_rows])
                guess.append(head.predict(averaged[radius][test_rows]).labels)
            if not truth:
                break
            truth_all = np.concatenate(truth)
            present = [n for n in COMPARTMENT_NAMES.values() if np.any(truth_all == n)]
            scores = classification_scores(truth_all, np.concatenate(guess), classes=present)
            nodes = {n: int(np.count_nonzero(truth_all == n)) for n in present}
            by_radius.append({"radius_um": radius, **scores, "nodes": nodes})
        groups[group] = {"cells": int(np.count_nonzero(group_of == group)), "by_radius": by_radius}
        if not by_radius:
            groups[group]["note"] = "fewer than two compartments with training nodes"
    return {"group_column": column, "groups": groups}


def _cells_frame(
    tables: Sequence[MorphologyTable],
    cells: Sequence[Cell],
    labels: np.ndarray,
    predicted: Mapping[float, np.ndarray],
    baseline: np.ndarray,
    fold_of: np.ndarray,
    site_accuracy: Mapping[float, float],
) -> pd.DataFrame:
    """One row per tested cell: where it is listed, its class, fold and predictions."""
    frame = pd.DataFrame(
        {
            "table": np.concatenate([[str(t.path)] * len(t) for t in tables]),
            "file": np.concatenate([t.files for t in tables]),
            "cell_id": np.array([c.cell_id for c in cells], dtype=np.uint64),
            "label": labels,
            "fold": fold_of,
            **{f"predicted_R{r:g}": p for r, p in predicted.items()},
            "predicted_baseline": baseline,
        }
    )
    return frame[fold_of >= 0].reset_index(drop=True)
