"""The annotation session: click a segment, see what it is and how sure, label it, learn.

Headless (no napari, no Qt): the napari widget drives this object, and so can a
script or a notebook::

    from napari_segclr.session import AnnotationSession

    session = AnnotationSession(dataset, model, "cells.segclr")
    answer = session.click(1234, seed_voxel=(40, 512, 300))["cell_type"]
    session.label([1234], "axon", target="compartment")
    session.next_uncertain("compartment")

A session holds, for one dataset (EM + segmentation) and one SegCLR model:

- the **embedding store** ``<folder>/embeddings-<model signature[:12]>.zarr``:
  every embedded node, reused on the next click (a node is never embedded
  twice); all its rows are held in memory while the session is open;
- two **targets**, each with its editable class list, a head and annotations:
  ``"compartment"`` (each node from its own embedding: axon, dendrite, soma,
  glia) and ``"cell_type"`` (from embeddings averaged over ``radius_um`` along
  the segment: the path runs along the tree linking a segment's nodes, so a
  reopened session, which has only the store, gives the same numbers);
- a head per target: loaded from a file (:meth:`load_head`) or fitted on the
  user's labels (at least two classes with two labelled nodes each); without
  one, :meth:`answer` says why instead of predicting;
- **annotations** ``<folder>/annotations.csv`` (segment_id, target, class,
  annotator, time in UTC ISO 8601, model signature), rewritten atomically and
  flushed to disk on every label, so no confirmed label is lost on a crash;
  :meth:`undo` takes back the last labels;
- **predictions** ``<folder>/predictions.csv``, one row per embedded segment
  (the columns of :meth:`segment_frame`), rewritten atomically whenever they
  change; on reopening they are computed again from the store and the labels.

Threads: :meth:`embed_segment`, :meth:`embed_region` and the function returned
by :meth:`fit_job` touch only the store or their own copies, so they may run
in a worker; every other method changes the session and belongs to one thread
(napari's GUI thread).

Hook for plots (e.g. a UMAP of the embeddings), which can highlight and be
highlighted:

- ``session.changed.connect(callback)``: ``callback(what)`` after each change,
  ``what`` one of :data:`CHANGES`;
- ``session.nodes(target)`` → :class:`NodeResults` (per embedded node: segment
  and node ids, positions, the embeddings the target's head sees, annotations,
  prediction with uncertainty); ``session.segments(target)`` →
  :class:`SegmentResults` (the same per segment);
- ``session.select_segments(ids)`` and ``session.selected``.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from .aggregate import Aggregation
from .atomic import write_csv_atomic
from .embed import embed_fragment, embed_segments, open_embedding_store
from .exceptions import (
    LabelError,
    SegmentNotFoundError,
    SegmentTooSmallError,
    ShapeMismatchError,
    UnknownFormatError,
    VolumeNotFoundError,
)
from .heads import (
    HEAD_KINDS,
    Head,
    Prediction,
    SegmentPrediction,
    combine_segments,
    fit_head,
    load_head,
)
from .io import Dataset, Volume
from .io.source import parse_source
from .model import SegclrModel, model_signature
from .skeleton import SkeletonParams, skeletonize_segment
from .store import EmbeddingTable
from .synthetic.cell_types import TYPE_NAMES
from .views import extract_views

Progress = Callable[[int, int], None]

COMPARTMENT, CELL_TYPE = "compartment", "cell_type"
#: What a session predicts: each node's compartment and each segment's cell type.
TARGETS = (COMPARTMENT, CELL_TYPE)
#: The class lists a new session starts with (editable).
DEFAULT_CLASSES: dict[str, tuple[str, ...]] = {
    COMPARTMENT: ("axon", "dendrite", "soma", "glia"),
    CELL_TYPE: TYPE_NAMES,
}
#: What ``changed`` callbacks are told.
CHANGES = ("embeddings", "annotations", "predictions", "selection", "classes")
ANNOTATION_COLUMNS = ("segment_id", "target", "class", "annotator", "time", "model")
ANNOTATIONS_FILE, PREDICTIONS_FILE = "annotations.csv", "predictions.csv"
NO_HEAD = "label at least two classes"
#: The score :meth:`AnnotationSession.next_uncertain` ranks by, and heads reject on.
RANK_SCORE, REJECT_SCORE = "entropy", "dempster_shafer"


class Callbacks:
    """A minimal observer list: ``connect(fn)``, ``disconnect(fn)``, ``emit(*args)``."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[..., Any]] = []

    def connect(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callable[..., Any]) -> None:
        self._callbacks.remove(callback)

    def emit(self, *args: Any) -> None:
        for callback in list(self._callbacks):
            callback(*args)


