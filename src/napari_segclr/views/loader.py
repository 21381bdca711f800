"""Batches of views for embedding, extracted ahead in background threads.

Extraction is numpy work that releases the GIL for most of its time, and so
does the encoder's forward pass: with the next batches extracted in worker
threads while the encoder runs, the two overlap on a multi-core machine.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np

from ..exceptions import ShapeMismatchError
from .extract import (
    ViewDtype,
    VolumeSource,
    as_centers,
    as_dataset,
    as_segment_ids,
    as_view_dtype,
    extract_views,
)
from .spec import ViewSpec, as_view_spec

if TYPE_CHECKING:
    from ..skeleton import Skeleton

A = TypeVar("A")
T = TypeVar("T")
Progress = Callable[[int, int], None]
Order = Literal["spatial", "given"]


@dataclass(frozen=True, eq=False)
class ViewPoints:
    """Where to cut views: one row per view, a segment id, a node id and a centre in nm.

    Attributes
    ----------
    segment_ids
        (N,) uint64 segment ids.
    node_ids
        (N,) int64 node ids (e.g. the node index in the segment's skeleton),
        carried along so results can be stored per node.
    centers_nm
        (N, 3) float64 view centres in nm (z, y, x).
    """

    segment_ids: np.ndarray
    node_ids: np.ndarray
    centers_nm: np.ndarray

    def __post_init__(self) -> None:
        centers = as_centers(self.centers_nm)
        n = len(centers)
        nodes = np.asarray(self.node_ids)
        if nodes.shape != (n,) or (n and nodes.dtype.kind not in "iu"):
            raise ShapeMismatchError(f"node_ids must be ({n},) integers, got {nodes.shape}")
        object.__setattr__(self, "segment_ids", as_segment_ids(self.segment_ids, n))
        object.__setattr__(self, "node_ids", nodes.astype(np.int64))
        object.__setattr__(self, "centers_nm", centers)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[int, int, Sequence[float]]]) -> ViewPoints:
        """Points from (segment_id, node_id, (z, y, x) nm) rows."""
        rows = list(rows)
        try:
            ids = np.array([int(r[0]) for r in rows], dtype=np.uint64)
        except OverflowError:
            raise ValueError("segment ids must be in [0, 2**64)") from None
        nodes = np.array([int(r[1]) for r in rows], dtype=np.int64)
        centers = np.array([r[2] for r in rows], dtype=np.float64).reshape(len(rows), -1)
        return cls(ids, nodes, centers)

    @classmethod
    def from_skeletons(cls, skeletons: Iterable[Skeleton] | Mapping[int, Skeleton]) -> ViewPoints:
        """One point per skeleton node; node ids are the node indices."""
        skels = list(skeletons.values() if isinstance(skeletons, Mapping) else skeletons)
        sizes = np.array([len(s) for s in skels], dtype=np.int64)
        ids = np.repeat(np.array([s.segment_id for s in skels], dtype=np.uint64), sizes)
        nodes = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        centers = np.concatenate([s.nodes for s in skels]) if skels else np.zeros((0, 3))
        return cls(ids, nodes, centers)

    def __len__(self) -> int:
        return len(self.centers_nm)

    def __getitem__(self, index: slice | np.ndarray) -> ViewPoints:
        """The rows at ``index`` (a slice, integer indices or a boolean mask)."""
        return ViewPoints(self.segment_ids[index], self.node_ids[index], self.centers_nm[index])


class ViewLoader:
    """Batches ``(views, points)`` covering every point once, for embedding.

    Parameters
    ----------
    source
        The volumes (see :func:`extract_views`).
    points
        A :class:`ViewPoints` or (segment_id, node_id, centre_nm) rows.
    spec
        A :class:`ViewSpec` or a ``ModelConfig``.
    batch_size
        Views per batch (the last batch may be smaller).
    order
        "spatial" (default): batches of nearby points, which share crops and
        read far less; "given": the points' own order. Each batch comes with
        its points, so results can be stored whatever the order.
    workers
        Threads extracting batches ahead while the caller uses the current
        one (numpy releases the GIL for most of the work); 0: extract on the
        calling thread when each batch is asked for.
    prefetch
        Most batches extracted ahead; None: twice the workers.
    progress
        ``progress(done, total)`` in views, called before each batch is handed
        over (and once with 0 at the start); it may raise to stop the loop.
    to_torch
        Hand over views as CPU ``torch.Tensor`` (shared memory, no copy).
    pin_memory
        With ``to_torch``: copy each batch into page-locked memory in the worker
        thread, so that ``tensor.to("cuda", non_blocking=True)`` overlaps the copy.
    snap, dtype
        See :func:`extract_views` ("uint8" carries a quarter of the bytes to a GPU).

    Examples
    --------
    >>> points = ViewPoints.from_skeletons(skeletons)  # doctest: +SKIP
    >>> loader = ViewLoader(dataset, points, get_preset("lite"))  # doctest: +SKIP
    >>> for views, points in loader:  # doctest: +SKIP
    ...     embeddings = model.embed(torch.from_numpy(views))
    """

    def __init__(
        self,
        source: VolumeSource,
        points: ViewPoints | Iterable[tuple[int, int, Sequence[float]]],
        spec: ViewSpec,
        *,
        batch_size: int = 32,
        order: Order = "spatial",
        workers: int = 1,
        prefetch: int | None = None,
        progress: Progress | None = None,
        to_torch: bool = False,
        pin_memory: bool = False,
        snap: bool = True,
        dtype: ViewDtype = "float32",
    ) -> None:
        self.dataset = as_dataset(source)
        self.points = points if isinstance(points, ViewPoints) else ViewPoints.from_rows(points)
        self.spec = as_view_spec(spec)
        self.batch_size = count_arg(batch_size, "batch_size", minimum=1)
        self.workers = count_arg(workers, "workers", minimum=0)
        self.prefetch = prefetch_arg(prefetch, self.workers)
        if order not in ("spatial", "given"):
            raise ValueError(f"order must be 'spatial' or 'given', got {order!r}")
        self.order = order
        self.progress = progress
        self.to_torch = bool(to_torch)
        if pin_memory and not self.to_torch:
            raise ValueError("pin_memory needs to_torch=True")
        self.pin_memory = bool(pin_memory)
        self.snap = bool(snap)
        self.dtype = as_view_dtype(dtype)

    def __len__(self) -> int:
        return math.ceil(len(self.points) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Any, ViewPoints]]:
        total = len(self.points)
        if self.order == "spatial":
            order = spatial_order(self.points.centers_nm, self.spec)
        else:
            order = np.arange(total)
        batches = (
            self.points[order[start : start + self.batch_size]]
            for start in range(0, total, self.batch_size)
        )
        if self.progress is not None:
            self.progress(0, total)
        done = 0
        for views, points in prefetch_map(
            self._extract, batches, workers=self.workers, ahead=self.prefetch
        ):
            done += len(points)
            if self.progress is not None:
                self.progress(done, total)
            yield views, points

    def _extract(self, points: ViewPoints) -> tuple[Any, ViewPoints]:
        views = extract_views(
            self.dataset,
            points.segment_ids,
            points.centers_nm,
            self.spec,
            snap=self.snap,
            dtype=self.dtype,
        )
        if not self.to_torch:
            return views, points
        tensor = as_tensor(views)
        return (tensor.pin_memory() if self.pin_memory else tensor), points


def spatial_order(centers_nm: np.ndarray, spec: ViewSpec) -> np.ndarray:
    """An order of the centres that visits one field-of-view-sized grid cell after another."""
    keys = np.floor(as_centers(centers_nm) / np.asarray(spec.field_of_view_nm)).astype(np.int64)
    return np.lexsort((keys[:, 2], keys[:, 1], keys[:, 0]))


def prefetch_map(
    func: Callable[[A], T], tasks: Iterable[A], *, workers: int, ahead: int
) -> Iterator[T]:
    """``map(func, tasks)`` in order, computed by ``workers`` threads up to ``ahead`` ahead.

    Tasks are drawn on the calling thread, so a task stream that uses a random
    generator stays reproducible. Errors are raised here, in order; closing
    this iterator (a ``break`` in the caller's loop) cancels what has not
    started and waits for what has. With no workers, each result is computed
    on the calling thread when it is asked for.
    """
    if workers == 0:
        yield from map(func, tasks)
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="napari-segclr-views")
    pending: deque[Future[T]] = deque()
    try:
        for task in tasks:
            pending.append(pool.submit(func, task))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def as_tensor(views: np.ndarray) -> Any:
    """Views as a CPU torch tensor sharing their memory."""
    import torch

    return torch.from_numpy(views)


def count_arg(value: int, name: str, *, minimum: int) -> int:
    """Validate an integer option such as a batch size."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def prefetch_arg(prefetch: int | None, workers: int) -> int:
    """Batches to extract ahead: as given, else twice the workers."""
    return max(1, 2 * workers) if prefetch is None else count_arg(prefetch, "prefetch", minimum=1)
