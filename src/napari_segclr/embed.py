"""Embed segments: skeleton nodes → views → SegCLR embeddings in an embedding store.

Embed every segment of a volume, or a clicked fragment::

    from napari_segclr.embed import embed_fragment, embed_segments
    from napari_segclr.io import open_dataset
    from napari_segclr.model.shipped import load_shipped_model

    dataset = open_dataset("em.zarr", "seg.zarr")
    model, _ = load_shipped_model()
    result = embed_segments(dataset, model, "embeddings.zarr")
    rows = embed_fragment(dataset, model, "embeddings.zarr", 1234, seed_voxel=(40, 512, 300))

Each segment is skeletonised, its skeleton resampled to a node every
``spacing_nm``, and every node gets the embedding of the view centred on it.
Node ids are the indices of the resampled skeleton's nodes. Rows are appended
to the store batch by batch, and nodes the store already holds are skipped: a
stopped run loses at most the batch in flight, and running it again completes
the store without duplicates.

A store holds the embeddings of one model on one data set at one node spacing
(its signature: :func:`embedding_signature`); opening it with another model,
other volumes or another spacing is refused and leaves it untouched.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .exceptions import SegmentNotFoundError, ShapeMismatchError
from .io import Dataset, Volume
from .model import SegclrModel, model_signature
from .skeleton import (
    Skeleton,
    SkeletonParams,
    resample,
    skeletonize_segment,
    skeletonize_volume,
)
from .store import EmbeddingStore, EmbeddingTable
from .views import ViewLoader, ViewPoints, ViewSpec

Progress = Callable[[int, int], None]
StoreLike = EmbeddingStore | str | os.PathLike[str]
#: More committed parts than this after a run: the store is compacted into few.
MAX_PARTS = 64


@dataclass(frozen=True)
class EmbedResult:
    """What :func:`embed_segments` did.

    Attributes
    ----------
    store
        Path of the embedding store.
    segments
        Segments with a skeleton.
    nodes
        Their resampled skeleton nodes, in all.
    embedded
        Nodes embedded and appended in this run.
    already_stored
        Nodes the store held before (skipped).
    outside
        Nodes outside the EM volume (no view; skipped).
    embed_s
        Seconds spent cutting views and embedding them.
    """

    store: Path
    segments: int
    nodes: int
    embedded: int
    already_stored: int
    outside: int
    embed_s: float

    @property
    def views_per_s(self) -> float:
        """Views embedded per second, view extraction included."""
        return self.embedded / self.embed_s if self.embed_s > 0 else 0.0


def resolve_device(device: str | torch.device, *, check: bool = True) -> torch.device:
    """The torch device for "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".

    With ``check``, asking for CUDA where there is none is an error.
    """
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if check and torch.cuda.is_available() else "cpu")
    if name != "cpu" and not (name == "cuda" or name.startswith("cuda:")):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    try:
        resolved = torch.device(name)
    except RuntimeError:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        ) from None
    if check and resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for, but CUDA is not available here")
    return resolved


def volume_identity(volume: Volume) -> dict[str, Any]:
    """Where a volume comes from and how it sits in space (JSON-able)."""
    return {
        "source": volume.source,
        "shape": list(volume.shape),
        "dtype": str(volume.dtype),
        "voxel_size_nm": list(volume.voxel_size),
        "offset_nm": list(volume.offset),
    }


def dataset_identity(dataset: Dataset) -> dict[str, Any]:
    """The identity of a dataset's volumes (sources, shapes, voxel sizes, offsets)."""
    seg = dataset.segmentation
    return {
        "em": volume_identity(dataset.em),
        "segmentation": None if seg is None else volume_identity(seg),
    }


def embedding_signature(
    model: SegclrModel, dataset: Dataset, *, spacing_nm: float
) -> dict[str, Any]:
    """The signature of a store of ``model``'s embeddings of ``dataset``'s nodes.

    The model's weight digest and config, the data's identity and the node
    spacing (node ids mean different places at another spacing).
    """
    return {
        "model": model_signature(model),
        "model_config": model.config.to_dict(),
        "data": dataset_identity(dataset),
        "node_spacing_nm": float(spacing_nm),
    }