class _Columns:
    """Per-row columns read off a prediction, with fills where there is no head yet."""

    segment_id: np.ndarray
    prediction: Prediction | SegmentPrediction | None

    @property
    def predicted(self) -> np.ndarray:
        """Predicted class names ("" without a head)."""
        return _or_fill(self.prediction, "labels", len(self.segment_id), "")

    @property
    def confidence(self) -> np.ndarray:
        """The largest class probability (NaN without a head)."""
        return _or_fill(self.prediction, "confidence", len(self.segment_id), np.nan)

    @property
    def uncertainty(self) -> np.ndarray:
        """Predictive entropy in nats (NaN without a head)."""
        return _or_fill(self.prediction, RANK_SCORE, len(self.segment_id), np.nan)

    @property
    def rejected(self) -> np.ndarray:
        """True where the head's reject rule calls the row out of distribution."""
        return _or_fill(self.prediction, "rejected", len(self.segment_id), False)


@dataclass(frozen=True, eq=False)
class NodeResults(_Columns):
    """One target's view of every embedded node (arrays of length N, rows sorted by id).

    Attributes
    ----------
    segment_id, node_id, position_nm
        The nodes: (N,) uint64, (N,) int64, (N, 3) nm (z, y, x).
    embedding
        (N, D) the embeddings the target's head sees (averaged over its radius).
    annotation
        (N,) the class the node's segment is labelled with, "" where unlabelled.
    prediction
        The head's prediction per node, or None without a head.
    """

    segment_id: np.ndarray
    node_id: np.ndarray
    position_nm: np.ndarray
    embedding: np.ndarray
    annotation: np.ndarray
    prediction: Prediction | None


@dataclass(frozen=True, eq=False)
class SegmentResults(_Columns):
    """One target's view of every embedded segment (arrays of length S, ids ascending).

    Attributes
    ----------
    segment_id, n_nodes
        (S,) uint64 ids and their numbers of embedded nodes.
    annotation
        (S,) the segment's label, "" where unlabelled.
    prediction
        The head's prediction combined per segment, or None without a head.
    """

    segment_id: np.ndarray
    n_nodes: np.ndarray
    annotation: np.ndarray
    prediction: SegmentPrediction | None


@dataclass(frozen=True)
class Answer:
    """What a target's head says about one segment, for the panel.

    ``predicted`` is "" where there is no prediction (the segment is not
    embedded yet, or there is no head); ``status`` then says why, and else
    where the head comes from.
    """

    segment_id: int
    target: str
    status: str
    radius_um: float
    n_nodes: int
    annotation: str = ""
    predicted: str = ""
    classes: tuple[str, ...] = ()
    probabilities: tuple[float, ...] = ()
    confidence: float = float("nan")
    entropy: float = float("nan")
    dempster_shafer: float = float("nan")
    variance: float = float("nan")
    rejected: bool = False


@dataclass
class _Target:
    """A target's mutable state: classes, radius, head and its latest predictions."""

    classes: list[str]
    radius_um: float
    head: Head | None = None
    head_source: str = ""  # "labels" or the head file's name
    status: str = NO_HEAD
    inputs: EmbeddingTable | None = None  # the head's input rows, cached per radius
    nodes: Prediction | None = None
    segments: SegmentPrediction | None = None


