"""Real cell shapes as :class:`Cell` objects: SWC reconstructions and hemibrain neurons.

Readers turn files into cells in nm, (z, y, x), with per-node compartments;
``place_cells`` packs copies of them into a neuropil volume for the renderer,
``cell_box`` gives the voxel box that shows one cell alone and
``subsample_nodes`` picks view centres along a cell's skeleton.

SWC node types map to :class:`Compartment` codes unchanged for 1 (soma),
2 (axon), 3 (basal dendrite) and 4 (apical dendrite). Any other type
(0 undefined, 5 fork point, 6 end point, 7+ custom) takes the compartment of
its nearest ancestor with one of those four types, or DENDRITE when it has
none. SWC type 5 is not glia.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..exceptions import MorphologyFormatError
from ..io.volume import as_vec3, as_voxel_size
from .cell import Cell, Compartment, Mesh
from .mesh import read_obj

#: Thinnest radius a node is drawn with: the thinnest cortical axons are about
#: 100 nm across, and reconstructions record some radii as tiny or <= 0.
DEFAULT_MIN_RADIUS_NM = 50.0

_SWC_TYPES = (Compartment.SOMA, Compartment.AXON, Compartment.DENDRITE, Compartment.APICAL)
_HEMIBRAIN_COLUMNS = ("node_id", "parent_id", "x", "y", "z", "radius", "compartment")


def stable_cell_id(key: str) -> int:
    """A cell id derived from a name: the same on every machine, in [1, 2**53).

    Ids stay below 2**53 so they survive a round trip through float64 (napari,
    JSON, pandas), and are spread over that range like real body ids.
    """
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % (2**53 - 1) + 1


def read_swc(
    path: str | Path,
    *,
    cell_id: int,
    cell_type: str = "",
    min_radius_nm: float = DEFAULT_MIN_RADIUS_NM,
    fixed_radius_nm: float | Mapping[Compartment, float] | None = None,
    attributes: Mapping[str, object] | None = None,
) -> Cell:
    """Read an SWC reconstruction (µm, gzip or plain) as a cell in nm.

    Parameters
    ----------
    path
        SWC file: lines ``id type x y z radius parent`` in µm, ``#`` comments;
        ``parent`` is negative for a root. Several roots (fragments) are allowed.
    cell_id
        Ground-truth body id (positive).
    cell_type
        Label stored on the cell.
    min_radius_nm
        Radii below this (tiny, zero or negative in many files) are raised to it.
    fixed_radius_nm
        For reconstructions whose radii are unreliable: one radius for every
        node except the soma, or a radius per compartment (compartments left
        out keep their file radius). Soma nodes keep their file radius.
    attributes
        Extra labels stored in ``cell.attributes``.

    Raises
    ------
    MorphologyFormatError
        Malformed line, duplicate node id, missing parent, cycle, no nodes.
    """
    path = Path(path)
    if min_radius_nm <= 0:
        raise ValueError(f"min_radius_nm must be positive, got {min_radius_nm}")
    table, line_numbers = _read_swc_table(path)
    ids, types, parent_ids = table[:, 0], table[:, 1], table[:, 6]
    for column, name in ((ids, "node id"), (types, "node type"), (parent_ids, "parent id")):
        bad = np.flatnonzero(column != np.round(column))
        if len(bad):
            raise MorphologyFormatError(
                f"{path}: line {line_numbers[bad[0]]}: {name} {column[bad[0]]} is not an integer"
            )
    parents = _link(ids.astype(np.int64), parent_ids.astype(np.int64), path, line_numbers)
    compartments = _swc_compartments(types.astype(np.int64), parents)
    radii = np.maximum(table[:, 5] * 1000.0, min_radius_nm)
    if fixed_radius_nm is not None:
        radii = _fix_radii(radii, compartments, fixed_radius_nm)
    return Cell(
        cell_id=int(cell_id),
        cell_type=cell_type,
        nodes=table[:, [4, 3, 2]] * 1000.0,
        parents=parents,
        radii=radii,
        compartments=compartments,
        attributes={"source": str(path), **(attributes or {})},
    )


def read_morphology_table(
    csv_path: str | Path,
    *,
    rows: Sequence[int] | None = None,
    cell_type_column: str = "cell_type",
    label_columns: Sequence[str] | None = None,
    min_radius_nm: float = DEFAULT_MIN_RADIUS_NM,
    fixed_radius_nm: float | Mapping[Compartment, float] | None = None,
) -> list[Cell]:
    """Read the SWC cells a metadata table lists.

    Parameters
    ----------
    csv_path
        CSV with a ``file`` column (SWC paths relative to the CSV) and label columns.
    rows
        Row positions to read (all rows when omitted).
    cell_type_column
        Column whose value becomes ``cell.cell_type``.
    label_columns
        Columns copied into ``cell.attributes`` (all but ``file`` when omitted).
    min_radius_nm, fixed_radius_nm
        As in :func:`read_swc`.

    Returns
    -------
    list of Cell
        In table order. Ids come from :func:`stable_cell_id` of the table's
        folder name and the ``file`` entry, so they are the same in every run.
    """
    csv_path = Path(csv_path)
    table = pd.read_csv(csv_path)
    labels = [c for c in table.columns if c != "file"] if label_columns is None else label_columns
    missing = [c for c in ("file", cell_type_column, *labels) if c not in table.columns]
    if missing:
        raise MorphologyFormatError(f"{csv_path}: no column {missing[0]!r}")
    if rows is not None:
        table = table.iloc[list(rows)]
    cells = []
    for record in table.to_dict("records"):
        swc = csv_path.parent / str(record["file"])
        cells.append(
            read_swc(
                swc,
                cell_id=stable_cell_id(f"{csv_path.parent.name}/{record['file']}"),
                cell_type=str(record[cell_type_column]),
                min_radius_nm=min_radius_nm,
                fixed_radius_nm=fixed_radius_nm,
                attributes={name: record[name] for name in labels},
            )
        )
    return cells


def read_hemibrain_neuron(
    obj_path: str | Path,
    nodes_csv: str | Path,
    *,
    cell_id: int | None = None,
    cell_type: str = "DA1",
    voxel_size_nm: float | Sequence[float] = 8.0,
    linker: Compartment = Compartment.AXON,
) -> Cell:
    """Read a hemibrain neuron: its surface mesh and its labelled skeleton.

    Parameters
    ----------
    obj_path
        Surface mesh, vertices ``x y z`` in voxels.
    nodes_csv
        Skeleton table with columns node_id, parent_id, x, y, z, radius (all in
        voxels) and compartment (dendrite, axon or linker).
    cell_id
        Body id; by default the mesh file's name when it is a number.
    cell_type
        Label stored on the cell.
    voxel_size_nm
        The files' voxel size in nm, one number or (z, y, x).
    linker
        Compartment given to ``linker`` nodes: the synapse-free primary neurite
        joining dendrite and axon, an axon-like cable, hence AXON by default.
        ``cell.attributes["linker_nodes"]`` marks them so an evaluation can
        leave them out.
    """
    obj_path, nodes_csv = Path(obj_path), Path(nodes_csv)
    scale = np.asarray(as_voxel_size(voxel_size_nm, str(nodes_csv)))
    table = pd.read_csv(nodes_csv)
    missing = [c for c in _HEMIBRAIN_COLUMNS if c not in table.columns]
    if missing:
        raise MorphologyFormatError(f"{nodes_csv}: no column {missing[0]!r}")
    if table.empty:
        raise MorphologyFormatError(f"{nodes_csv}: no nodes")
    names = table["compartment"].astype(str).to_numpy()
    codes = {"dendrite": Compartment.DENDRITE, "axon": Compartment.AXON, "linker": linker}
    unknown = sorted(set(names) - set(codes))
    if unknown:
        raise MorphologyFormatError(f"{nodes_csv}: unknown compartment {unknown[0]!r}")
    try:
        xyz = table[["x", "y", "z"]].to_numpy(dtype=np.float64)
        radii = table["radius"].to_numpy(dtype=np.float64)
        ids = table["node_id"].to_numpy(dtype=np.int64)
        parent_ids = table["parent_id"].to_numpy(dtype=np.int64)
    except (TypeError, ValueError) as error:
        raise MorphologyFormatError(f"{nodes_csv}: non-numeric skeleton values ({error})") from None
    if cell_id is None:
        stem = obj_path.stem
        cell_id = int(stem) if stem.isdigit() and 0 < int(stem) < 2**64 else stable_cell_id(stem)
    return Cell(
        cell_id=cell_id,
        cell_type=cell_type,
        nodes=xyz[:, ::-1] * scale,
        parents=_link(ids, parent_ids, nodes_csv, np.arange(len(ids)) + 2),
        radii=np.maximum(radii * scale.mean(), DEFAULT_MIN_RADIUS_NM),
        compartments=np.array([codes[n] for n in names], dtype=np.uint8),
        mesh=read_obj(obj_path, voxel_size_nm=voxel_size_nm),
        attributes={"source": str(obj_path), "linker_nodes": names == "linker"},
    )


def transform_cell(
    cell: Cell,
    *,
    rotation: np.ndarray | None = None,
    translation_nm: float | Sequence[float] = 0.0,
    cell_id: int | None = None,
    attributes: Mapping[str, object] | None = None,
) -> Cell:
    """A copy of a cell moved rigidly: ``x -> rotation @ x + translation`` (nm, z y x).

    ``rotation`` must be a proper 3×3 rotation matrix acting on (z, y, x)
    vectors; the mesh moves with the skeleton. ``attributes`` are added to the
    copy's.
    """
    shift = np.asarray(as_vec3(translation_nm, "translation_nm"))
    matrix = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    if matrix.shape != (3, 3) or not (
        np.allclose(matrix @ matrix.T, np.eye(3), atol=1e-6)
        and np.isclose(np.linalg.det(matrix), 1.0)
    ):
        raise ValueError("rotation must be a 3x3 rotation matrix (orthonormal, determinant 1)")
    mesh = None
    if cell.mesh is not None:
        mesh = Mesh(vertices=cell.mesh.vertices @ matrix.T + shift, faces=cell.mesh.faces)
    return Cell(
        cell_id=cell.cell_id if cell_id is None else int(cell_id),
        cell_type=cell.cell_type,
        nodes=cell.nodes @ matrix.T + shift,
        parents=cell.parents,
        radii=cell.radii,
        compartments=cell.compartments,
        mesh=mesh,
        attributes={**cell.attributes, **(attributes or {})},
    )


def place_cells(
    cells: Sequence[Cell],
    *,
    shape: Sequence[int],
    voxel_size: float | Sequence[float],
    seed: int,
    n_cells: int | None = None,
    rotate: bool = True,
    origin_nm: float | Sequence[float] = 0.0,
) -> list[Cell]:
    """Pack copies of real cells into a neuropil volume.

    Each copy is turned by a uniformly random rotation (when ``rotate``) and
    moved so that a random point of its cable, drawn in proportion to cable
    length, lands at a uniformly random place in the volume: every copy
    overlaps the volume. Cells are used in turn (a fresh random order per
    round) until ``n_cells`` copies exist. Copies may interpenetrate; the
    renderer decides which body owns a shared voxel.

    Parameters
    ----------
    cells
        The cells to draw from.
    shape, voxel_size, origin_nm
        The volume: voxel ``i`` has its centre at ``origin_nm + i * voxel_size``.
    seed
        Seed of the random placement.
    n_cells
        Number of copies (``len(cells)`` when omitted).
    rotate
        Turn copies at random; otherwise they keep their orientation.

    Returns
    -------
    list of Cell
        The first copy of a cell keeps its id, later copies get new ids
        (:func:`stable_cell_id` of the id and copy number); all ids are unique.
        ``attributes`` gain ``source_cell_id``, ``rotation`` and ``translation_nm``.
    """
    if not cells:
        raise ValueError("cells must hold at least one cell")
    dims = np.asarray(shape, dtype=np.int64)
    if dims.shape != (3,) or dims.min() < 1:
        raise ValueError(f"shape must be three positive voxel counts (z, y, x), got {shape!r}")
    vs = np.asarray(as_voxel_size(voxel_size, "place_cells"))
    origin = np.asarray(as_vec3(origin_nm, "origin_nm"))
    count = len(cells) if n_cells is None else int(n_cells)
    if count < 1:
        raise ValueError(f"n_cells must be at least 1, got {n_cells}")
    rng = np.random.default_rng(seed)
    rounds = -(-count // len(cells))
    order = np.concatenate([rng.permutation(len(cells)) for _ in range(rounds)])[:count]
    used: set[int] = set()
    placed = []
    for copy, index in enumerate(order):
        cell = cells[index]
        new_id = cell.cell_id
        while new_id in used:
            new_id = stable_cell_id(f"{cell.cell_id}/{copy}/{new_id}")
        used.add(new_id)
        rotation = _random_rotation(rng) if rotate else np.eye(3)
        weights = _cable_lengths(cell)
        anchor = cell.nodes[rng.choice(cell.n_nodes, p=weights / weights.sum())]
        target = origin + (rng.uniform(size=3) * dims - 0.5) * vs
        translation = target - rotation @ anchor
        placed.append(
            transform_cell(
                cell,
                rotation=rotation,
                translation_nm=translation,
                cell_id=new_id,
                attributes={
                    "source_cell_id": cell.cell_id,
                    "rotation": rotation,
                    "translation_nm": translation,
                },
            )
        )
    return placed


def cell_box(
    cell: Cell, voxel_size: float | Sequence[float], *, margin_nm: float = 0.0
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The voxel box covering a cell (radii or mesh included) plus a margin.

    Returns ``(origin_nm, shape)``: the centre of the box's first voxel, on the
    grid of multiples of ``voxel_size``, and its shape in voxels (z, y, x).
    To render the cell alone in a volume starting at 0, move it by
    ``-origin_nm`` (:func:`transform_cell`).
    """
    vs = np.asarray(as_voxel_size(voxel_size, "cell_box"))
    if margin_nm < 0:
        raise ValueError(f"margin_nm must be non-negative, got {margin_nm}")
    lo, hi = cell.bounds_nm()
    first = np.floor((lo - margin_nm) / vs)
    last = np.ceil((hi + margin_nm) / vs)
    shape = (last - first + 1).astype(int)
    return first * vs, (int(shape[0]), int(shape[1]), int(shape[2]))