def open_embedding_store(
    store: StoreLike, model: SegclrModel, dataset: Dataset, *, spacing_nm: float
) -> EmbeddingStore:
    """Open (or create) the store of ``model`` on ``dataset``; refuses another signature."""
    signature = embedding_signature(model, dataset, spacing_nm=spacing_nm)
    path = store.path if isinstance(store, EmbeddingStore) else Path(store).expanduser()
    return EmbeddingStore.open_or_create(path, signature=signature, dim=model.config.embedding_dim)


def _existing_store(
    store: StoreLike, signature: dict[str, Any]
) -> tuple[Path, EmbeddingStore | None]:
    """The store's path, and the store opened for appending if it exists (signature checked).

    A store that does not exist yet is created only once the input has been
    checked, so bad input leaves no empty store behind.
    """
    path = store.path if isinstance(store, EmbeddingStore) else Path(store).expanduser()
    if not path.exists():
        return path, None
    return path, EmbeddingStore.open(path, signature=signature, mode="a")


def embed_segments(
    dataset: Dataset,
    model: SegclrModel,
    store: StoreLike,
    *,
    segment_ids: Sequence[int] | None = None,
    skeletons: Mapping[int, Skeleton] | None = None,
    spacing_nm: float = 1000.0,
    batch_size: int = 32,
    device: str = "auto",
    workers: int = 1,
    skeleton_params: SkeletonParams | None = None,
    chunk_shape: int | Sequence[int] = (256, 256, 256),
    progress: Progress | None = None,
) -> EmbedResult:
    """Embed the skeleton nodes of segments into an embedding store.

    Parameters
    ----------
    dataset
        The EM and its segmentation.
    model
        The SegCLR model; it is put in eval mode on ``device``.
    store
        An :class:`~napari_segclr.store.EmbeddingStore` or the path of one
        (created if absent). Its signature must match (see module docs).
    segment_ids
        The segments to embed; default: all of them (segments too small to
        skeletonise are then left out silently).
    skeletons
        Skeletons by segment id to use instead of skeletonising the segmentation.
    spacing_nm
        Distance between the nodes embedded, along each skeleton.
    batch_size
        Views per batch: per forward pass and per append to the store.
    device
        "auto" (CUDA when available), "cpu", "cuda" or "cuda:N". The model runs
        in channels-last 3D, on CUDA under bfloat16 autocast.
    workers
        Threads cutting the next batches of views while the model runs.
    skeleton_params, chunk_shape
        How the segmentation is skeletonised (see
        :func:`~napari_segclr.skeleton.skeletonize_volume`).
    progress
        ``progress(done, total)``: first over the chunks skeletonised (when no
        ``skeletons`` are given), then over the views to embed. An exception it
        raises stops the run; the batches appended so far stay in the store.

    Raises
    ------
    SegmentNotFoundError
        A segment id that is 0, absent, or too small to skeletonise.
    StoreSignatureError
        The store holds embeddings of another model, data set or spacing.
    """
    _check_dataset(dataset)
    spacing = _positive(spacing_nm, "spacing_nm")
    target = resolve_device(device)
    wanted = None if segment_ids is None else _segment_ids(segment_ids)
    signature = embedding_signature(model, dataset, spacing_nm=spacing)
    path, opened = _existing_store(store, signature)
    skeletons = select_skeletons(
        dataset,
        segment_ids=wanted,
        skeletons=skeletons,
        skeleton_params=skeleton_params,
        chunk_shape=chunk_shape,
        progress=progress,
    )
    if opened is None:
        opened = EmbeddingStore.create(path, signature=signature, dim=model.config.embedding_dim)
    return _embed_skeletons(
        dataset, model, opened, skeletons, spacing, batch_size, target, workers, progress
    )