class AnnotationSession:
    """Embeddings, heads, annotations and predictions for one dataset and one model.

    Parameters
    ----------
    dataset
        The EM and its segmentation.
    model
        The SegCLR model (see :func:`napari_segclr.model.shipped.load_shipped_model`).
    folder
        Where the session's files live (created if absent): the embedding
        store, ``annotations.csv`` and ``predictions.csv``. Annotations found
        there are loaded.
    spacing_nm
        Distance between embedded nodes along each skeleton.
    radius_um
        The cell-type target's averaging radius (R).
    head_kind
        The kind of head fitted on the user's labels ("linear", "mlp", "sngp").
    heads
        Head files (or heads) to start from, by target.
    classes
        Class lists by target (default :data:`DEFAULT_CLASSES`).
    annotator
        The name written with each label (default: the login name).
    device, batch_size
        Where and in batches of how many views the model embeds.
    coverage
        Heads fitted on labels reject (as out of distribution) what is less
        certain than this fraction of the labelled nodes.
    skeleton_params
        How clicked segments are skeletonised.

    Raises
    ------
    ShapeMismatchError
        The dataset has no segmentation.
    VoxelSizeError
        The model's views are far finer than the volumes (or would read too much).
    StoreSignatureError, CheckpointError, UnknownFormatError
        A store, head or annotations file in ``folder`` that does not fit.
    """

    def __init__(
        self,
        dataset: Dataset,
        model: SegclrModel,
        folder: str | os.PathLike[str],
        *,
        spacing_nm: float = 1000.0,
        radius_um: float = 10.0,
        head_kind: str = "linear",
        heads: Mapping[str, Head | str | os.PathLike[str]] | None = None,
        classes: Mapping[str, Sequence[str]] | None = None,
        annotator: str | None = None,
        device: str = "auto",
        batch_size: int = 32,
        coverage: float = 0.95,
        skeleton_params: SkeletonParams | None = None,
    ) -> None:
        if dataset.segmentation is None:
            raise ShapeMismatchError(
                f"{dataset.em.source}: annotating needs a segmentation, and there is none"
            )
        if head_kind not in HEAD_KINDS:
            raise ValueError(f"head_kind must be one of {', '.join(HEAD_KINDS)}; got {head_kind!r}")
        # No views at all: only the model's voxel size and extent are checked against the data.
        extract_views(dataset, np.zeros(0, np.uint64), np.zeros((0, 3)), model.config)
        self.dataset = dataset
        self.model = model
        self.folder = Path(folder).expanduser()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.spacing_nm = float(spacing_nm)
        self.head_kind = head_kind
        self.annotator = annotator or _login_name()
        self.device = device
        self.batch_size = batch_size
        self.coverage = coverage
        self.skeleton_params = skeleton_params
        self.changed = Callbacks()
        self.model_signature = model_signature(model)
        self.store = open_embedding_store(
            self.folder / f"embeddings-{self.model_signature[:12]}.zarr",
            model,
            dataset,
            spacing_nm=self.spacing_nm,
        )
        classes = {**DEFAULT_CLASSES, **(classes or {})}
        radii = {COMPARTMENT: 0.0, CELL_TYPE: Aggregation(radius_um).radius_um}
        self._targets = {t: _Target(_class_list(classes[t], t), radii[t]) for t in TARGETS}
        self._table = self.store.read().sorted()
        self._annotations = read_annotations(self.folder / ANNOTATIONS_FILE)
        self._undo: list[list[tuple[str, int, dict[str, str] | None]]] = []
        self._selected: tuple[int, ...] = ()
        for target, head in (heads or {}).items():
            self.load_head(target, head)
        for target in TARGETS:
            self._add_classes(target, self._annotated_classes(target))
            self.refit(target)

    # ------------------------------------------------------------------ state

    @property
    def table(self) -> EmbeddingTable:
        """Every embedded node's raw embedding, sorted by (segment id, node id)."""
        return self._table

    @property
    def selected(self) -> tuple[int, ...]:
        """The selected segment ids (the last clicked, or a plot's selection)."""
        return self._selected

    def __contains__(self, segment_id: object) -> bool:
        """Whether the segment has embedded nodes in this session."""
        return _has(self._table.segment_id, int(segment_id))  # type: ignore[call-overload]

    def classes(self, target: str) -> tuple[str, ...]:
        """The class list of ``target`` (number keys 1–9 pick from it)."""
        return tuple(self._target(target).classes)

    def radius_um(self, target: str) -> float:
        """The averaging radius of ``target``'s head inputs, in µm (0: none)."""
        return self._target(target).radius_um

    def head(self, target: str) -> Head | None:
        """The head predicting ``target``, or None."""
        return self._target(target).head

    def status(self, target: str) -> str:
        """Where ``target``'s head comes from, or why there is none."""
        return self._target(target).status

    @property
    def annotations(self) -> pd.DataFrame:
        """The labels: segment_id, target, class, annotator, time, model (one row per label)."""
        return annotation_frame(self._annotations)

    def annotation(self, segment_id: int, target: str) -> str:
        """The class ``segment_id`` is labelled with for ``target``, or ""."""
        row = self._annotations.get((self._target_name(target), int(segment_id)))
        return "" if row is None else row["class"]

    # ------------------------------------------------------------- embedding

    def embed_segment(
        self, segment_id: int, *, seed_voxel: Sequence[int], progress: Progress | None = None
    ) -> EmbeddingTable:
        """Skeletonise one segment around ``seed_voxel`` and embed its new nodes.

        Returns all its rows in the store; the session is unchanged until
        :meth:`add_embeddings` (this may run in a worker thread).

        Raises
        ------
        SegmentNotFoundError
            ``segment_id`` is 0 (background) or not near ``seed_voxel``.
        SegmentTooSmallError
            The segment is too small to skeletonise.
        """
        return embed_fragment(
            self.dataset,
            self.model,
            self.store,
            int(segment_id),
            seed_voxel=[int(v) for v in seed_voxel],
            spacing_nm=self.spacing_nm,
            batch_size=self.batch_size,
            device=self.device,
            skeleton_params=self.skeleton_params,
            progress=progress,
        )

    def embed_region(
        self,
        box_nm: tuple[Sequence[float], Sequence[float]] | None = None,
        *,
        progress: Progress | None = None,
    ) -> EmbeddingTable:
        """Embed the segments found in a physical box (lo, hi) nm, or in the whole volume.

        Segments in the box are skeletonised from a voxel of theirs in it
        (too small ones are left out); without a box the whole segmentation is
        skeletonised chunk by chunk. Returns the store's rows of the segments
        embedded; the session is unchanged until :meth:`add_embeddings` (this
        may run in a worker thread). ``progress(done, total)`` runs over the
        segments skeletonised, then over the views embedded.
        """
        options: dict[str, Any] = {
            "spacing_nm": self.spacing_nm,
            "batch_size": self.batch_size,
            "device": self.device,
            "skeleton_params": self.skeleton_params,
            "progress": progress,
        }
        if box_nm is None:
            embed_segments(self.dataset, self.model, self.store, **options)
            return self.store.read().sorted()
        seeds = self.segments_in_box(*box_nm)
        skeletons = {}
        for done, (sid, seed) in enumerate(seeds.items(), start=1):
            with contextlib.suppress(SegmentTooSmallError):  # specks are left out
                skeletons[sid] = skeletonize_segment(
                    self.dataset.segmentation, sid, seed_voxel=seed, params=self.skeleton_params
                )
            if progress is not None:
                progress(done, len(seeds))
        if not skeletons:
            return EmbeddingTable.empty(self.store.dim)
        embed_segments(
            self.dataset,
            self.model,
            self.store,
            segment_ids=sorted(skeletons),
            skeletons=skeletons,
            **options,
        )
        return self.store.read(sorted(skeletons)).sorted()

    def segments_in_box(
        self, lo_nm: Sequence[float], hi_nm: Sequence[float]
    ) -> dict[int, tuple[int, int, int]]:
        """The segments with voxels in the physical box [lo, hi) and one such voxel of each."""
        seg = self.dataset.segmentation
        box = seg.box_nm(lo_nm, hi_nm)
        starts = np.array([max(s.start, 0) for s in box])
        stops = np.minimum([s.stop for s in box], seg.shape)
        if np.any(stops <= starts):
            return {}
        crop = seg.read(tuple(slice(int(a), int(b)) for a, b in zip(starts, stops, strict=True)))
        ids, first = np.unique(crop.ravel(), return_index=True)
        voxels = np.column_stack(np.unravel_index(first, crop.shape)) + starts
        return {
            int(sid): tuple(int(v) for v in voxel)
            for sid, voxel in zip(ids, voxels, strict=True)
            if sid != 0
        }

    def add_embeddings(self, table: EmbeddingTable) -> None:
        """Take in rows from :meth:`embed_segment` or :meth:`embed_region` and predict them."""
        if len(table) == 0:
            return
        fresh = np.unique(table.segment_id)
        keep = ~np.isin(self._table.segment_id, fresh)
        tables = [self._table.take(keep), table]
        self._table = EmbeddingTable.concat(tables, dim=self.store.dim).sorted()
        for target in TARGETS:
            self._target(target).inputs = None
        self.changed.emit("embeddings")
        for target in TARGETS:
            self._predict(target)
        self._write_predictions()
        self.changed.emit("predictions")

    def click(
        self, segment_id: int, *, seed_voxel: Sequence[int], progress: Progress | None = None
    ) -> dict[str, Answer]:
        """Select a clicked segment, embed it unless it is already, and answer for each target."""
        sid = int(segment_id)
        self.select_segments([sid])
        if sid not in self:
            self.add_embeddings(self.embed_segment(sid, seed_voxel=seed_voxel, progress=progress))
        return {target: self.answer(sid, target) for target in TARGETS}

    # ------------------------------------------------------------ selection

    def select_segments(self, segment_ids: Iterable[int]) -> None:
        """Select segments (e.g. from a plot); tells ``changed`` ("selection")."""
        ids = tuple(dict.fromkeys(int(s) for s in segment_ids))
        if any(sid <= 0 or sid >= 2**64 for sid in ids):
            raise SegmentNotFoundError(f"segment ids must be in [1, 2**64), got {list(ids)}")
        self._selected = ids
        self.changed.emit("selection")

    def segment_center_nm(self, segment_id: int) -> np.ndarray:
        """The embedded node nearest the middle of a segment's nodes (nm, z y x)."""
        rows = self._rows_of(int(segment_id))
        positions = self._table.position_nm[rows]
        middle = positions.mean(axis=0)
        return positions[np.argmin(np.linalg.norm(positions - middle, axis=1))]

    def next_uncertain(self, target: str) -> int | None:
        """The unlabelled, unselected, predicted segment with the highest uncertainty.

        Uncertainty is the mean predictive entropy of the segment's nodes
        (the most informative label to ask for next); None when no segment
        qualifies.
        """
        state = self._target(target)
        results = self.segments(target)
        if state.segments is None or len(results.segment_id) == 0:
            return None
        candidates = (results.annotation == "") & ~np.isin(
            results.segment_id, np.array(self._selected, np.uint64)
        )
        if not candidates.any():
            return None
        score = np.where(candidates, results.uncertainty, -np.inf)
        return int(results.segment_id[int(np.argmax(score))])

    # ----------------------------------------------------------- annotating

    def set_classes(self, target: str, classes: Sequence[str]) -> None:
        """Replace ``target``'s class list; classes with labels cannot be left out."""
        state = self._target(target)
        new = _class_list(classes, target)
        lost = sorted(self._annotated_classes(target) - set(new))
        if lost:
            raise LabelError(
                f"classes {lost} of {target} have labels; undo them before removing the classes"
            )
        state.classes = new
        self.changed.emit("classes")

    def label(
        self,
        segment_ids: Iterable[int],
        class_name: str,
        *,
        target: str,
        refit: bool = True,
    ) -> None:
        """Label segments with a class of ``target`` and save at once.

        The annotations file is rewritten (atomically, flushed to disk) before
        this returns. With ``refit``, the head is fitted again and every
        prediction updated; else call :meth:`fit_job` (e.g. in a worker).
        """
        target = self._target_name(target)
        name = str(class_name)
        if name not in self._target(target).classes:
            raise LabelError(
                f"class {name!r} is not in the {target} classes "
                f"{self._target(target).classes}; add it to the class list first"
            )
        ids = [int(s) for s in dict.fromkeys(segment_ids)]
        if not ids:
            raise LabelError("no segment to label: select one first")
        if any(sid <= 0 or sid >= 2**64 for sid in ids):
            raise SegmentNotFoundError(f"segment ids must be in [1, 2**64), got {ids}")
        time = datetime.now(UTC).isoformat(timespec="seconds")
        step = []
        for sid in ids:
            step.append((target, sid, self._annotations.get((target, sid))))
            self._annotations[(target, sid)] = {
                "class": name,
                "annotator": self.annotator,
                "time": time,
                "model": self.model_signature,
            }
        self._save_annotations()
        self._undo.append(step)
        self.changed.emit("annotations")
        if refit:
            self.refit(target)

    def undo(self, *, refit: bool = True) -> tuple[str, ...]:
        """Take back the last :meth:`label` call; returns the targets it touched (or none)."""
        if not self._undo:
            return ()
        step = self._undo.pop()
        for target, sid, before in reversed(step):
            if before is None:
                self._annotations.pop((target, sid), None)
            else:
                self._annotations[(target, sid)] = before
        self._save_annotations()
        self.changed.emit("annotations")
        targets = tuple(dict.fromkeys(target for target, _, _ in step))
        if refit:
            for target in targets:
                self.refit(target)
        return targets

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    # ----------------------------------------------------------------- heads

    def load_head(self, target: str, head: Head | str | os.PathLike[str]) -> None:
        """Predict ``target`` with a head file (or head) until labels give a head of their own.

        The head's classes join the class list; its averaging radius, if it
        records one, becomes the target's.

        Raises ``CheckpointError`` (not a head) or ``StoreSignatureError``
        (fitted on another encoder's embeddings).
        """
        target = self._target_name(target)
        if isinstance(head, Head):
            head.check_encoder(self.model_signature)
            source = "given head"
        else:
            source = Path(head).name
            head = load_head(head, encoder_signature=self.model_signature)
        if head.dim != self.store.dim:
            raise ShapeMismatchError(
                f"head {source} takes {head.dim}-d embeddings; this model makes {self.store.dim}-d"
            )
        state = self._target(target)
        self._add_classes(target, head.classes)
        if head.aggregation is not None and head.aggregation.radius_um != state.radius_um:
            state.radius_um = head.aggregation.radius_um
            state.inputs = None
        state.head, state.head_source, state.status = head, source, f"head {source}"
        self._predicted(target)

    def set_radius(self, target: str, radius_um: float, *, refit: bool = True) -> None:
        """Average ``target``'s head inputs over ``radius_um`` along each segment."""
        state = self._target(target)
        state.radius_um = Aggregation(radius_um).radius_um
        state.inputs = None
        if refit:
            self.refit(target)
        else:
            self._predicted(target)

    def fit_job(self, target: str) -> Callable[[], Head] | None:
        """A function fitting ``target``'s head on the labels so far, or None.

        The function works on copies, so it may run in a worker; hand its head
        to :meth:`use_head`. None where the labels cannot make a head (fewer
        than two classes with two labelled nodes each): then a head fitted on
        earlier labels is dropped at once (a loaded head file stays), and
        :meth:`status` says what is missing.
        """
        state = self._target(target)
        inputs = self._inputs(target)
        annotation = self._node_annotations(target, inputs.segment_id)
        counts = pd.Series(annotation[annotation != ""]).value_counts()
        usable = [c for c in state.classes if counts.get(c, 0) >= 2]
        if len(usable) < 2:
            if state.head_source in ("", "labels"):
                state.head, state.head_source, state.status = None, "", _missing(counts)
                self._predicted(target)
            return None
        rows = np.isin(annotation, usable)
        x, y = inputs.embedding[rows].copy(), annotation[rows]
        options = {
            "kind": self.head_kind,
            "classes": usable,
            "encoder_signature": self.model_signature,
            "aggregation": Aggregation(state.radius_um),
        }
        coverage = self.coverage

        def fit() -> Head:
            with _one_thread():
                head = fit_head(x, y, **options)
                return head.calibrate_reject(x, coverage=coverage, score=REJECT_SCORE)

        return fit

    def use_head(self, target: str, head: Head) -> None:
        """Predict ``target`` with a head fitted on the labels (from :meth:`fit_job`)."""
        state = self._target(target)
        labelled = len(self._target_annotations(target))
        state.head, state.head_source = head, "labels"
        state.status = f"{head.kind} head on {labelled} labelled segments"
        self._predicted(target)

    def refit(self, target: str) -> None:
        """Fit ``target``'s head on the labels (here, now) and predict again."""
        job = self.fit_job(target)
        if job is not None:
            self.use_head(target, job())

    # ------------------------------------------------------------- results

    def nodes(self, target: str) -> NodeResults:
        """Every embedded node as ``target``'s head sees it, with its prediction."""
        inputs = self._inputs(target)
        return NodeResults(
            segment_id=inputs.segment_id,
            node_id=inputs.node_id,
            position_nm=inputs.position_nm,
            embedding=inputs.embedding,
            annotation=self._node_annotations(target, inputs.segment_id),
            prediction=self._target(target).nodes,
        )

    def segments(self, target: str) -> SegmentResults:
        """Every embedded segment with its label and combined prediction."""
        ids, counts = np.unique(self._table.segment_id, return_counts=True)
        return SegmentResults(
            segment_id=ids,
            n_nodes=counts,
            annotation=self._node_annotations(target, ids),
            prediction=self._target(target).segments,
        )

    def answer(self, segment_id: int, target: str) -> Answer:
        """What ``target``'s head says about one segment (for the panel)."""
        sid, state = int(segment_id), self._target(target)
        base = {
            "segment_id": sid,
            "target": self._target_name(target),
            "radius_um": state.radius_um,
            "annotation": self.annotation(sid, target),
        }
        if sid not in self:
            return Answer(status="not embedded yet", n_nodes=0, **base)
        pred, results = state.segments, self.segments(target)
        i = int(np.searchsorted(results.segment_id, np.uint64(sid)))
        n_nodes = int(results.n_nodes[i])
        if pred is None:
            return Answer(status=state.status, n_nodes=n_nodes, **base)
        return Answer(
            status=state.status,
            n_nodes=n_nodes,
            predicted=str(pred.labels[i]),
            classes=pred.classes,
            probabilities=tuple(float(p) for p in pred.probabilities[i]),
            confidence=float(pred.confidence[i]),
            entropy=float(pred.entropy[i]),
            dempster_shafer=float(pred.dempster_shafer[i]),
            variance=float(pred.variance[i]),
            rejected=bool(pred.rejected[i]),
            **base,
        )

    def segment_frame(self) -> pd.DataFrame:
        """One row per embedded segment: predictions and labels of both targets.

        Columns: segment_id, n_nodes, then per target ``predicted_<target>``,
        ``<target>_confidence``, ``<target>_entropy``,
        ``<target>_dempster_shafer``, ``<target>_variance``,
        ``<target>_rejected``, ``annotated_<target>``, ``p_<target>_<class>``
        per class of its head; and ``cell_type_radius_um``.
        """
        ids, counts = np.unique(self._table.segment_id, return_counts=True)
        columns: dict[str, Any] = {"segment_id": ids, "n_nodes": counts}
        for target in TARGETS:
            results = self.segments(target)
            pred = results.prediction
            columns[f"predicted_{target}"] = results.predicted
            columns[f"{target}_confidence"] = results.confidence
            for score in ("entropy", "dempster_shafer", "variance"):
                columns[f"{target}_{score}"] = _or_fill(pred, score, len(ids), np.nan)
            columns[f"{target}_rejected"] = results.rejected
            columns[f"annotated_{target}"] = results.annotation
            if pred is not None:
                for k, name in enumerate(pred.classes):
                    columns[f"p_{target}_{name}"] = pred.probabilities[:, k]
        columns[f"{CELL_TYPE}_radius_um"] = np.full(len(ids), self.radius_um(CELL_TYPE))
        return pd.DataFrame(columns)

    # -------------------------------------------------------------- helpers

    def _target(self, target: str) -> _Target:
        return self._targets[self._target_name(target)]

    @staticmethod
    def _target_name(target: str) -> str:
        if target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}; got {target!r}")
        return target

    def _rows_of(self, segment_id: int) -> np.ndarray:
        ids = self._table.segment_id
        sid = np.uint64(segment_id)
        lo, hi = np.searchsorted(ids, sid, "left"), np.searchsorted(ids, sid, "right")
        if lo == hi:
            raise SegmentNotFoundError(f"segment {segment_id} has no embedded nodes yet")
        return np.arange(lo, hi)

    def _inputs(self, target: str) -> EmbeddingTable:
        """The head's input rows: raw embeddings, or averaged over the target's radius."""
        state = self._target(target)
        if state.inputs is None:
            state.inputs = Aggregation(state.radius_um).apply(
                self._table, spacing_nm=self.spacing_nm
            )
        return state.inputs

    def _predicted(self, target: str) -> None:
        """Predict ``target`` again, save the predictions and tell the observers."""
        self._predict(target)
        self._write_predictions()
        self.changed.emit("predictions")

    def _predict(self, target: str) -> None:
        state = self._target(target)
        if state.head is None or len(self._table) == 0:
            state.nodes = state.segments = None
            return
        inputs = self._inputs(target)
        state.nodes = state.head.predict(inputs.embedding)
        state.segments = combine_segments(state.nodes, inputs.segment_id)

    def _target_annotations(self, target: str) -> dict[int, str]:
        return {sid: row["class"] for (t, sid), row in self._annotations.items() if t == target}

    def _annotated_classes(self, target: str) -> set[str]:
        return set(self._target_annotations(target).values())

    def _add_classes(self, target: str, names: Iterable[str]) -> None:
        state = self._target(target)
        state.classes += [n for n in sorted(names) if n not in state.classes]

    def _node_annotations(self, target: str, segment_ids: np.ndarray) -> np.ndarray:
        """Each row's segment label for ``target`` ("" where unlabelled)."""
        labelled = self._target_annotations(target)
        out = np.full(len(segment_ids), "", dtype=object)
        if labelled:
            keys = np.fromiter(labelled, np.uint64, len(labelled))
            names = np.array(list(labelled.values()), dtype=object)
            order = np.argsort(keys)
            keys, names = keys[order], names[order]
            at = np.minimum(np.searchsorted(keys, segment_ids), len(keys) - 1)
            hit = keys[at] == segment_ids
            out[hit] = names[at[hit]]
        return out.astype(str)

    def _save_annotations(self) -> None:
        write_csv_atomic(
            annotation_frame(self._annotations), self.folder / ANNOTATIONS_FILE, durable=True
        )

    def _write_predictions(self) -> None:
        frame = self.segment_frame().assign(model=self.model_signature)
        write_csv_atomic(frame, self.folder / PREDICTIONS_FILE, durable=True)


