"""Evaluate a SegCLR model on synthetic neuropil it never saw: ``napari-segclr evaluate``.

::

    from napari_segclr.evaluate import EvaluationConfig, run_evaluation
    from napari_segclr.model.shipped import load_shipped_model

    model, _ = load_shipped_model()
    report = run_evaluation(model, "evaluation/", EvaluationConfig(), model_name="lite")
    report["bars"]  # each bar with its figure and "met" / "missed"

One volume per seed is rendered (:func:`~.synthetic.evaluation_volume`); heads
and baselines are fitted on the volumes of ``train_seeds`` and scored on those
of ``test_seeds``, never the same volume for both. The report holds:

* ``subcompartments`` and ``label_efficiency``: soma / dendrite / axon / glia
  per view; macro F1 against the number of labelled views for a linear head
  on the embeddings, the same network trained from scratch on the labels
  (:func:`~.baselines.train_supervised_cnn`) and a random forest on
  hand-crafted features; the label multiple.
* ``cell_types``: the six synthetic types per node and per segment, with
  embeddings averaged within R µm along the skeleton, for every R; beside
  them a random forest on the node views' hand-crafted features, averaged
  the same way.
* ``ood``: heads fitted on glia types only and shown glia and neurons; AUROC
  of their uncertainty for telling the neurons out.
* ``umap``: 2-d UMAP coordinates of test embeddings, for the picture.
* ``bars``: the figures the model is held to, each met or missed.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import numpy as np
import torch

from ..aggregate import Aggregation, aggregate_embeddings
from ..embed import resolve_device
from ..heads import Head, combine_segments, fit_head
from ..model import SegclrModel, model_signature
from ..model.presets import PRESETS, ModelConfig
from ..session import CELL_TYPE, COMPARTMENT
from ..store import EmbeddingTable
from ..views import ViewLoader, ViewPoints, ViewSpec
from .baselines import (
    VIEW_FEATURES,
    SupervisedSettings,
    batch_features,
    fit_forest,
    train_supervised_cnn,
    view_features,
)
from .metrics import classification_scores, label_multiple, learning_curve, ood_scores
from .report import check_output_dir, write_report
from .synthetic import (
    CELL_TYPE_NAMES,
    EVALUATION_EXTENT_UM,
    GLIA_TYPES,
    KEPT_KINDS,
    NODES_PER_TYPE,
    SUBCOMPARTMENTS,
    EvaluationVolume,
    LabelledSegments,
    LabelledViews,
    check_evaluation_seeds,
    evaluation_volume,
    kept_channels,
    labelled_views,
    model_inputs,
)

REPORT_FORMAT = "napari-segclr/evaluation"
REPORT_VERSION = 1
#: ``progress(phase, done, total)``: a phase is a short text such as "seed 1000: render".
PhaseProgress = Callable[[str, int, int], None]
#: The bars a model is held to.
SUBCOMPARTMENT_F1_BAR = 0.95
LABEL_MULTIPLE_BAR = 100.0
CELL_TYPE_F1_BAR = 0.85
OOD_AUROC_BAR = 0.9


@dataclass(frozen=True)
class EvaluationConfig:
    """What an evaluation renders, fits and scores.

    Parameters
    ----------
    train_seeds, test_seeds
        Synthetic neuropil seeds (all >= 1000, none in both): heads and baselines
        are fitted on the first, scored on the second.
    views_per_class
        Subcompartment views per class in each split, shared out over its seeds.
    volume_um
        Size (z, y, x) of each seed's rendered volume in µm; more than a view's
        field of view along each axis. The default lets segments run for tens
        of µm, so that aggregation radii up to 25 µm have cell to average over,
        and keeps most node views clear of the faces.
    voxel_size_nm
        Voxel size of the rendered volumes; None: half the views' voxel size, but
        at least 32 nm (what the shipped model was trained on).
    labels_per_class, draws
        The label-efficiency curve: labelled views per class at each point
        (every view of the training split is always added), and random draws
        of the labelled views per point.
    cnn_labels_per_class, cnn_draws, cnn
        The same for the supervised CNN, the costly baseline, and its budget.
        The default budget (20 epochs, 2,048 to 16,384 view passes) trains it
        near its plateau on every label: on 800 labelled lite views it scores
        0.827, 0.839 and 0.847 macro F1 after 2,048, 8,192 and 16,384 passes.
    node_spacing_nm, nodes_per_type
        Cell types: skeleton nodes (one view each) every this many nm, and at
        most this many nodes per cell type and seed.
    radii_um
        Aggregation radii for cell types (µm along the skeleton).
    ood_radius_um
        Aggregation radius of the out-of-distribution test.
    umap_neighbors, umap_epochs, umap_points
        UMAP settings, and the most points shown per picture.
    batch_size, workers, device
        Views per batch, view-cutting threads, and "auto", "cpu", "cuda" or "cuda:N".
    seed
        Seeds every random draw, fit and initialisation.
    """

    train_seeds: tuple[int, ...] = (1000, 1001)
    test_seeds: tuple[int, ...] = (1002, 1003)
    views_per_class: int = 200
    volume_um: tuple[float, float, float] = EVALUATION_EXTENT_UM
    voxel_size_nm: float | None = None
    labels_per_class: tuple[int, ...] = (2, 4, 8, 16, 32, 64)
    draws: int = 5
    cnn_labels_per_class: tuple[int, ...] = (2, 8, 32)
    cnn_draws: int = 1
    cnn: SupervisedSettings = field(
        default_factory=lambda: SupervisedSettings(epochs=20, min_passes=2048, max_passes=16384)
    )
    node_spacing_nm: float = 1000.0
    nodes_per_type: int = NODES_PER_TYPE
    radii_um: tuple[float, ...] = (0.0, 5.0, 10.0, 25.0)
    ood_radius_um: float = 10.0
    umap_neighbors: int = 15
    umap_epochs: int = 200
    umap_points: int = 1500
    batch_size: int = 16
    workers: int = 1
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        train = check_evaluation_seeds(self.train_seeds, name="train_seeds")
        test = check_evaluation_seeds(self.test_seeds, name="test_seeds")
        if not train or not test:
            raise ValueError("train_seeds and test_seeds must each name at least one seed")
        shared = sorted(set(train) & set(test))
        if shared:
            raise ValueError(f"seeds {shared} are in both train_seeds and test_seeds")
        object.__setattr__(self, "train_seeds", train)
        object.__setattr__(self, "test_seeds", test)
        for name in ("views_per_class", "draws", "cnn_draws", "nodes_per_type"):
            _positive_int(getattr(self, name), name)
        for name in ("umap_neighbors", "umap_epochs", "umap_points", "batch_size"):
            _positive_int(getattr(self, name), name)
        if self.views_per_class < max(len(train), len(test)):
            raise ValueError("views_per_class must be at least the number of seeds of each split")
        for name in ("labels_per_class", "cnn_labels_per_class"):
            counts = tuple(getattr(self, name))
            if not counts or any(isinstance(k, bool) or not isinstance(k, int) for k in counts):
                raise ValueError(f"{name} must be integers >= 2, got {counts!r}")
            if min(counts) < 2:
                raise ValueError(f"{name} must be >= 2 (a head needs 2 examples per class)")
            object.__setattr__(self, name, counts)
        radii = tuple(float(r) for r in self.radii_um)
        if not radii or any(not 0 <= r < float("inf") for r in radii):
            raise ValueError(f"radii_um must be numbers >= 0, got {self.radii_um!r}")
        object.__setattr__(self, "radii_um", radii)
        volume = tuple(float(v) for v in self.volume_um)
        if len(volume) != 3 or min(volume) <= 0:
            raise ValueError(f"volume_um must be three positive sizes, got {self.volume_um!r}")
        object.__setattr__(self, "volume_um", volume)
        if self.voxel_size_nm is not None and not 2 <= self.voxel_size_nm <= 200:
            raise ValueError(f"voxel_size_nm must be in [2, 200] nm, got {self.voxel_size_nm!r}")
        if not 0 <= self.ood_radius_um < float("inf"):
            raise ValueError(f"ood_radius_um must be a number >= 0, got {self.ood_radius_um!r}")
        if not 0 < self.node_spacing_nm < float("inf"):
            raise ValueError(f"node_spacing_nm must be positive, got {self.node_spacing_nm!r}")
        if not isinstance(self.cnn, SupervisedSettings):
            raise TypeError(f"cnn must be SupervisedSettings, got {type(self.cnn).__name__}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ValueError(f"workers must be an integer >= 0, got {self.workers!r}")
        resolve_device(self.device, check=False)

    @classmethod
    def quick(cls, **changes: Any) -> EvaluationConfig:
        """A small evaluation (one seed per split, few views): a check, not a measurement."""
        settings: dict[str, Any] = {
            "train_seeds": (1000,),
            "test_seeds": (1001,),
            "views_per_class": 12,
            "volume_um": (5.0, 8.8, 8.8),
            "labels_per_class": (2, 4, 8),
            "draws": 2,
            "cnn_labels_per_class": (2,),
            "cnn": SupervisedSettings(epochs=4, min_passes=32, max_passes=64),
            "nodes_per_type": 40,
            "umap_epochs": 50,
            "umap_points": 300,
        }
        settings.update(changes)
        return cls(**settings)

    def render_voxel_size(self, model_config: ModelConfig) -> float:
        """Voxel size (nm) of the rendered volumes for a model's views."""
        if self.voxel_size_nm is not None:
            return float(self.voxel_size_nm)
        return max(min(model_config.voxel_size_nm) / 2, 32.0)

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-able dict."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["cnn"] = asdict(self.cnn)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def _positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True, eq=False)
class _Split:
    """The embedded views and nodes of the seeds of one split."""

    views: LabelledViews
    view_embeddings: np.ndarray
    tables: list[EmbeddingTable]  # one per seed
    segments: list[LabelledSegments]  # one per seed
    node_features: list[np.ndarray]  # one per seed: hand-crafted features of the node views

    @cached_property
    def node_types(self) -> np.ndarray:
        """(n_nodes,) true cell type of every node, seed after seed."""
        return np.concatenate(
            [
                np.array([s.cell_types[int(i)] for i in t.segment_id], dtype=object).astype(str)
                for t, s in zip(self.tables, self.segments, strict=True)
            ]
        )

    def aggregated(self, radius_um: float, *, features: bool = False) -> np.ndarray:
        """Node embeddings (or view features) averaged within ``radius_um`` along each
        skeleton, seed by seed."""
        out = []
        for table, segments, seed_features in zip(
            self.tables, self.segments, self.node_features, strict=True
        ):
            if features:
                table = replace(table, embedding=seed_features)
            out.append(
                aggregate_embeddings(table, radius_um=radius_um, skeletons=segments.skeletons)
            )
        return np.concatenate([a.embedding for a in out])

    def segment_keys(self) -> np.ndarray:
        """(n_nodes,) uint64 key per node, one per (seed, segment): ids may repeat across seeds."""
        pairs = np.concatenate(
            [
                np.column_stack([np.full(len(t.segment_id), i, np.uint64), t.segment_id])
                for i, t in enumerate(self.tables)
            ]
        )
        return (np.unique(pairs, axis=0, return_inverse=True)[1].ravel() + 1).astype(np.uint64)