def select_skeletons(
    dataset: Dataset,
    *,
    segment_ids: Sequence[int] | None = None,
    skeletons: Mapping[int, Skeleton] | None = None,
    skeleton_params: SkeletonParams | None = None,
    chunk_shape: int | Sequence[int] = (256, 256, 256),
    progress: Progress | None = None,
) -> dict[int, Skeleton]:
    """The skeletons :func:`embed_segments` embeds, by segment id.

    ``skeletons`` if given, else the segmentation skeletonised chunk by chunk
    (``progress(done, total)`` over chunks); restricted to ``segment_ids``,
    each of which must have a skeleton (else ``SegmentNotFoundError``).
    Other arguments as for :func:`embed_segments`.
    """
    _check_dataset(dataset)
    wanted = None if segment_ids is None else _segment_ids(segment_ids)
    given = skeletons is not None
    if skeletons is None:
        skeletons = skeletonize_volume(
            dataset.segmentation,
            chunk_shape=chunk_shape,
            segment_ids=wanted,
            params=skeleton_params,
            progress=progress,
        )
    if wanted is None:
        return dict(skeletons)
    lost = [sid for sid in wanted if sid not in skeletons]
    if lost:
        limit = (skeleton_params or SkeletonParams()).min_volume_nm3
        why = (
            "not among the skeletons given"
            if given
            else (f"absent from {dataset.segmentation.source} or under {limit:g} nm³")
        )
        shown = ", ".join(map(str, lost[:5])) + (", …" if len(lost) > 5 else "")
        raise SegmentNotFoundError(f"no skeleton for segment(s) {shown}: {why}")
    return {sid: skeletons[sid] for sid in wanted}


def embed_fragment(
    dataset: Dataset,
    model: SegclrModel,
    store: StoreLike,
    segment_id: int,
    *,
    seed_voxel: Sequence[int],
    spacing_nm: float = 1000.0,
    batch_size: int = 32,
    device: str = "auto",
    workers: int = 1,
    skeleton_params: SkeletonParams | None = None,
    progress: Progress | None = None,
) -> EmbeddingTable:
    """Embed one clicked segment and return all its rows in the store.

    The segment is skeletonised from a window around ``seed_voxel`` (a voxel of
    the segmentation, z y x, e.g. the clicked one) that grows until it holds
    the segment (see :func:`~napari_segclr.skeleton.skeletonize_segment`);
    nodes the store already holds are not embedded again. Other arguments as
    for :func:`embed_segments`.

    Raises
    ------
    SegmentNotFoundError
        ``segment_id`` is 0 or not near ``seed_voxel``.
    SegmentTooSmallError
        The segment is too small to skeletonise.
    """
    _check_dataset(dataset)
    spacing = _positive(spacing_nm, "spacing_nm")
    (sid,) = _segment_ids([segment_id])
    target = resolve_device(device)
    signature = embedding_signature(model, dataset, spacing_nm=spacing)
    path, opened = _existing_store(store, signature)
    skeleton = skeletonize_segment(
        dataset.segmentation, sid, seed_voxel=seed_voxel, params=skeleton_params
    )
    if opened is None:
        opened = EmbeddingStore.create(path, signature=signature, dim=model.config.embedding_dim)
    _embed_skeletons(
        dataset, model, opened, {sid: skeleton}, spacing, batch_size, target, workers, progress
    )
    return opened.read([sid])


def _embed_skeletons(
    dataset: Dataset,
    model: SegclrModel,
    store: EmbeddingStore,
    skeletons: Mapping[int, Skeleton],
    spacing_nm: float,
    batch_size: int,
    device: torch.device,
    workers: int,
    progress: Progress | None,
) -> EmbedResult:
    """Resample the skeletons, embed the nodes the store lacks, compact a fragmented store."""
    points = ViewPoints.from_skeletons(
        [resample(skeletons[sid], spacing_nm) for sid in sorted(skeletons)]
    )
    lo, hi = dataset.overlap_nm()
    inside = np.all((points.centers_nm >= lo) & (points.centers_nm < hi), axis=1)
    todo = inside & store.missing(points.segment_ids, points.node_ids)
    started = time.perf_counter()
    embedded = _embed_points(
        dataset, model, store, points[todo], batch_size, device, workers, progress
    )
    seconds = time.perf_counter() - started
    if store.n_parts > MAX_PARTS:
        store.compact()
    return EmbedResult(
        store=store.path,
        segments=len(skeletons),
        nodes=len(points),
        embedded=embedded,
        already_stored=int(np.count_nonzero(inside & ~todo)),
        outside=int(np.count_nonzero(~inside)),
        embed_s=seconds,
    )