def annotation_frame(annotations: Mapping[tuple[str, int], Mapping[str, str]]) -> pd.DataFrame:
    """Annotations as a data frame with :data:`ANNOTATION_COLUMNS`, sorted by target and id."""
    rows = [
        {"segment_id": sid, "target": target, **row}
        for (target, sid), row in sorted(annotations.items())
    ]
    frame = pd.DataFrame(rows, columns=list(ANNOTATION_COLUMNS))
    return frame.astype({"segment_id": np.uint64})


def read_annotations(path: str | os.PathLike[str]) -> dict[tuple[str, int], dict[str, str]]:
    """The labels in an annotations file, by (target, segment id); none if it is absent."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        missing = sorted(set(ANNOTATION_COLUMNS) - set(frame.columns))
        ids = [int(v) for v in frame["segment_id"]] if not missing else []
    except (ValueError, KeyError, pd.errors.ParserError) as error:
        raise UnknownFormatError(f"{path} is not an annotations file ({error})") from error
    if missing:
        raise UnknownFormatError(f"{path} is not an annotations file: no columns {missing}")
    unknown = sorted(set(frame["target"]) - set(TARGETS))
    if unknown or any(not 0 < sid < 2**64 for sid in ids):
        raise UnknownFormatError(f"{path}: targets must be {TARGETS} and segment ids in [1, 2**64)")
    fields = ANNOTATION_COLUMNS[2:]
    return {
        (target, sid): {f: str(v) for f, v in zip(fields, values, strict=True)}
        for sid, target, *values in zip(
            ids, frame["target"], *(frame[f] for f in fields), strict=True
        )
    }


def read_predictions(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A predictions file written by a session (segment ids as uint64)."""
    path = Path(path)
    if not path.is_file():
        raise VolumeNotFoundError(f"predictions file {path} does not exist")
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    return frame.astype({"segment_id": np.uint64})