def evaluate_model(
    model: SegclrModel,
    config: EvaluationConfig | None = None,
    *,
    model_name: str | None = None,
    progress: PhaseProgress | None = None,
) -> dict[str, Any]:
    """Evaluate ``model``; returns the report (a JSON-able dict, see the module docs)."""
    config = config or EvaluationConfig()
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_1min_start": round(os.getloadavg()[0], 2),
        },
        "model": _model_info(model, model_name),
        "config": config.to_dict(),
    }
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    device = resolve_device(config.device)
    model = model.to(device, memory_format=torch.channels_last_3d).eval()
    voxel_size = config.render_voxel_size(model.config)
    rng = np.random.default_rng(config.seed)
    train = _embed_split(config.train_seeds, model, config, voxel_size, rng, device, progress)
    test = _embed_split(config.test_seeds, model, config, voxel_size, rng, device, progress)
    seconds["render_and_embed"] = time.perf_counter() - clock
    report["data"] = _data_info(config, voxel_size, train, test)

    clock = time.perf_counter()
    report["label_efficiency"], report["subcompartments"] = _subcompartments(
        train, test, model.config, config, device, progress
    )
    seconds["label_efficiency"] = time.perf_counter() - clock

    clock = time.perf_counter()
    with _one_torch_thread():
        report["cell_types"] = _cell_types(train, test, config, progress)
    seconds["cell_types"] = time.perf_counter() - clock

    clock = time.perf_counter()
    with _one_torch_thread():
        report["ood"] = _out_of_distribution(train, test, config, progress)
    seconds["ood"] = time.perf_counter() - clock

    clock = time.perf_counter()
    report["umap"] = _umap(test, config, report["subcompartments"]["classes"], progress)
    seconds["umap"] = time.perf_counter() - clock

    report["bars"] = bars(report)
    report["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    report["seconds"]["total"] = round(sum(seconds.values()), 1)
    report["machine"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    return report


def fit_synthetic_heads(
    model: SegclrModel,
    train_seeds: Sequence[int],
    calibration_seeds: Sequence[int],
    config: EvaluationConfig | None = None,
    *,
    kind: str = "sngp",
    radius_um: float = 10.0,
    coverage: float = 0.95,
    progress: PhaseProgress | None = None,
) -> dict[str, Head]:
    """Heads for both targets fitted on labelled synthetic neuropil: a ready answer.

    "compartment" classifies single views (soma / dendrite / axon / glia);
    "cell type" classifies node embeddings averaged over ``radius_um`` along the
    skeleton. Each rejects what is less certain than ``coverage`` of the views or
    nodes of ``calibration_seeds``. The volumes, views and nodes are drawn as by
    :func:`evaluate_model` (``config``); any seeds may be used, so fit the heads
    of a shipped model on its training seeds and keep the evaluation seeds apart.
    """
    config = config or EvaluationConfig()
    device = resolve_device(config.device)
    model = model.to(device, memory_format=torch.channels_last_3d).eval()
    voxel_size = config.render_voxel_size(model.config)
    rng = np.random.default_rng(config.seed)
    splits = [
        _embed_split(seeds, model, config, voxel_size, rng, device, progress, held_out=False)
        for seeds in (train_seeds, calibration_seeds)
    ]
    signature = model_signature(model)
    aggregation = Aggregation(radius_um)
    inputs = {
        COMPARTMENT: [(s.view_embeddings, s.views.labels) for s in splits],
        CELL_TYPE: [(s.aggregated(radius_um), s.node_types) for s in splits],
    }
    heads = {}
    with _one_torch_thread():
        for target, ((x, y), (calib_x, _)) in inputs.items():
            head = fit_head(
                x,
                y,
                kind=kind,
                encoder_signature=signature,
                seed=config.seed,
                aggregation=aggregation if target == CELL_TYPE else None,
            )
            heads[target] = head.calibrate_reject(calib_x, coverage=coverage)
    return heads


def run_evaluation(
    model: SegclrModel,
    out_dir: str | os.PathLike[str],
    config: EvaluationConfig | None = None,
    *,
    model_name: str | None = None,
    force: bool = False,
    progress: PhaseProgress | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` and write the report into ``out_dir`` (see :func:`write_report`).

    ``out_dir`` is checked before any work: an existing non-empty folder is
    refused (``OutputExistsError``) unless ``force``.
    """
    out = check_output_dir(out_dir, force=force)
    report = evaluate_model(model, config, model_name=model_name, progress=progress)
    write_report(report, out, force=force)
    return report


# ----------------------------------------------------------------------------- embedding


def _embed_split(
    seeds: Sequence[int],
    model: SegclrModel,
    config: EvaluationConfig,
    voxel_size: float,
    rng: np.random.Generator,
    device: torch.device,
    progress: PhaseProgress | None,
    *,
    held_out: bool = True,
) -> _Split:
    """Render every seed, cut and embed its labelled views and segment nodes."""
    shares = np.full(len(seeds), config.views_per_class // len(seeds))
    shares[: config.views_per_class % len(seeds)] += 1
    views, embeddings, tables, segments, features = [], [], [], [], []
    for seed, share in zip(seeds, shares, strict=True):
        volume = evaluation_volume(
            seed,
            model.config,
            views_per_class=int(share),
            extent_um=config.volume_um,
            voxel_size_nm=voxel_size,
            spacing_nm=config.node_spacing_nm,
            nodes_per_type=config.nodes_per_type,
            rng=rng,
            progress=_phase(progress, f"seed {seed}: render"),
            held_out=held_out,
        )
        seed_views, seed_embeddings = _embed_views(volume, model, config, device, progress)
        views.append(seed_views)
        embeddings.append(seed_embeddings)
        table, seed_features = _embed_nodes(
            volume.dataset, volume.segments, model, config, device, progress, seed
        )
        tables.append(table)
        features.append(seed_features)
        segments.append(volume.segments)
    return _Split(
        LabelledViews.concat(views), np.concatenate(embeddings), tables, segments, features
    )


def _embed_views(
    volume: EvaluationVolume,
    model: SegclrModel,
    config: EvaluationConfig,
    device: torch.device,
    progress: PhaseProgress | None,
) -> tuple[LabelledViews, np.ndarray]:
    """The labelled views of a volume (kept for the baselines) and their embeddings.

    The model embeds the kept (quantised) views, so every method sees the same inputs.
    """
    views = labelled_views(
        volume,
        model.config.view_shape,
        model.config.voxel_size_nm,
        batch_size=config.batch_size,
        workers=config.workers,
        progress=_phase(progress, f"seed {volume.seed}: cut views"),
    )
    embeddings = np.empty((len(views), model.config.embedding_dim), np.float32)
    for start in range(0, len(views), config.batch_size):
        rows = slice(start, start + config.batch_size)
        embeddings[rows] = _embed_batch(model, views.inputs(rows, model.config.input_kinds), device)
    return views, embeddings


def _embed_nodes(
    dataset: Any,
    segments: LabelledSegments,
    model: SegclrModel,
    config: EvaluationConfig,
    device: torch.device,
    progress: PhaseProgress | None,
    seed: int,
) -> tuple[EmbeddingTable, np.ndarray]:
    """Embeddings and hand-crafted features of every node's view, in the order of
    ``segments.points()``; the model embeds the quantised views, as in :func:`_embed_views`."""
    points = segments.points()
    embeddings = np.empty((len(points), model.config.embedding_dim), np.float32)
    features = np.empty((len(points), len(VIEW_FEATURES)), np.float32)
    # The loader hands batches over in spatial order: number the views by their row.
    rows = ViewPoints(points.segment_ids, np.arange(len(points)), points.centers_nm)
    spec = ViewSpec(model.config.view_shape, model.config.voxel_size_nm, KEPT_KINDS)
    loader = ViewLoader(
        dataset,
        rows,
        spec,
        batch_size=config.batch_size,
        workers=config.workers,
        progress=_phase(progress, f"seed {seed}: embed nodes"),
        dtype="uint8",
    )
    for views, batch in loader:
        em, mask = kept_channels(views)
        inputs = model_inputs(em, mask, model.config.input_kinds)
        embeddings[batch.node_ids] = _embed_batch(model, inputs, device)
        features[batch.node_ids] = batch_features(em, mask, spec.voxel_size_nm)
    table = EmbeddingTable(points.segment_ids, points.node_ids, points.centers_nm, embeddings)
    return table, features


def _embed_batch(model: SegclrModel, views: np.ndarray, device: torch.device) -> np.ndarray:
    x = torch.from_numpy(views).to(device).contiguous(memory_format=torch.channels_last_3d)
    cuda = device.type == "cuda"
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
        return model.embed(x).float().cpu().numpy()


# ----------------------------------------------------------------------------- the parts


def _subcompartments(
    train: _Split,
    test: _Split,
    model_config: ModelConfig,
    config: EvaluationConfig,
    device: torch.device,
    progress: PhaseProgress | None,
) -> tuple[dict, dict]:
    """The label-efficiency curves of the three methods, and their scores with every label."""
    classes = _trainable_classes(train.views.labels, SUBCOMPARTMENTS)
    keep_train = np.isin(train.views.labels, classes)
    keep_test = np.isin(test.views.labels, classes)
    train_views, test_views = train.views.take(keep_train), test.views.take(keep_test)
    train_x, test_x = train.view_embeddings[keep_train], test.view_embeddings[keep_test]
    train_y, test_y = train_views.labels, test_views.labels

    def segclr(index: np.ndarray, seed: int) -> np.ndarray:
        with _one_torch_thread():
            head = fit_head(
                train_x[index], train_y[index], kind="linear", classes=classes, seed=seed
            )
            return head.predict(test_x).labels

    tick = _phase(progress, "view features")
    tick(0, 2)
    train_f = view_features(train_views)
    tick(1, 2)
    test_f = view_features(test_views)
    tick(2, 2)

    def forest(index: np.ndarray, seed: int) -> np.ndarray:
        return fit_forest(train_f[index], train_y[index], seed=seed).predict(test_f)

    def cnn(index: np.ndarray, seed: int) -> np.ndarray:
        network = train_supervised_cnn(
            train_views.take(index),
            model_config,
            classes=classes,
            settings=config.cnn,
            seed=seed,
            device=str(device),
            progress=_phase(progress, f"supervised CNN: {len(index)} labels, seed {seed}"),
        )
        return network.predict(test_views, batch_size=config.batch_size, device=str(device))

    methods = {
        "segclr_linear": (segclr, config.labels_per_class, config.draws),
        "supervised_cnn": (cnn, config.cnn_labels_per_class, config.cnn_draws),
        "features_rf": (forest, config.labels_per_class, config.draws),
    }
    curves, scores = {}, {}
    for name, (fit_predict, per_class, draws) in methods.items():
        curve = learning_curve(
            fit_predict,
            train_y,
            test_y,
            labels_per_class=(*per_class, config.views_per_class),
            draws=draws,
            seed=config.seed,
            progress=_phase(progress, f"label efficiency: {name}"),
        )
        scores[name] = classification_scores(test_y, curve.pop("predicted"), classes=classes)
        scores[name]["labels"] = curve["labels"][-1]
        curves[name] = curve
    efficiency = {
        "x": "labelled views (class-balanced draws)",
        "methods": curves,
        "label_multiple": label_multiple(curves["segclr_linear"], curves["supervised_cnn"]),
        "cnn_budget": asdict(config.cnn),
    }
    summary = {
        "classes": classes,
        "n_train": len(train_y),
        "n_test": len(test_y),
        "features": list(VIEW_FEATURES),
        "methods": scores,
    }
    return efficiency, summary


def _trainable_classes(train_labels: np.ndarray, candidates: Sequence[str]) -> list[str]:
    """The candidates with at least the 2 training examples a head needs, in their order."""
    names, counts = np.unique(train_labels, return_counts=True)
    enough = set(names[counts >= 2].tolist())
    return [c for c in candidates if c in enough]


def _cell_types(
    train: _Split, test: _Split, config: EvaluationConfig, progress: PhaseProgress | None
) -> dict:
    """Cell-type macro F1 per node and per segment at every aggregation radius."""
    train_types, test_types = train.node_types, test.node_types
    classes = _trainable_classes(train_types, CELL_TYPE_NAMES)
    keep_train, keep_test = np.isin(train_types, classes), np.isin(test_types, classes)
    keys = test.segment_keys()[keep_test]
    segment_truth = dict(zip(keys.tolist(), test_types[keep_test].tolist(), strict=True))
    out: dict[str, Any] = {
        "classes": classes,
        "left_out_types": sorted(set(CELL_TYPE_NAMES) - set(classes)),
        "n_train_nodes": int(keep_train.sum()),
        "n_test_nodes": int(keep_test.sum()),
        "n_test_segments": len(segment_truth),
        "radii_um": list(config.radii_um),
        "per_node": [],
        "per_segment": [],
        "features_rf_per_node": [],
    }
    bar = _phase(progress, "cell types")
    for done, radius in enumerate(config.radii_um, start=1):
        train_x = train.aggregated(radius)[keep_train]
        test_x = test.aggregated(radius)[keep_test]
        head = fit_head(
            train_x, train_types[keep_train], kind="linear", classes=classes, seed=config.seed
        )
        pred = head.predict(test_x)
        out["per_node"].append(
            classification_scores(test_types[keep_test], pred.labels, classes=classes)
        )
        per_segment = combine_segments(pred, keys)
        truth = np.array([segment_truth[int(k)] for k in per_segment.segment_id])
        out["per_segment"].append(classification_scores(truth, per_segment.labels, classes=classes))
        # The baseline: the same views' hand-crafted features, averaged the same way.
        forest = fit_forest(
            train.aggregated(radius, features=True)[keep_train],
            train_types[keep_train],
            seed=config.seed,
        )
        guess = forest.predict(test.aggregated(radius, features=True)[keep_test])
        out["features_rf_per_node"].append(
            classification_scores(test_types[keep_test], guess, classes=classes)
        )
        bar(done, len(config.radii_um))
    node_f1 = [s["macro_f1"] for s in out["per_node"]]
    best = int(np.argmax(node_f1))
    out["per_node_macro_f1"] = node_f1
    out["per_segment_macro_f1"] = [s["macro_f1"] for s in out["per_segment"]]
    out["features_rf_per_node_macro_f1"] = [s["macro_f1"] for s in out["features_rf_per_node"]]
    out["best_radius_um"] = config.radii_um[best]
    return out


def _out_of_distribution(
    train: _Split, test: _Split, config: EvaluationConfig, progress: PhaseProgress | None
) -> dict:
    """Heads fitted on glia types only; AUROC of their uncertainty for spotting neurons."""
    train_types, test_types = train.node_types, test.node_types
    inside = _trainable_classes(train_types, GLIA_TYPES)
    out: dict[str, Any] = {"in_distribution": inside, "radius_um": config.ood_radius_um}
    is_out = ~np.isin(test_types, GLIA_TYPES)
    if len(inside) < 2 or is_out.all() or not is_out.any():
        out.update(
            heads={},
            skipped="needs two glia types in training and both glia and neurons in testing",
        )
        return out
    keep_train = np.isin(train_types, inside)
    keep_test = is_out | np.isin(test_types, inside)
    out.update(
        ood_scores(
            train.aggregated(config.ood_radius_um)[keep_train],
            train_types[keep_train],
            test.aggregated(config.ood_radius_um)[keep_test],
            test_types[keep_test],
            seed=config.seed,
            progress=_phase(progress, "out of distribution"),
        )
    )
    return out


def _umap(
    test: _Split, config: EvaluationConfig, classes: Sequence[str], progress: PhaseProgress | None
) -> dict:
    """2-d UMAP coordinates of test view embeddings and test node embeddings (R = 0)."""
    rng = np.random.default_rng(config.seed)
    parts = {
        "subcompartments": (test.view_embeddings, test.views.labels),
        "cell_types": (np.concatenate([t.embedding for t in test.tables]), test.node_types),
    }
    out: dict[str, Any] = {"n_neighbors": config.umap_neighbors, "n_epochs": config.umap_epochs}
    bar = _phase(progress, "umap")
    for done, (name, (x, labels)) in enumerate(parts.items(), start=1):
        keep = np.sort(rng.permutation(len(x))[: config.umap_points])
        xy = umap_coordinates(
            x[keep],
            n_neighbors=config.umap_neighbors,
            n_epochs=config.umap_epochs,
            seed=config.seed,
        )
        out[name] = {
            "x": xy[:, 0].round(3).tolist(),
            "y": xy[:, 1].round(3).tolist(),
            "labels": labels[keep].tolist(),
        }
        bar(done, len(parts))
    out["subcompartment_classes"] = list(classes)
    return out


def umap_coordinates(
    embeddings: np.ndarray, *, n_neighbors: int = 15, n_epochs: int = 200, seed: int = 0
) -> np.ndarray:
    """(N, 2) UMAP coordinates of (N, D) embeddings; (N, 2) zeros for fewer than 4 rows.

    The nearest neighbours are found with scikit-learn and handed to UMAP,
    which then skips its own search (and compiling it: half of UMAP's start-up).
    """
    from sklearn.neighbors import NearestNeighbors

    if len(embeddings) < 4:
        return np.zeros((len(embeddings), 2))
    with warnings.catch_warnings():
        # umap-learn warns at import that its optional TensorFlow part is unavailable.
        warnings.simplefilter("ignore", ImportWarning)
        import umap
    k = min(n_neighbors, len(embeddings) - 1)
    distances, indices = NearestNeighbors(n_neighbors=k).fit(embeddings).kneighbors(embeddings)
    reducer = umap.UMAP(
        n_neighbors=k,
        n_epochs=n_epochs,
        random_state=seed,
        n_jobs=1,
        precomputed_knn=(indices, distances.astype(np.float32), None),
    )
    with warnings.catch_warnings():
        # Without a search index UMAP cannot place new points later; it is never asked to.
        warnings.filterwarnings("ignore", message="precomputed_knn", category=UserWarning)
        return reducer.fit_transform(embeddings)


# ----------------------------------------------------------------------------- bars


def bars(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The bars the model is held to, each with its figure and verdict ("met" / "missed")."""
    found = []
    methods = report["subcompartments"]["methods"]
    f1 = methods["segclr_linear"]["macro_f1"]
    others = [
        f"{name} {methods[key]['macro_f1']:.3f}"
        for key, name in (("features_rf", "features + forest"), ("supervised_cnn", "CNN"))
    ]
    found.append(
        _bar(
            "subcompartment macro F1, linear head on embeddings, every label",
            f">= {SUBCOMPARTMENT_F1_BAR}",
            f1,
            None if f1 is None else f1 >= SUBCOMPARTMENT_F1_BAR,
            context=f"same views and labels: {', '.join(others)}",
        )
    )
    multiple = report["label_efficiency"]["label_multiple"]
    value = multiple["value"]
    if value is None:
        met, shown = False, "SegCLR never reaches the supervised CNN's best F1"
    elif value >= LABEL_MULTIPLE_BAR:
        met, shown = True, f"{'>= ' if multiple['lower_bound'] else ''}{value:g}x"
    elif multiple["lower_bound"]:
        met, shown = None, f">= {value:g}x (the most this run can show)"
    else:
        met, shown = False, f"{value:g}x"
    curves = report["label_efficiency"]["methods"]
    ends = [
        f"{name} {curves[key]['median'][0]:.3f} with {curves[key]['labels'][0]} labels, "
        f"{curves[key]['median'][-1]:.3f} with {curves[key]['labels'][-1]}"
        for key, name in (("segclr_linear", "linear head"), ("supervised_cnn", "CNN"))
    ]
    found.append(
        _bar(
            "label multiple vs the supervised CNN",
            f">= {LABEL_MULTIPLE_BAR:g}x",
            shown,
            met,
            context="; ".join(ends),
        )
    )
    cells = report["cell_types"]
    node_f1 = cells["per_node_macro_f1"]
    best = max(node_f1)
    rises = best > node_f1[0] if len(node_f1) > 1 else False
    found.append(
        _bar(
            "cell-type macro F1 per node: rises with R, at the best R",
            f"rises and >= {CELL_TYPE_F1_BAR}",
            f"{node_f1[0]:.3f} at R=0 -> {best:.3f} at R={cells['best_radius_um']:g} µm",
            rises and best >= CELL_TYPE_F1_BAR,
            context=_forest_context(cells),
        )
    )
    ood = report["ood"]
    if "skipped" in ood:
        found.append(
            _bar("OOD AUROC, SNGP vs plain heads", f">= {OOD_AUROC_BAR}", ood["skipped"], None)
        )
    else:
        sngp = ood["heads"]["sngp"]["scores"]["dempster_shafer"]["auroc"]
        plain = max(
            s["auroc"]
            for kind in ("linear", "mlp")
            for s in ood["heads"][kind]["scores"].values()
            if s["auroc"] is not None
        )
        found.append(
            _bar(
                "OOD AUROC (neurons vs glia): SNGP Dempster-Shafer vs best plain head",
                f">= {OOD_AUROC_BAR} and > plain",
                f"SNGP {sngp:.3f}, plain {plain:.3f}",
                sngp >= OOD_AUROC_BAR and sngp > plain,
            )
        )
    return found


def _forest_context(cells: dict[str, Any]) -> str:
    """What the forest on the node views' features scored, R = 0 and at its best R."""
    forest = cells["features_rf_per_node_macro_f1"]
    best = int(np.argmax(forest))
    return (
        f"same node views: features + forest {forest[0]:.3f} at R=0 -> "
        f"{forest[best]:.3f} at R={cells['radii_um'][best]:g} µm"
    )


def _bar(
    what: str, bar: str, value: Any, met: bool | None, *, context: str | None = None
) -> dict[str, Any]:
    """A bar with its verdict; ``context``: figures of the same run that explain it."""
    verdict = "not measurable" if met is None else ("met" if met else "missed")
    found = {"what": what, "bar": bar, "value": value, "met": met, "verdict": verdict}
    return found if context is None else {**found, "context": context}


# ----------------------------------------------------------------------------- helpers


def _model_info(model: SegclrModel, name: str | None) -> dict[str, Any]:
    preset = next((n for n, c in PRESETS.items() if c == model.config), "custom")
    return {
        "name": name or preset,
        "preset": preset,
        "signature": model_signature(model),
        "config": model.config.to_dict(),
    }


def _data_info(config: EvaluationConfig, voxel_size: float, train: _Split, test: _Split) -> dict:
    def per_class(labels: np.ndarray, names: Sequence[str]) -> dict[str, int]:
        return {n: int(np.sum(labels == n)) for n in names}

    return {
        "train_seeds": list(config.train_seeds),
        "test_seeds": list(config.test_seeds),
        "voxel_size_nm": voxel_size,
        "volume_um": list(config.volume_um),
        "views": {
            "train_per_class": per_class(train.views.labels, SUBCOMPARTMENTS),
            "test_per_class": per_class(test.views.labels, SUBCOMPARTMENTS),
        },
        "nodes": {
            "train_per_type": per_class(train.node_types, CELL_TYPE_NAMES),
            "test_per_type": per_class(test.node_types, CELL_TYPE_NAMES),
            "spacing_nm": config.node_spacing_nm,
        },
    }


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Heads are small networks: on one thread they fit many times faster than on
    several cores that other work shares (threads then wait for each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _phase(progress: PhaseProgress | None, name: str) -> Callable[[int, int], None]:
    """``progress`` for one phase, as a ``(done, total)`` callback (a no-op without one)."""
    if progress is None:
        return lambda done, total: None
    return lambda done, total: progress(name, done, total)
