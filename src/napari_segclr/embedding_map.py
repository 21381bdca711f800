"""A 2D map of embeddings (UMAP) for plots that select segments and highlight them.

Headless: the napari UMAP view draws what this module computes, and a script
can use it the same way::

    from napari_segclr.embedding_map import fit_map, point_colors

    nodes = session.nodes("compartment")
    umap_map = fit_map(nodes.segment_id, nodes.node_id, nodes.embedding)
    rows = umap_map.points.in_polygon([(0, 0), (5, 0), (5, 5)])
    session.select_segments(umap_map.points.segments_of(rows))
    colors = point_colors(nodes, "prediction", session.classes("compartment"))

- :func:`fit_map` fits umap-learn once (seeded, few epochs: a map to look at,
  not a benchmark of UMAP quality); :meth:`EmbeddingMap.place` puts points
  embedded later where the fitted model's ``transform`` says, leaving every
  other point where it was.
- :class:`MapPoints` holds each point's key (segment id, node id; node id -1
  for a point per segment) and its 2D position, indexed so that a lasso,
  rectangle or click over a million points is answered in tens of
  milliseconds: the points are binned once on a grid, a polygon is
  rasterised on it, and only the points in cells its outline crosses are
  tested exactly (:meth:`MapPoints.in_polygon`).
- :func:`point_colors` colours points by annotation, prediction or
  uncertainty with the class colours napari's layers use.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.path import Path as PolygonPath

from .exceptions import EmbeddingError
from .overlays import REJECTED_COLOR, RGBA, class_colors, fade

Progress = Callable[[int, int], None]

#: What points can be coloured by.
COLOR_MODES = ("annotation", "prediction", "uncertainty")
#: Node id of a point that stands for a whole segment.
SEGMENT_POINT = -1
#: The fewest points a map is fitted to.
MIN_POINTS = 5
#: Points without a label (or prediction, or uncertainty): faint grey, so the others stand out.
NO_CLASS_COLOR: RGBA = (0.55, 0.55, 0.55, 0.35)
#: The colour ramp of uncertainty, from certain to as uncertain as chance.
UNCERTAINTY_COLORMAP = "viridis"
#: Selection grid: about this many points per cell, at most this many cells a side.
GRID_POINTS, GRID_CELLS = 4, 1024


@dataclass(frozen=True)
class UmapSettings:
    """How the map is fitted (umap-learn parameters).

    Parameters
    ----------
    n_neighbors
        Neighbours per point in the graph UMAP lays out (fewer for smaller sets).
    min_dist
        How tightly points may pack in the map.
    n_epochs
        Layout epochs; few, for a quick map (umap-learn's default is 200–500).
        Placing new points runs a third as many.
    seed
        Makes the map (and the placement of new points) reproducible.
    """

    n_neighbors: int = 15
    min_dist: float = 0.1
    n_epochs: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        for name, minimum in (("n_neighbors", 2), ("n_epochs", 1), ("seed", 0)):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | np.integer)
                or value < minimum
            ):
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
            object.__setattr__(self, name, int(value))
        if not 0.0 <= float(self.min_dist) <= 1.0:
            raise ValueError(f"min_dist must be in [0, 1], got {self.min_dist!r}")
        object.__setattr__(self, "min_dist", float(self.min_dist))


@dataclass(frozen=True, eq=False)
class MapPoints:
    """Points of a map: keys and 2D positions, indexed for selection.

    Attributes
    ----------
    segment_id, node_id
        (N,) uint64 and int64: each point's segment and node
        (:data:`SEGMENT_POINT` for a point that stands for its segment).
    xy
        (N, 2) float32 map coordinates.
    """

    segment_id: np.ndarray
    node_id: np.ndarray
    xy: np.ndarray

    def __post_init__(self) -> None:
        segment_id = np.ascontiguousarray(self.segment_id, dtype=np.uint64)
        node_id = np.ascontiguousarray(self.node_id, dtype=np.int64)
        xy = np.ascontiguousarray(self.xy, dtype=np.float32)
        if node_id.shape != segment_id.shape or xy.shape != (len(segment_id), 2):
            raise ValueError(
                f"map points disagree: {segment_id.shape} segment ids, {node_id.shape} node ids, "
                f"positions of shape {xy.shape}"
            )
        object.__setattr__(self, "segment_id", segment_id)
        object.__setattr__(self, "node_id", node_id)
        object.__setattr__(self, "xy", xy)

    def __len__(self) -> int:
        return len(self.segment_id)

    @cached_property
    def _grid(self) -> _Grid:
        return _Grid.over(self.xy)

    @cached_property
    def _by_segment(self) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(self.segment_id, kind="stable")
        return order, self.segment_id[order]

    def build_indexes(self) -> None:
        """Build the selection indexes now (e.g. in a worker) rather than on first use."""
        _ = self._grid, self._by_segment

    def _ascending(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` sorted; by marking them where they are many (a sort costs more)."""
        if len(rows) < len(self) // 32:
            return np.sort(rows)
        marked = np.zeros(len(self), bool)
        marked[rows] = True
        return np.flatnonzero(marked)

    def in_rectangle(self, corner: Sequence[float], opposite: Sequence[float]) -> np.ndarray:
        """Rows (ascending) of the points in the rectangle with these two corners."""
        (x0, y0), (x1, y1) = corner, opposite
        return self.in_polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])

    def in_polygon(self, polygon: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
        """Rows (ascending) of the points inside a polygon (a lasso; closed implicitly).

        The points are binned once on a grid (:meth:`build_indexes`). A
        polygon is rasterised on it: every point of a cell inside it is taken
        as a block, and only the points in cells its outline crosses are
        tested exactly, so a large lasso over a million points costs about
        as much as listing the points it selects.
        """
        vertices = np.asarray(polygon, float)
        if vertices.ndim != 2 or vertices.shape[1] != 2:
            raise ValueError(f"polygon must be (V, 2) coordinates, got shape {vertices.shape}")
        if len(vertices) < 3 or len(self) == 0:
            return np.zeros(0, np.int64)
        grid = self._grid
        inside, edge = grid.cover(vertices)
        blocks = grid.rows_in(inside)
        border = grid.rows_in(edge)
        hit = PolygonPath(vertices).contains_points(self.xy[border])
        return self._ascending(np.concatenate([blocks, border[hit]]))

    def nearest(self, point: Sequence[float], radius: float) -> int | None:
        """The row of the point nearest ``point`` within ``radius``, or None."""
        if len(self) == 0:
            return None
        p = np.asarray(point, float)
        rows = self._grid.rows_in(self._grid.cells_in_box(p - radius, p + radius))
        if len(rows) == 0:
            return None
        distance = np.linalg.norm(self.xy[rows] - p, axis=1)
        best = int(np.argmin(distance))
        return int(rows[best]) if distance[best] <= radius else None

    def rows_of(self, segment_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Rows (ascending) of every point of these segments."""
        ids = np.unique(np.asarray(segment_ids, dtype=np.uint64))
        order, sorted_ids = self._by_segment
        starts = np.searchsorted(sorted_ids, ids, "left")
        stops = np.searchsorted(sorted_ids, ids, "right")
        return self._ascending(order[_ranges(starts, stops)])

    def segments_of(self, rows: np.ndarray) -> np.ndarray:
        """The distinct segment ids (ascending) of the points at ``rows``."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) < len(self) // 32:
            return np.unique(self.segment_id[rows])
        # Many rows: mark them and walk the ids in sorted order (no sort, no hash of them).
        order, sorted_ids = self._by_segment
        marked = np.zeros(len(self), bool)
        marked[rows] = True
        ids = sorted_ids[marked[order]]
        return ids[np.r_[True, ids[1:] != ids[:-1]]] if len(ids) else ids

    def indexer(self, segment_id: np.ndarray, node_id: np.ndarray) -> np.ndarray:
        """For each point, its row in the keys (segment_id, node_id); -1 where absent."""
        segment_id = np.asarray(segment_id, np.uint64)
        node_id = np.asarray(node_id, np.int64)
        if np.array_equal(segment_id, self.segment_id) and np.array_equal(node_id, self.node_id):
            return np.arange(len(self))
        return _key_index(segment_id, node_id).get_indexer(
            _key_index(self.segment_id, self.node_id)
        )


@dataclass(frozen=True, eq=False)
class _Grid:
    """Points binned on a square grid over their bounding box (cells in CSR form).

    ``order`` lists the rows cell by cell (cell = ix * n + iy); the rows of
    cell ``c`` are ``order[offsets[c]:offsets[c + 1]]``.
    """

    lo: np.ndarray
    size: np.ndarray
    n: int
    order: np.ndarray
    offsets: np.ndarray

    @classmethod
    def over(cls, xy: np.ndarray) -> _Grid:
        # About GRID_POINTS points per cell, at most GRID_CELLS cells a side.
        n = int(np.clip(np.sqrt(len(xy) / GRID_POINTS), 1, GRID_CELLS))
        lo = xy.min(axis=0).astype(float) if len(xy) else np.zeros(2)
        hi = xy.max(axis=0).astype(float) if len(xy) else np.ones(2)
        size = np.maximum(hi - lo, 1e-6) * (1 + 1e-6) / n
        cells = cls._flat(cls._cell(xy, lo, size, n), n)
        order = np.argsort(cells, kind="stable")
        offsets = np.searchsorted(cells[order], np.arange(n * n + 1))
        return cls(lo, size, n, order, offsets)

    @staticmethod
    def _cell(xy: np.ndarray, lo: np.ndarray, size: np.ndarray, n: int) -> np.ndarray:
        return np.clip(np.floor((xy - lo) / size).astype(np.int64), 0, n - 1)

    @staticmethod
    def _flat(cells: np.ndarray, n: int) -> np.ndarray:
        return cells[:, 0] * n + cells[:, 1]

    def rows_in(self, cells: np.ndarray) -> np.ndarray:
        """Rows (in no order) of the points in the given flat cells."""
        return self.order[_ranges(self.offsets[cells], self.offsets[cells + 1])]

    def cells_in_box(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Flat cells that overlap the box [lo, hi]."""
        (x0, y0), (x1, y1) = self._cell(np.array([lo, hi]), self.lo, self.size, self.n)
        ix, iy = np.meshgrid(np.arange(x0, x1 + 1), np.arange(y0, y1 + 1), indexing="ij")
        return (ix * self.n + iy).ravel()

    def cover(self, vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flat cells wholly inside a polygon, and cells its outline may cross."""
        u = (vertices - self.lo) / self.size  # cell ix spans [ix, ix + 1)
        edge = _cells_on_outline(u, self.n)
        # A cell the outline does not cross is all inside or all outside: its centre decides.
        inside = _centres_inside(u, self.n) & ~edge
        return np.flatnonzero(inside), np.flatnonzero(edge)


class EmbeddingMap:
    """A UMAP fitted to embeddings, and the points it has placed.

    Made by :func:`fit_map`; :meth:`place` returns a new map with the same
    fitted model. A map is read by one thread at a time.

    Attributes
    ----------
    points
        The points and their map coordinates.
    settings
        How the model was fitted.
    n_fitted
        Points the model was fitted to.
    n_placed
        Points placed later with the model's ``transform`` (over all ``place`` calls).
    """

    def __init__(
        self,
        reducer: Any,
        points: MapPoints,
        settings: UmapSettings,
        *,
        dim: int,
        n_placed: int = 0,
    ) -> None:
        self._reducer = reducer
        self.points = points
        self.settings = settings
        self.dim = dim
        self.n_fitted = int(reducer.embedding_.shape[0])
        self.n_placed = n_placed

    def transform(self, embedding: np.ndarray, *, progress: Progress | None = None) -> np.ndarray:
        """(M, 2) map coordinates of new embeddings, from the fitted model (nothing refitted)."""
        x = _embedding_array(embedding)
        if len(x) == 0:
            return np.zeros((0, 2), np.float32)
        if x.shape[1] != self.dim:
            raise ValueError(f"embeddings are {x.shape[1]}-d; the map was fitted to {self.dim}-d")
        with _epoch_reports(self._reducer, progress):
            return np.asarray(self._reducer.transform(x), np.float32)

    def place(
        self,
        segment_id: np.ndarray,
        node_id: np.ndarray,
        embedding: np.ndarray,
        *,
        progress: Progress | None = None,
    ) -> EmbeddingMap:
        """The map of these rows: known keys keep their place, new keys are transformed.

        Keys no longer in the rows leave the map. Returns a new map; this one
        is unchanged.
        """
        segment_id = np.asarray(segment_id, np.uint64)
        node_id = np.asarray(node_id, np.int64)
        known = _key_index(self.points.segment_id, self.points.node_id).get_indexer(
            _key_index(segment_id, node_id)
        )
        fresh = np.flatnonzero(known < 0)
        xy = np.empty((len(segment_id), 2), np.float32)
        xy[known >= 0] = self.points.xy[known[known >= 0]]
        xy[fresh] = self.transform(np.asarray(embedding)[fresh], progress=progress)
        points = MapPoints(segment_id, node_id, xy)
        points.build_indexes()
        return EmbeddingMap(
            self._reducer,
            points,
            self.settings,
            dim=self.dim,
            n_placed=self.n_placed + len(fresh),
        )


def fit_map(
    segment_id: np.ndarray,
    node_id: np.ndarray,
    embedding: np.ndarray,
    *,
    settings: UmapSettings | None = None,
    progress: Progress | None = None,
) -> EmbeddingMap:
    """Fit a 2D UMAP to (N, D) embeddings keyed by (segment id, node id).

    ``progress(epoch, n_epochs)`` follows the layout. umap-learn cannot be
    interrupted: an exception ``progress`` raises (a cancel) stops further
    reports and is raised when the fit returns.

    Raises
    ------
    ValueError
        Fewer than :data:`MIN_POINTS` rows, or keys and embeddings of different lengths.
    EmbeddingError
        Embeddings that are not finite numbers.
    """
    settings = settings or UmapSettings()
    x = _embedding_array(embedding)
    segment_id, node_id = np.asarray(segment_id, np.uint64), np.asarray(node_id, np.int64)
    if not len(segment_id) == len(node_id) == len(x):
        raise ValueError(
            f"{len(segment_id)} segment ids, {len(node_id)} node ids and {len(x)} embeddings"
        )
    if len(x) < MIN_POINTS:
        raise ValueError(f"a map needs at least {MIN_POINTS} embedded points, got {len(x)}")
    with warnings.catch_warnings():
        # umap-learn warns at import that its optional TensorFlow part is unavailable.
        warnings.simplefilter("ignore", ImportWarning)
        import umap
    reducer = umap.UMAP(
        n_neighbors=min(settings.n_neighbors, len(x) - 1),
        min_dist=settings.min_dist,
        n_epochs=settings.n_epochs,
        random_state=settings.seed,
        transform_seed=settings.seed,
        n_jobs=1,  # a seeded UMAP runs on one thread anyway; saying so avoids its warning
    )
    with _epoch_reports(reducer, progress):
        xy = reducer.fit_transform(x)
    points = MapPoints(segment_id, node_id, xy)
    points.build_indexes()
    return EmbeddingMap(reducer, points, settings, dim=x.shape[1])


def segment_means(segment_id: np.ndarray, embedding: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One mean embedding per segment: (S,) ascending ids and (S, D) float32 means."""
    segment_id = np.asarray(segment_id, np.uint64)
    embedding = np.asarray(embedding, np.float32)
    if len(segment_id) and np.any(segment_id[1:] < segment_id[:-1]):
        order = np.argsort(segment_id, kind="stable")
        segment_id, embedding = segment_id[order], embedding[order]
    if len(segment_id) == 0:
        return segment_id, np.zeros((0, embedding.shape[1] if embedding.ndim == 2 else 0))
    starts = np.flatnonzero(np.r_[True, segment_id[1:] != segment_id[:-1]])
    counts = np.diff(np.r_[starts, len(segment_id)])
    sums = np.add.reduceat(embedding.astype(np.float64), starts, axis=0)
    return segment_id[starts], (sums / counts[:, None]).astype(np.float32)


# ----------------------------------------------------------------------------- colours


def point_colors(results: Any, mode: str, classes: Sequence[str]) -> np.ndarray:
    """(N, 4) float32 RGBA per point of a session's node or segment results.

    ``results`` is :class:`~napari_segclr.session.NodeResults` or
    :class:`~napari_segclr.session.SegmentResults` (anything with
    ``annotation``, ``predicted``, ``confidence``, ``uncertainty`` and
    ``rejected``); ``classes`` the target's class list.

    - "annotation": the label's class colour; unlabelled points faint grey;
    - "prediction": the predicted class colour, fading as confidence falls to
      chance; rejected (out of distribution) dark grey; no head: faint grey;
    - "uncertainty": predictive entropy on a ramp from 0 to log(K) (chance).
    """
    colors = class_colors(classes)
    if mode == "annotation":
        return class_point_colors(results.annotation, colors)
    if mode == "prediction":
        return prediction_colors(results.predicted, results.confidence, results.rejected, colors)
    if mode == "uncertainty":
        return uncertainty_colors(results.uncertainty, n_classes=len(classes))
    raise ValueError(f"mode must be one of {COLOR_MODES}, got {mode!r}")


def class_point_colors(names: np.ndarray, colors: dict[str, RGBA]) -> np.ndarray:
    """(N, 4) colours of class names; names without a colour ("" too) get :data:`NO_CLASS_COLOR`."""
    codes, uniques = _factorize(names)
    table = np.array([colors.get(u, NO_CLASS_COLOR) for u in uniques], np.float32)
    return table.reshape(-1, 4)[codes]


def prediction_colors(
    predicted: np.ndarray,
    confidence: np.ndarray,
    rejected: np.ndarray,
    colors: dict[str, RGBA],
) -> np.ndarray:
    """(N, 4) colours of predictions: class colour, more opaque the surer; rejected dark grey."""
    out = class_point_colors(predicted, colors)
    codes, uniques = _factorize(predicted)
    known = np.array([u in colors for u in uniques], bool)[codes]
    out[known, 3] = 0.3 + 0.7 * fade(np.asarray(confidence)[known], len(colors))
    out[np.asarray(rejected, bool)] = REJECTED_COLOR
    return out


def uncertainty_colors(entropy: np.ndarray, *, n_classes: int) -> np.ndarray:
    """(N, 4) colours of entropy (nats) on :data:`UNCERTAINTY_COLORMAP` over [0, log K].

    NaN (no prediction) is :data:`NO_CLASS_COLOR`.
    """
    ramp = colormaps[UNCERTAINTY_COLORMAP](np.linspace(0, 1, 256)).astype(np.float32)
    value = np.asarray(entropy, float) / max(np.log(max(n_classes, 2)), 1e-9)
    missing = ~np.isfinite(value)
    index = np.rint(np.clip(np.nan_to_num(value), 0, 1) * 255).astype(np.int64)
    out = ramp[index]
    out[missing] = NO_CLASS_COLOR
    return out


def uncertainty_ramp(steps: int = 5) -> list[RGBA]:
    """Colours of the uncertainty ramp at ``steps`` even stops (for a legend)."""
    cmap = colormaps[UNCERTAINTY_COLORMAP]
    return [tuple(float(c) for c in cmap(v)) for v in np.linspace(0, 1, steps)]  # type: ignore[misc]


# ----------------------------------------------------------------------------- helpers


def _embedding_array(embedding: np.ndarray) -> np.ndarray:
    x = np.asarray(embedding)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise EmbeddingError(f"embeddings must be numbers, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, np.float32)
    if not np.isfinite(x).all():
        raise EmbeddingError("embeddings hold NaN or infinite values")
    return x


def _factorize(names: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Codes into the distinct names (hashing: no sort of a million strings)."""
    codes, uniques = pd.factorize(np.asarray(names, dtype=object), use_na_sentinel=False)
    return codes, [str(u) for u in uniques]


def _key_index(segment_id: np.ndarray, node_id: np.ndarray) -> pd.MultiIndex:
    return pd.MultiIndex.from_arrays([segment_id, node_id])


def _ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """The concatenation of ``arange(a, b)`` for each (a, b), vectorised."""
    lengths = stops - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offsets = np.repeat(starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
    return offsets + np.arange(total)


def _cells_on_outline(u: np.ndarray, n: int) -> np.ndarray:
    """(n, n) bool: the cells a closed polygon's outline (in cell units) may pass through.

    Each edge is sampled at least twice per cell it spans and the 3 × 3 cells
    around each sample are marked, so every crossed cell is (over-)covered.
    """
    a, b = u, np.roll(u, -1, axis=0)
    span = np.ceil(np.abs(b - a).max(axis=1))
    steps = np.clip(2 * span, 1, 4 * n).astype(np.int64)  # beyond 4n samples fall off the grid
    t = np.concatenate([np.arange(k + 1) / k for k in steps])
    edge = np.repeat(np.arange(len(a)), steps + 1)
    samples = a[edge] + t[:, None] * (b - a)[edge]
    cells = np.clip(np.floor(samples).astype(np.int64), -1, n) + 1
    cells = np.unique(cells[:, 0] * (n + 2) + cells[:, 1])
    marked = np.zeros((n + 2, n + 2), bool)
    cx, cy = np.divmod(cells, n + 2)
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            marked[np.clip(cx + dx, 0, n + 1), np.clip(cy + dy, 0, n + 1)] = True
    return marked[1:-1, 1:-1]


def _centres_inside(u: np.ndarray, n: int) -> np.ndarray:
    """(n, n) bool: the cells whose centre lies inside a polygon (in cell units), even-odd rule.

    A scan line through each column of centres (x = ix + 0.5) crosses the
    polygon's edges; the centres past an odd number of crossings are inside.
    """
    a, b = u, np.roll(u, -1, axis=0)
    xc = np.arange(n) + 0.5
    lo, hi = np.minimum(a[:, 0], b[:, 0]), np.maximum(a[:, 0], b[:, 0])
    column, edge = np.nonzero((lo <= xc[:, None]) & (xc[:, None] < hi))  # half-open: no doubles
    a, b = a[edge], b[edge]
    y = a[:, 1] + (xc[column] - a[:, 0]) * (b[:, 1] - a[:, 1]) / (b[:, 0] - a[:, 0])
    first_after = np.clip(np.ceil(y - 0.5), 0, n).astype(np.int64)  # first centre beyond it
    toggles = np.zeros((n, n + 1), np.int64)
    np.add.at(toggles, (column, first_after), 1)
    return (np.cumsum(toggles, axis=1)[:, :n] % 2).astype(bool)


class _EpochSink:
    """A text stream for umap-learn's tqdm bar: turns its "n/total" into progress calls.

    umap-learn reports layout epochs only through tqdm, and tqdm holds a lock
    (shared by every bar, napari's too) while it writes: an exception raised
    here would leave it locked. So the first exception ``progress`` raises is
    kept, no further reports are made, and :func:`_epoch_reports` raises it
    once umap-learn returns.
    """

    _COUNT = re.compile(r"(\d+)/(\d+)")

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self.error: BaseException | None = None

    def write(self, text: str) -> None:
        found = self._COUNT.findall(text)
        if self.error is not None or not found:
            return
        done, total = found[-1]
        try:
            self._progress(int(done), int(total))
        except BaseException as error:  # raised later, outside tqdm's lock
            self.error = error

    def flush(self) -> None:
        pass


@contextlib.contextmanager
def _epoch_reports(reducer: Any, progress: Progress | None) -> Iterator[None]:
    """Route a reducer's epoch bar to ``progress`` while a fit or transform runs.

    An exception ``progress`` raised is raised when the fit or transform returns.
    """
    sink = None if progress is None else _EpochSink(progress)
    if sink is not None:
        reducer.tqdm_kwds = {
            "disable": False,
            "file": sink,
            "bar_format": "{n}/{total}",
            "mininterval": 0.1,
            "ascii": True,
        }
    try:
        with warnings.catch_warnings():
            # umap-learn's notes on small or clumped sets (disconnected points, a random
            # start instead of a spectral one) say nothing a user of the map can act on.
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        reducer.tqdm_kwds = {"disable": True}  # a sink must not outlive its task
    if sink is not None and sink.error is not None:
        raise sink.error


__all__ = [
    "COLOR_MODES",
    "MIN_POINTS",
    "NO_CLASS_COLOR",
    "SEGMENT_POINT",
    "EmbeddingMap",
    "MapPoints",
    "UmapSettings",
    "class_point_colors",
    "fit_map",
    "point_colors",
    "prediction_colors",
    "segment_means",
    "uncertainty_colors",
    "uncertainty_ramp",
]