def volume_from_layer_data(
    data: Any,
    *,
    scale: Sequence[float],
    translate: Sequence[float],
    kind: str,
    source: str | None,
    name: str,
) -> Volume:
    """A :class:`Volume` over a napari layer's data (an array or a multiscale list).

    ``source`` (the file the layer was read from) names the volume; a layer
    held in memory is named by its layer name and a digest of its values, so
    an embedding store is reused only for the same data.
    """
    levels = list(data) if isinstance(data, list | tuple) else [data]
    if any(len(level.shape) != 3 for level in levels):
        raise ShapeMismatchError(f"layer {name!r} is not a 3D (z, y, x) volume")
    if source is None:
        source = f"napari layer {name!r} {_digest(levels[0])}"
    base = np.asarray(levels[0].shape, float)
    sizes = [tuple(np.asarray(scale, float) * base / np.asarray(lv.shape)) for lv in levels]
    return Volume(
        levels[0],
        tuple(scale),  # type: ignore[arg-type]
        tuple(translate),  # type: ignore[arg-type]
        kind=kind,  # type: ignore[arg-type]
        source=source,
        levels=tuple(levels),
        level_voxel_sizes=tuple(sizes),  # type: ignore[arg-type]
    )


def session_folder_for(source: str | None, name: str) -> Path:
    """Where a session on a segmentation keeps its files.

    Beside the segmentation (``<file>.segclr``) where that folder is
    writable; else (or for data held in memory) under
    ``~/.napari-segclr/sessions/<name>``.
    """
    if source is not None:
        try:
            parsed = parse_source(source)
        except VolumeNotFoundError:
            parsed = None
        if parsed is not None and not parsed.is_url:
            inner = f"-{parsed.inner.strip('/').replace('/', '_')}" if parsed.inner else ""
            folder = parsed.path.with_name(parsed.path.name + inner + ".segclr")
            if os.access(folder if folder.exists() else folder.parent, os.W_OK):
                return folder
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "session"
    return Path.home() / ".napari-segclr" / "sessions" / safe