def subsample_nodes(cell: Cell, spacing_nm: float, *, seed: int) -> np.ndarray:
    """Node indices about ``spacing_nm`` apart along the skeleton (path length).

    Marks are laid along every path from a root at multiples of
    ``spacing_nm`` (shifted by one random offset); a node is kept where the
    cable from its parent passes a mark, and each root is kept. Sibling
    branches are sampled independently, so picks just past a branch point can
    be closer than the spacing. ``cell.compartments[indices]`` are their labels.
    """
    if spacing_nm <= 0:
        raise ValueError(f"spacing_nm must be positive, got {spacing_nm}")
    offset = np.random.default_rng(seed).uniform(0, spacing_nm)
    has_parent = cell.parents >= 0
    distance = _ancestor_sums(cell.parents, _link_lengths(cell))
    mark = np.floor((distance + offset) / spacing_nm)
    parent_mark = np.where(has_parent, mark[np.maximum(cell.parents, 0)], -1)
    return np.flatnonzero(~has_parent | (mark > parent_mark))


def _read_swc_table(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The (N, 7) numbers of an SWC file and the line number of each row."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    rows, line_numbers = [], []
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
        tokens = line.split("#", 1)[0].split()
        if not tokens:
            continue
        if len(tokens) != 7:
            raise MorphologyFormatError(
                f"{path}: line {number}: expected 7 fields (id type x y z radius parent), "
                f"got {len(tokens)}: {line.strip()!r}"
            )
        rows.append(tokens)
        line_numbers.append(number)
    if not rows:
        raise MorphologyFormatError(f"{path}: no nodes")
    try:
        table = np.array(rows, dtype=np.float64)
    except ValueError:
        for tokens, number in zip(rows, line_numbers, strict=True):
            try:
                [float(t) for t in tokens]
            except ValueError:
                raise MorphologyFormatError(
                    f"{path}: line {number}: non-numeric field in {' '.join(tokens)!r}"
                ) from None
        raise
    bad = np.flatnonzero(~np.isfinite(table).all(axis=1))
    if len(bad):
        raise MorphologyFormatError(f"{path}: line {line_numbers[bad[0]]}: non-finite value")
    return table, np.asarray(line_numbers)


def _link(
    ids: np.ndarray, parent_ids: np.ndarray, source: Path, line_numbers: np.ndarray
) -> np.ndarray:
    """Parent indices (-1 for roots) from node and parent ids; validates the tree."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    duplicate = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if len(duplicate):
        row = order[duplicate[0] + 1]
        raise MorphologyFormatError(
            f"{source}: line {line_numbers[row]}: duplicate node id {ids[row]}"
        )
    is_root = parent_ids < 0
    slot = np.clip(np.searchsorted(sorted_ids, parent_ids), 0, len(ids) - 1)
    found = sorted_ids[slot] == parent_ids
    missing = np.flatnonzero(~is_root & ~found)
    if len(missing):
        row = missing[0]
        raise MorphologyFormatError(
            f"{source}: line {line_numbers[row]}: node {ids[row]} has parent "
            f"{parent_ids[row]}, which is not in the file"
        )
    parents = np.where(is_root, -1, order[slot])
    try:
        _ancestor_sums(parents, np.zeros(len(parents)))
    except _CycleError as cycle:
        raise MorphologyFormatError(
            f"{source}: parent links form a cycle through node {ids[cycle.node]}"
        ) from None
    return parents


class _CycleError(Exception):
    def __init__(self, node: int) -> None:
        super().__init__(node)
        self.node = node


def _ancestor_sums(parents: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Sum of ``values`` over each node and all its ancestors (pointer jumping)."""
    total = values.astype(np.float64)
    up = parents.copy()
    for _ in range(int(np.ceil(np.log2(len(parents) + 1))) + 1):
        linked = up >= 0
        if not linked.any():
            return total
        safe = np.where(linked, up, 0)
        total = total + np.where(linked, total[safe], 0.0)
        up = np.where(linked, up[safe], -1)
    if (up < 0).all():
        return total
    # Still linked after more jumps than nodes: the chain loops; up now lies on the loop.
    raise _CycleError(int(up[np.flatnonzero(up >= 0)[0]]))


def _swc_compartments(types: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """Compartment codes from SWC types; other types take their nearest typed ancestor's."""
    typed = np.isin(types, [int(c) for c in _SWC_TYPES])
    source = np.where(typed, np.arange(len(types)), parents)
    while True:  # pointer jumping to the nearest typed ancestor (the tree has no cycle)
        pending = np.flatnonzero((source >= 0) & ~typed[np.maximum(source, 0)])
        if not len(pending):
            break
        source[pending] = source[source[pending]]
    return np.where(source >= 0, types[np.maximum(source, 0)], Compartment.DENDRITE).astype(
        np.uint8
    )


def _fix_radii(
    radii: np.ndarray,
    compartments: np.ndarray,
    fixed: float | Mapping[Compartment, float],
) -> np.ndarray:
    per_compartment = (
        dict(fixed)
        if isinstance(fixed, Mapping)
        else {c: fixed for c in _SWC_TYPES if c != Compartment.SOMA}
    )
    out = radii.copy()
    for compartment, radius in per_compartment.items():
        if radius <= 0:
            raise ValueError(f"fixed_radius_nm must be positive, got {radius} for {compartment}")
        out[compartments == compartment] = radius
    return out


def _link_lengths(cell: Cell) -> np.ndarray:
    """Distance of each node to its parent in nm (0 for a root)."""
    linked = cell.parents >= 0
    lengths = np.zeros(cell.n_nodes)
    lengths[linked] = np.linalg.norm(cell.nodes[linked] - cell.nodes[cell.parents[linked]], axis=1)
    return lengths


def _cable_lengths(cell: Cell) -> np.ndarray:
    """Length of cable each node stands for: to its parent, a root its radius."""
    lengths = np.where(cell.parents >= 0, _link_lengths(cell), cell.radii)
    return lengths + 1e-9  # zero-length links still get a chance


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix drawn uniformly (a random unit quaternion)."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