def _embed_points(
    dataset: Dataset,
    model: SegclrModel,
    store: EmbeddingStore,
    points: ViewPoints,
    batch_size: int,
    device: torch.device,
    workers: int,
    progress: Progress | None,
) -> int:
    """Embed the views of ``points`` batch by batch, appending each batch; returns rows added."""
    batches = embed_views(
        dataset,
        model,
        points,
        batch_size=batch_size,
        device=device,
        workers=workers,
        progress=progress,
    )
    added = 0
    for batch, embeddings in batches:
        added += store.append(batch.segment_ids, batch.node_ids, batch.centers_nm, embeddings)
    return added


def device_view_loader(
    dataset: Dataset,
    points: ViewPoints,
    spec: ViewSpec,
    device: torch.device,
    *,
    batch_size: int = 32,
    workers: int = 1,
    progress: Progress | None = None,
) -> ViewLoader:
    """The loader that feeds views to ``device`` as torch tensors.

    To a GPU, views travel as uint8 from page-locked memory: a quarter of the bytes,
    copied without blocking the host (the model scales them on the device).
    """
    cuda = device.type == "cuda"
    return ViewLoader(
        dataset,
        points,
        spec,
        batch_size=batch_size,
        workers=workers,
        progress=progress,
        to_torch=True,
        pin_memory=cuda,
        dtype="uint8" if cuda else "float32",
    )


def embed_views(
    dataset: Dataset,
    model: SegclrModel,
    points: ViewPoints,
    *,
    batch_size: int = 32,
    device: str | torch.device = "auto",
    workers: int = 1,
    progress: Progress | None = None,
) -> Iterator[tuple[ViewPoints, np.ndarray]]:
    """The embeddings of the views around ``points``, batch by batch.

    Yields ``(batch, embeddings)``: a batch of the points (in the loader's
    spatial order) and their (B, D) float32 embeddings; storing them is the
    caller's choice. ``progress(done, total)`` counts views. Other arguments
    as for :func:`embed_segments`.
    """
    target = resolve_device(device)
    model = model.to(target, memory_format=torch.channels_last_3d).eval()
    cuda = target.type == "cuda"
    loader = device_view_loader(
        dataset,
        points,
        model.config,
        target,
        batch_size=batch_size,
        workers=workers,
        progress=progress,
    )
    queued: deque[tuple[ViewPoints, torch.Tensor]] = deque()
    for views, batch in loader:
        with (
            torch.inference_mode(),
            torch.autocast(target.type, dtype=torch.bfloat16, enabled=cuda),
        ):
            views = views.to(target, non_blocking=True)
            views = views.contiguous(memory_format=torch.channels_last_3d)
            queued.append((batch, model.embed(views)))
        # On CUDA a batch is fetched once the next one is queued behind it, so that the
        # device never waits for the host between batches; on the CPU each comes at once.
        while len(queued) > int(cuda):
            done, embeddings = queued.popleft()
            yield done, embeddings.float().cpu().numpy()
    for done, embeddings in queued:
        yield done, embeddings.float().cpu().numpy()


def _check_dataset(dataset: Dataset) -> None:
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a Dataset, got {type(dataset).__name__}")
    if dataset.segmentation is None:
        raise ShapeMismatchError(
            f"{dataset.em.source}: embedding needs a segmentation, and this dataset has none"
        )


def _segment_ids(segment_ids: Sequence[int]) -> list[int]:
    """Distinct segment ids in the order given; 0 and values outside uint64 are refused."""
    ids = []
    for value in segment_ids:
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"segment ids must be integers, got {value!r}")
        sid = int(value)
        if sid == 0:
            raise SegmentNotFoundError("segment id 0 is the background, not a segment")
        if not 0 < sid < 2**64:
            raise ValueError(f"segment ids must be in [1, 2**64), got {sid}")
        if sid not in ids:
            ids.append(sid)
    if not ids:
        raise ValueError("segment_ids is empty; pass None to embed every segment")
    return ids


def _positive(value: float, name: str) -> float:
    number = float(value)
    if not (np.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a positive number of nm, got {value!r}")
    return number