def _digest(array: Any) -> str:
    """A short digest of an in-memory array's values (its shape for lazy arrays)."""
    if isinstance(array, np.ndarray):
        return hashlib.blake2b(np.ascontiguousarray(array).data, digest_size=8).hexdigest()
    return "x".join(map(str, array.shape))


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """One torch and one BLAS thread: labelled sets are small, and on busy cores more
    threads only spin (a refit measured 5-20x slower with two threads on two shared cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(threads)


def _class_list(classes: Sequence[str], target: str) -> list[str]:
    names = [str(c).strip() for c in classes]
    if isinstance(classes, str) or not names or any(not n for n in names):
        raise LabelError(f"{target} classes must be a list of non-empty names, got {classes!r}")
    if len(set(names)) != len(names):
        raise LabelError(f"{target} classes must be distinct, got {names}")
    return names


def _missing(counts: pd.Series) -> str:
    """Why labels make no head yet, for the panel."""
    ready = sorted(c for c, n in counts.items() if n >= 2)
    if not len(counts):
        return NO_HEAD
    return f"{NO_HEAD} (ready: {', '.join(ready) or 'none'})"


def _or_fill(pred: Any, name: str, n: int, fill: Any) -> np.ndarray:
    if pred is None:
        return np.full(n, fill, dtype=object if isinstance(fill, str) else type(fill))
    return np.asarray(getattr(pred, name))


def _has(sorted_ids: np.ndarray, segment_id: int) -> bool:
    if not 0 < segment_id < 2**64:
        return False
    at = int(np.searchsorted(sorted_ids, np.uint64(segment_id)))
    return at < len(sorted_ids) and int(sorted_ids[at]) == segment_id


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        return "unknown"


__all__ = [
    "ANNOTATION_COLUMNS",
    "CELL_TYPE",
    "CHANGES",
    "COMPARTMENT",
    "DEFAULT_CLASSES",
    "TARGETS",
    "AnnotationSession",
    "Answer",
    "Callbacks",
    "NodeResults",
    "SegmentResults",
    "annotation_frame",
    "read_annotations",
    "read_predictions",
    "session_folder_for",
    "volume_from_layer_data",
]
