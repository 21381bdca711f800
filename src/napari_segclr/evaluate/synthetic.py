"""Labelled synthetic neuropil for evaluation: views of four subcompartments, and
skeletons of segments of the six cell types, on seeds never trained on.

The shipped model trains on seeds below :data:`FIRST_EVALUATION_SEED`; every
function here refuses them. One volume per seed is rendered into memory,
placed so that the neuron soma nearest the origin reaches into it::

    from napari_segclr.evaluate.synthetic import evaluation_volume
    from napari_segclr.model import get_preset

    volume = evaluation_volume(1000, get_preset("lite"), views_per_class=32)
    volume.view_points, volume.view_labels  # centres of soma/dendrite/axon/glia views
    volume.segments.skeletons, volume.segments.cell_types  # skeletons and true types

Subcompartment view centres are ground-truth voxels, not skeleton nodes: each
synthetic soma is a single node. Per class a cell is drawn at random, then one
of its voxels of that class, and centres keep half a field of view from the
volume's faces, so that no class is seen cut off at the edge more than another.
Segment skeletons come from the true node table (no skeletonisation), resampled
to one node every ``spacing_nm``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..io import Dataset
from ..skeleton import Skeleton, resample
from ..synthetic import Compartment, Crop, Neuropil, NeuropilConfig, render_dataset
from ..synthetic.cell_types import CELL_TYPES
from ..train import skeletons_from_nodes
from ..views import UINT8_SCALE, ViewLoader, ViewPoints, ViewSpec, as_view_spec

#: Seeds from here on are never trained on (``examples/train_shipped_model.py`` refuses them).
FIRST_EVALUATION_SEED = 1000
#: The subcompartment classes of a view and the compartment codes each covers.
SUBCOMPARTMENTS: dict[str, tuple[Compartment, ...]] = {
    "soma": (Compartment.SOMA,),
    "dendrite": (Compartment.DENDRITE, Compartment.APICAL),
    "axon": (Compartment.AXON,),
    "glia": (Compartment.GLIA,),
}
#: The cell-type classes, and those of them that are glia.
CELL_TYPE_NAMES: tuple[str, ...] = tuple(CELL_TYPES)
GLIA_TYPES: tuple[str, ...] = tuple(n for n, t in CELL_TYPES.items() if t.cell_class == "glia")
#: Half-width (nm) of the virtual region searched for a neuron soma to show.
SOMA_SEARCH_NM = 24_000.0
#: Default size (z, y, x) in µm of an evaluation volume: segments run for tens of µm in it.
EVALUATION_EXTENT_UM: tuple[float, float, float] = (12.8, 25.6, 25.6)
#: Default most skeleton nodes per cell type and seed.
NODES_PER_TYPE = 300

Progress = Callable[[int, int], None]


def check_evaluation_seeds(seeds: Sequence[int], *, name: str = "seeds") -> tuple[int, ...]:
    """The seeds as a tuple, refusing duplicates and seeds that training may have used.

    Raises
    ------
    ValueError
        A seed below :data:`FIRST_EVALUATION_SEED`, not an integer, or given twice.
    """
    values = tuple(seeds)
    for seed in values:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise ValueError(f"{name} must be integers, got {seed!r}")
    low = sorted(int(s) for s in values if s < FIRST_EVALUATION_SEED)
    if low:
        raise ValueError(
            f"{name} {low} are below {FIRST_EVALUATION_SEED}: seeds below it may have been "
            f"trained on; evaluate on seeds >= {FIRST_EVALUATION_SEED}"
        )
    if len(set(values)) != len(values):
        raise ValueError(f"{name} lists a seed more than once: {list(values)}")
    return tuple(int(s) for s in values)


def window_config(
    seed: int, *, extent_nm: np.ndarray, voxel_size: float, margin_x_nm: float
) -> NeuropilConfig:
    """The window of neuropil ``seed`` to render.

    It is centred on the neuron soma nearest the origin in z and y; in x the
    soma centre lies half a soma radius before the first place views may be
    centred on (``margin_x_nm`` inside the window), so that the soma fills part
    of the sampled region and neuropil the rest.
    """
    shape = np.maximum(np.round(np.asarray(extent_nm, float) / voxel_size), 1).astype(int)
    extent = shape * voxel_size
    search = NeuropilConfig(
        shape=(int(2 * SOMA_SEARCH_NM / 200),) * 3,
        voxel_size=200.0,
        seed=seed,
        offset=(-SOMA_SEARCH_NM,) * 3,
    )
    somata = Neuropil(search).somata()
    neurons = somata[[CELL_TYPES[t].cell_class == "neuron" for t in somata["cell_type"]]]
    if neurons.empty:  # plain neuropil around the origin
        lower_face = -extent / 2
    else:
        centres = neurons[["z_nm", "y_nm", "x_nm"]].to_numpy()
        nearest = int(np.argmin(np.linalg.norm(centres, axis=1)))
        centre, radius = centres[nearest], float(neurons["radius_nm"].iloc[nearest])
        lower_face = centre - extent / 2
        lower_face[2] = centre[2] + radius / 2 - margin_x_nm
    return NeuropilConfig(
        shape=tuple(int(s) for s in shape),
        voxel_size=voxel_size,
        seed=seed,
        offset=tuple(lower_face + voxel_size / 2),
    )


def sample_points(
    crop: Crop,
    config: NeuropilConfig,
    *,
    margin_voxels: Sequence[int],
    per_class: int,
    rng: np.random.Generator,
) -> tuple[ViewPoints, np.ndarray]:
    """Up to ``per_class`` view centres of each subcompartment, and their class indices.

    Class indices follow :data:`SUBCOMPARTMENTS`. Within a class every cell is
    equally likely, then every one of its voxels of that class; centres keep
    ``margin_voxels`` (z, y, x) from the window's faces.
    """
    region = tuple(slice(m, n - m) for m, n in zip(margin_voxels, crop.em.shape, strict=True))
    corner = np.array([s.start for s in region])
    compartments, cells = crop.compartments[region], crop.cells[region]
    ids, centres, labels = [], [], []
    for label, codes in enumerate(SUBCOMPARTMENTS.values()):
        flat = np.flatnonzero(np.isin(compartments, codes))
        if not len(flat):
            continue
        _, owner, sizes = np.unique(cells.flat[flat], return_inverse=True, return_counts=True)
        weights = 1.0 / sizes[owner]
        pick = rng.choice(
            flat, size=min(per_class, len(flat)), replace=False, p=weights / weights.sum()
        )
        index = np.stack(np.unravel_index(pick, compartments.shape), axis=1) + corner
        ids.append(crop.segmentation[tuple(index.T)])
        centres.append(np.asarray(config.offset) + index * np.asarray(config.voxel_size))
        labels.append(np.full(len(pick), label))
    if not labels:
        empty = ViewPoints(np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros((0, 3)))
        return empty, np.zeros(0, np.int64)
    labels = np.concatenate(labels)
    points = ViewPoints(np.concatenate(ids), np.arange(len(labels)), np.concatenate(centres))
    return points, labels


@dataclass(frozen=True, eq=False)
class LabelledSegments:
    """Skeletons of segments (resampled, node id = node index) and their true cell types.

    Attributes
    ----------
    skeletons
        Skeletons by segment id, in ascending id order.
    cell_types
        Cell type name by segment id.
    """

    skeletons: dict[int, Skeleton]
    cell_types: dict[int, str]

    @property
    def n_nodes(self) -> int:
        return sum(len(s) for s in self.skeletons.values())

    def points(self) -> ViewPoints:
        """One view point per node, segments in ascending id order."""
        return ViewPoints.from_skeletons(self.skeletons)

    def node_types(self) -> np.ndarray:
        """(n_nodes,) cell type of every node, in the order of :meth:`points`."""
        return np.repeat(
            np.array([self.cell_types[s] for s in self.skeletons], dtype=object),
            [len(s) for s in self.skeletons.values()],
        ).astype(str)


def labelled_segments(
    neuropil: Neuropil,
    segmentation: np.ndarray,
    *,
    spacing_nm: float,
    nodes_per_type: int,
    min_nodes: int = 3,
    rng: np.random.Generator,
) -> LabelledSegments:
    """Segments of every cell type, with skeletons from the ground truth.

    A node is kept where the rendered ``segmentation`` (the whole volume,
    z, y, x) holds its segment at the node's voxel: processes thinner than a
    voxel may not be rendered, and views of them would show nothing. Skeletons
    are resampled to a node every ``spacing_nm``; those with fewer than
    ``min_nodes`` nodes are left out. Per type, segments are taken in random
    order while their nodes fit in ``nodes_per_type`` (a segment larger than
    what is left is skipped), so that no type outweighs the others.
    """
    config = neuropil.config
    nodes = neuropil.nodes()
    voxels = np.rint(
        (nodes[["z_nm", "y_nm", "x_nm"]].to_numpy() - np.asarray(config.offset))
        / np.asarray(config.voxel_size)
    ).astype(np.int64)
    inside = np.all((voxels >= 0) & (voxels < np.asarray(segmentation.shape)), axis=1)
    ids = nodes["segment_id"].to_numpy(np.uint64)
    visible = inside.copy()
    visible[inside] = segmentation[tuple(voxels[inside].T)] == ids[inside]
    nodes = nodes[visible & (ids != 0)]
    rows = nodes.groupby("segment_id", sort=True).indices
    types = nodes["cell_type"].to_numpy()
    skeletons: dict[int, Skeleton] = {}
    # Segments are skeletonised only as they are drawn: a volume holds a thousand or more.
    for name in CELL_TYPE_NAMES:
        candidates = [sid for sid, at in rows.items() if types[at[0]] == name]
        budget = nodes_per_type
        for sid in rng.permutation(np.array(candidates, dtype=np.uint64)).tolist():
            if budget < min_nodes:
                break
            skeleton = resample(skeletons_from_nodes(nodes.iloc[rows[sid]])[sid], spacing_nm)
            if min_nodes <= len(skeleton) <= budget:
                skeletons[int(sid)] = skeleton
                budget -= len(skeleton)
    chosen = sorted(skeletons)
    return LabelledSegments(
        {sid: skeletons[sid] for sid in chosen},
        {sid: str(types[rows[sid][0]]) for sid in chosen},
    )


@dataclass(frozen=True, eq=False)
class EvaluationVolume:
    """One rendered seed: its volumes, labelled view centres and labelled segments.

    Attributes
    ----------
    seed
        The neuropil seed.
    config
        The rendered window.
    dataset
        Its EM and segmentation, in memory.
    view_points
        Subcompartment view centres (node ids number the views).
    view_labels
        (N,) subcompartment name of each view.
    segments
        Segments of every cell type with their skeletons.
    """

    seed: int
    config: NeuropilConfig
    dataset: Dataset
    view_points: ViewPoints
    view_labels: np.ndarray
    segments: LabelledSegments


def evaluation_volume(
    seed: int,
    spec: ViewSpec,
    *,
    views_per_class: int,
    extent_um: Sequence[float] = EVALUATION_EXTENT_UM,
    voxel_size_nm: float = 64.0,
    spacing_nm: float = 1000.0,
    nodes_per_type: int = NODES_PER_TYPE,
    rng: np.random.Generator | int = 0,
    progress: Progress | None = None,
    held_out: bool = True,
) -> EvaluationVolume:
    """Render seed ``seed`` and draw its labelled views and segments.

    Parameters
    ----------
    seed
        A neuropil seed, at least :data:`FIRST_EVALUATION_SEED` if ``held_out``.
    spec
        The views to be cut (a ``ViewSpec`` or a model config): their field of
        view sets the margin kept from the volume's faces.
    views_per_class
        Subcompartment views drawn per class (fewer where a class has fewer voxels).
    extent_um
        Size of the volume (z, y, x) in µm; more than a field of view along each axis.
    voxel_size_nm
        Voxel size of the rendered volume (64 nm: 3.2 × 10⁷ voxels at the default extent).
    spacing_nm, nodes_per_type
        See :func:`labelled_segments`.
    rng
        Generator or seed for the draws.
    progress
        ``progress(done, total)`` over the rendered slabs.
    held_out
        Refuse seeds that training may have used (False: labelled training data).
    """
    if held_out:
        (seed,) = check_evaluation_seeds([seed], name="seed")
    spec = as_view_spec(spec)
    rng = np.random.default_rng(rng)
    fov = np.asarray(spec.field_of_view_nm)
    extent = np.asarray(extent_um, float) * 1000.0
    if extent.shape != (3,) or np.any(extent <= fov):
        raise ValueError(
            f"extent_um must be three sizes above the views' field of view "
            f"{np.round(fov / 1000, 2).tolist()} µm, got {list(extent_um)}"
        )
    config = window_config(seed, extent_nm=extent, voxel_size=voxel_size_nm, margin_x_nm=fov[2] / 2)
    neuropil = Neuropil(config)
    crop, dataset = render_dataset(neuropil, progress=progress)
    margin = [int(np.ceil(f / 2 / voxel_size_nm)) for f in fov]
    points, labels = sample_points(
        crop, config, margin_voxels=margin, per_class=views_per_class, rng=rng
    )
    segments = labelled_segments(
        neuropil,
        crop.segmentation,
        spacing_nm=spacing_nm,
        nodes_per_type=nodes_per_type,
        rng=rng,
    )
    names = np.array(list(SUBCOMPARTMENTS))
    return EvaluationVolume(seed, config, dataset, points, names[labels], segments)


#: The channels a kept view holds; :func:`model_inputs` builds any model's channels from them.
KEPT_KINDS = ("em", "mask")


def kept_channels(views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 EM and bool mask of uint8 views (B, 2, Z, Y, X) with :data:`KEPT_KINDS`,
    as ``extract_views(..., dtype="uint8")`` cuts them."""
    return views[:, 0], views[:, 1] > 0


def model_inputs(em: np.ndarray, mask: np.ndarray, input_kinds: Sequence[str]) -> np.ndarray:
    """Float32 model inputs (B, C, Z, Y, X) from uint8 EM and bool masks (B, Z, Y, X).

    One channel per kind: "em", "mask" or "masked_em" (EM inside the mask, 0 outside).
    """
    out = np.empty((len(em), len(input_kinds), *em.shape[1:]), np.float32)
    for channel, kind in enumerate(input_kinds):
        if kind == "mask":
            out[:, channel] = mask
            continue
        np.multiply(em, np.float32(1 / UINT8_SCALE), out=out[:, channel])
        if kind == "masked_em":
            out[:, channel] *= mask
    return out


@dataclass(frozen=True, eq=False)
class LabelledViews:
    """Views kept in memory for the baselines: EM and segment mask, with labels.

    Attributes
    ----------
    em
        (N, Z, Y, X) uint8: the view's EM, scaled by 255.
    mask
        (N, Z, Y, X) bool: the view's segment mask.
    labels
        (N,) class names.
    seeds
        (N,) the seed each view comes from.
    voxel_size_nm
        Voxel size of the views (z, y, x).
    """

    em: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    seeds: np.ndarray
    voxel_size_nm: tuple[float, float, float]

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def concat(cls, parts: Sequence[LabelledViews]) -> LabelledViews:
        """The views of ``parts`` one after the other (at least one part)."""
        return cls(
            np.concatenate([p.em for p in parts]),
            np.concatenate([p.mask for p in parts]),
            np.concatenate([p.labels for p in parts]),
            np.concatenate([p.seeds for p in parts]),
            parts[0].voxel_size_nm,
        )

    def take(self, index: np.ndarray | slice) -> LabelledViews:
        """The views at ``index`` (integer indices, a boolean mask or a slice)."""
        return LabelledViews(
            self.em[index],
            self.mask[index],
            self.labels[index],
            self.seeds[index],
            self.voxel_size_nm,
        )

    def inputs(self, index: np.ndarray | slice, input_kinds: Sequence[str]) -> np.ndarray:
        """Model inputs (B, C, Z, Y, X) of the views at ``index`` (see :func:`model_inputs`)."""
        return model_inputs(self.em[index], self.mask[index], input_kinds)


def labelled_views(
    volume: EvaluationVolume,
    shape: Sequence[int],
    voxel_size_nm: float | Sequence[float],
    *,
    batch_size: int = 32,
    workers: int = 1,
    progress: Progress | None = None,
) -> LabelledViews:
    """The subcompartment views of ``volume`` of a given shape and voxel size, kept in memory."""
    spec = ViewSpec(tuple(shape), voxel_size_nm, KEPT_KINDS)
    n = len(volume.view_points)
    em = np.empty((n, *spec.shape), np.uint8)
    mask = np.empty((n, *spec.shape), bool)
    loader = ViewLoader(
        volume.dataset,
        volume.view_points,
        spec,
        batch_size=batch_size,
        workers=workers,
        progress=progress,
        dtype="uint8",
    )
    for views, points in loader:
        em[points.node_ids], mask[points.node_ids] = kept_channels(views)  # node id = view index
    seeds = np.full(n, volume.seed)
    return LabelledViews(em, mask, volume.view_labels, seeds, spec.voxel_size_nm)
