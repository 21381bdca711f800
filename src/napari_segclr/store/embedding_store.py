"""A zarr store of node embeddings that many writers can append to at once.

Layout (a zarr v3 group on the local or a shared file system)::

    store.zarr/
        zarr.json          the store's attributes: format, dim, signature
        parts/<name>/      committed parts: immutable zarr groups, read by everyone
        staging/<token>/   parts being written: ignored by readers
        trash/<name>/      parts retired by ``compact``, being deleted

A writer writes each append as a new part under ``staging/`` and commits it by
renaming it into ``parts/``: a rename is atomic, so a reader sees a part whole
or not at all, and a writer that dies mid-append leaves only an ignored
directory in ``staging/``. Writers never modify shared files, so any number of
processes (Dask workers, say) can append to one store without locks.

Inside a part rows are sorted by (segment id, node id), and a small index
(the part's distinct segment ids and their row offsets) finds a segment's rows
without reading the others. Two writers racing may both commit the same node;
readers keep the row of the part committed first (parts are named by commit
time), so every (segment id, node id) is read exactly once.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import zarr

from ..exceptions import (
    OutputExistsError,
    ShapeMismatchError,
    StoreSignatureError,
    UnknownFormatError,
    VolumeNotFoundError,
)
from .table import EmbeddingTable, as_node_ids, as_segment_ids, first_of_each_key, pairs_in

_ATTRS_KEY = "napari_segclr"
_KIND = "embedding_store"
_FORMAT_VERSION = 1
_PARTS, _STAGING, _TRASH = "parts", "staging", "trash"
# 4096 rows of 64-d float32 are a 1 MiB chunk: reading one segment decodes little.
# Large parts group 16 chunks per file, so a million rows make ~16 files per column.
_CHUNK_ROWS = 4096
_SHARD_ROWS = 16 * _CHUNK_ROWS
_CACHED_NODE_ROWS = _SHARD_ROWS  # at most 512 KiB of node ids per cached part
_STALE_STAGING_S = 24 * 3600
_READ_RETRIES = 5

Mode = Literal["r", "a"]
T = TypeVar("T")


class _Part:
    """One committed part, opened read-only; parts never change once committed."""

    def __init__(self, path: Path) -> None:
        group = zarr.open_group(str(path), mode="r")
        self.path = path
        self.segments: np.ndarray = group["segments"][:]
        self.offsets: np.ndarray = group["offsets"][:]
        self._node_id = group["node_id"]
        self._position = group["position_nm"]
        self._embedding = group["embedding"]
        self._node_cache: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def rows_of(self, segment_ids: np.ndarray) -> np.ndarray:
        """Row indices, ascending, of the ``segment_ids`` (sorted, distinct) held here."""
        at = np.searchsorted(self.segments, segment_ids)
        held = at < len(self.segments)
        held[held] = self.segments[at[held]] == segment_ids[held]
        starts, stops = self.offsets[at[held]], self.offsets[at[held] + 1]
        lengths = stops - starts
        # Concatenated aranges, vectorised: each run restarts at its own start.
        run_origin = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        return run_origin + np.arange(lengths.sum())

    def segment_ids(self, rows: np.ndarray | None) -> np.ndarray:
        if rows is None:
            return np.repeat(self.segments, np.diff(self.offsets))
        return self.segments[np.searchsorted(self.offsets, rows, side="right") - 1]

    def node_ids(self, rows: np.ndarray | None) -> np.ndarray:
        # Small parts keep their node ids in memory: ``missing`` looks at every
        # part on each append, and a zarr read per part would dominate.
        if self._node_cache is None and len(self) <= _CACHED_NODE_ROWS:
            self._node_cache = self._node_id[:]
        if self._node_cache is not None:
            return self._node_cache if rows is None else self._node_cache[rows]
        return _read_rows(self._node_id, rows, len(self))

    def read(self, rows: np.ndarray | None) -> EmbeddingTable:
        """The rows at ``rows`` (all rows if None)."""
        n = len(self)
        return EmbeddingTable(
            self.segment_ids(rows),
            self.node_ids(rows),
            _read_rows(self._position, rows, n),
            _read_rows(self._embedding, rows, n),
        )


def _read_rows(array: zarr.Array, rows: np.ndarray | None, n_rows: int) -> np.ndarray:
    if rows is None or len(rows) == n_rows:
        return array[:]
    if len(rows) == 0:
        return np.zeros((0, *array.shape[1:]), array.dtype)
    first, last = int(rows[0]), int(rows[-1])
    if last - first + 1 == len(rows):  # one run (one segment, say): a slice is cheaper
        return array[first : last + 1]
    # Orthogonal selection decodes only the chunks that hold the rows.
    return array.oindex[rows]


class EmbeddingStore:
    """Node embeddings of one model on one data set, on disk.

    Open one with ``EmbeddingStore.create``, ``EmbeddingStore.open`` or
    ``EmbeddingStore.open_or_create``. The store's **signature** (a JSON-able
    mapping: model hash and config, data paths and voxel sizes, …) is fixed at
    creation and checked whenever the store is opened with one, so embeddings
    of another model or data set are never mixed in.

    Appending never duplicates: rows whose (segment id, node id) the store
    already holds are skipped (the stored row is kept), so an interrupted job
    can simply be run again. Appends are atomic per call, safe against a writer
    crashing mid-append, and safe from many processes at once; the store needs
    a local or shared POSIX file system (directory renames must be atomic).
    Durability against a machine losing power is left to the file system
    (parts are not fsync-ed).

    Examples
    --------
    >>> store = EmbeddingStore.open_or_create("emb.zarr", signature=sig)  # doctest: +SKIP
    >>> todo = store.missing(segment_ids, node_ids)  # doctest: +SKIP
    >>> store.append(segment_ids[todo], node_ids[todo], pos_nm[todo], emb[todo])  # doctest: +SKIP
    >>> store.read([segment_id]).to_frame()  # doctest: +SKIP
    """

    def __init__(self, path: Path, *, dim: int, signature: dict[str, Any], mode: Mode) -> None:
        # Private: the classmethods validate and create; this only holds state.
        self._path = path
        self._dim = dim
        self._signature = signature
        self._mode = mode
        self._parts_cache: dict[str, _Part] = {}
        self._len_cache: tuple[tuple[str, ...], int] | None = None

    # ------------------------------------------------------------------ opening

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        signature: Mapping[str, Any],
        dim: int = 64,
        overwrite: bool = False,
    ) -> EmbeddingStore:
        """Create an empty store at ``path``, open for appending.

        Parameters
        ----------
        signature
            What the embeddings depend on (model hash and config, data identity);
            JSON-able (numpy scalars, arrays, tuples and paths are converted).
        dim
            The embedding dimension.
        overwrite
            Replace an existing embedding store at ``path`` (never anything else).
        """
        root = Path(path).expanduser()
        canonical = _canonical_signature(signature)
        if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if root.exists():
            if not overwrite:
                raise OutputExistsError(f"{root} exists; pass overwrite=True to replace it")
            if root.is_dir() and not any(root.iterdir()):
                root.rmdir()
            else:
                _read_attrs(root)  # refuses anything that is not an embedding store
                shutil.rmtree(root)
        group = zarr.open_group(str(root), mode="w-", zarr_format=3)
        for name in (_PARTS, _STAGING, _TRASH):
            group.create_group(name)
        # Attributes last: a store interrupted while being created is no store.
        group.attrs[_ATTRS_KEY] = {
            "kind": _KIND,
            "format_version": _FORMAT_VERSION,
            "dim": int(dim),
            "signature": canonical,
        }
        return cls(root, dim=int(dim), signature=canonical, mode="a")

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        signature: Mapping[str, Any] | None = None,
        mode: Mode = "r",
    ) -> EmbeddingStore:
        """Open the store at ``path``.

        Parameters
        ----------
        signature
            If given, must equal the store's signature, else ``StoreSignatureError``
            (the store is left untouched).
        mode
            "r" to read, "a" to read and append.
        """
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', got {mode!r}")
        root = Path(path).expanduser()
        attrs = _read_attrs(root)
        stored = attrs["signature"]
        if signature is not None:
            _check_signature(root, stored, _canonical_signature(signature))
        return cls(root, dim=int(attrs["dim"]), signature=stored, mode=mode)

    @classmethod
    def open_or_create(
        cls, path: str | os.PathLike[str], *, signature: Mapping[str, Any], dim: int = 64
    ) -> EmbeddingStore:
        """Open the store at ``path`` for appending, creating it if it does not exist.

        An existing store must have the same ``signature`` and ``dim``.
        """
        root = Path(path).expanduser()
        if not root.exists():
            return cls.create(root, signature=signature, dim=dim)
        store = cls.open(root, signature=signature, mode="a")
        if store.dim != dim:
            raise ShapeMismatchError(f"store {root} holds {store.dim}-d embeddings, not {dim}-d")
        return store

    # --------------------------------------------------------------- properties

    @property
    def path(self) -> Path:
        """Where the store lies."""
        return self._path

    @property
    def dim(self) -> int:
        """The embedding dimension."""
        return self._dim

    @property
    def signature(self) -> dict[str, Any]:
        """The signature the store was created with (a copy)."""
        return json.loads(json.dumps(self._signature))

    @property
    def mode(self) -> Mode:
        """The access mode: "r" (read only) or "a" (read and append)."""
        return self._mode

    @property
    def n_parts(self) -> int:
        """How many committed parts the store holds (``compact`` merges them)."""
        return len(self._part_names())

    def __repr__(self) -> str:
        return f"EmbeddingStore({str(self._path)!r}, dim={self._dim}, mode={self._mode!r})"

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        """The number of distinct (segment id, node id) rows."""
        names = tuple(self._part_names())
        if self._len_cache is None or self._len_cache[0] != names:
            self._len_cache = (names, self._consistent(_count_distinct))
        return self._len_cache[1]

    def segments(self) -> np.ndarray:
        """The ids of the segments with at least one row, ascending (uint64)."""
        held = self._consistent(lambda parts: [part.segments for part in parts])
        return np.unique(np.concatenate([np.zeros(0, np.uint64), *held]))

    def read(self, segment_ids: object = None) -> EmbeddingTable:
        """The rows of ``segment_ids`` (all rows if None), sorted by (segment, node).

        Segments the store does not hold are left out.
        """
        wanted = None
        if segment_ids is not None:
            wanted = np.unique(as_segment_ids(segment_ids, name="segment_ids"))
        return self._consistent(lambda parts: self._gather(parts, wanted))

    def has(self, segment_id: int, node_ids: object = None) -> bool | np.ndarray:
        """Whether the store holds ``segment_id`` (any node), or which ``node_ids`` of it."""
        segment = as_segment_ids(segment_id, name="segment_id")
        if len(segment) != 1:
            raise ValueError(f"segment_id must be one id, got {len(segment)}")
        if node_ids is None:
            held = self._consistent(lambda parts: [part.segments for part in parts])
            return any(np.isin(segment, ids).any() for ids in held)
        nodes = as_node_ids(node_ids, name="node_ids")
        return ~self.missing(np.full(len(nodes), segment[0], np.uint64), nodes)

    def missing(self, segment_ids: object, node_ids: object) -> np.ndarray:
        """Boolean mask over the given nodes: True where the store lacks the row.

        Embed exactly ``node_ids[store.missing(segment_ids, node_ids)]``.
        """
        segments = as_segment_ids(segment_ids, name="segment_ids")
        nodes = as_node_ids(node_ids, name="node_ids")
        if len(segments) != len(nodes):
            raise ShapeMismatchError(f"{len(segments)} segment ids for {len(nodes)} node ids")
        known_segments, known_nodes = self._consistent(
            lambda parts: _keys_of(parts, np.unique(segments))
        )
        return ~pairs_in(segments, nodes, known_segments, known_nodes)

    # ------------------------------------------------------------------ writing

    def append(
        self,
        segment_ids: object,
        node_ids: object,
        positions_nm: object,
        embeddings: object,
    ) -> int:
        """Append rows; returns how many were new and written.

        Rows whose (segment id, node id) the store already holds are skipped, as
        are repeats within the call (the first is kept). All the new rows are
        committed together or, if the call fails or the process dies, none.

        Parameters
        ----------
        segment_ids
            (N,) non-negative integer segment ids (stored as uint64).
        node_ids
            (N,) integer skeleton node ids (stored as int64).
        positions_nm
            (N, 3) node positions in nm, (z, y, x).
        embeddings
            (N, dim) finite embeddings (stored as float32).
        """
        if self._mode != "a":
            raise ValueError(f"store {self._path} is open read-only; open it with mode='a'")
        table = EmbeddingTable(segment_ids, node_ids, positions_nm, embeddings)
        if table.dim != self._dim:
            raise ShapeMismatchError(
                f"embeddings are {table.dim}-d but store {self._path} holds {self._dim}-d"
            )
        if not (np.isfinite(table.embedding).all() and np.isfinite(table.position_nm).all()):
            raise ValueError("embeddings and positions_nm must be finite (no NaN or inf)")
        table = table.take(first_of_each_key(table.segment_id, table.node_id))
        table = table.take(self.missing(table.segment_id, table.node_id))
        if len(table):
            self._commit(self._stage(table))
        return len(table)

    def compact(self, *, rows_per_part: int = 4_000_000) -> None:
        """Merge the committed parts into as few parts as ``rows_per_part`` allows.

        Safe while other processes read or append: the merged parts are committed
        before the old ones are retired, and readers drop the duplicates in
        between. Also removes what crashed writers left in ``staging/`` over a
        day ago. Memory use is about ``rows_per_part`` rows.
        """
        if self._mode != "a":
            raise ValueError(f"store {self._path} is open read-only; open it with mode='a'")
        if rows_per_part < 1:
            raise ValueError(f"rows_per_part must be positive, got {rows_per_part}")
        self._remove_leftovers()
        parts = self._parts()
        if len(parts) < 2:
            return
        groups = _segment_groups(parts, rows_per_part)
        staged = [
            self._stage(self._consistent(lambda current, ids=ids: self._gather(current, ids)))
            for ids in groups
        ]
        for token in staged:
            self._commit(token)
        for part in parts:
            retired = self._path / _TRASH / part.path.name
            try:
                os.rename(part.path, retired)
            except FileNotFoundError:  # another compaction retired it first
                continue
            shutil.rmtree(retired, ignore_errors=True)
        self._parts_cache.clear()

    # ---------------------------------------------------------------- internals

    def _part_names(self) -> list[str]:
        with os.scandir(self._path / _PARTS) as entries:
            return sorted(entry.name for entry in entries if entry.is_dir())

    def _parts(self) -> list[_Part]:
        """The committed parts, oldest first (opened parts are cached: they never change)."""
        names = self._part_names()
        self._parts_cache = {
            name: self._parts_cache.get(name) or _Part(self._path / _PARTS / name) for name in names
        }
        return list(self._parts_cache.values())

    def _consistent(self, read: Callable[[list[_Part]], T]) -> T:
        """``read(parts)`` on a snapshot of the parts that no compaction retired meanwhile.

        Zarr reads a vanished chunk as fill values, not as an error, so a read is
        only trusted if all its parts still exist afterwards: retiring is a rename,
        so a part that exists after the read existed throughout it.
        """
        for _ in range(_READ_RETRIES):
            try:
                parts = self._parts()
                result = read(parts)
            except FileNotFoundError:  # a part retired between listing and opening
                self._parts_cache.clear()
                continue
            if all(part.path.is_dir() for part in parts):
                return result
            self._parts_cache.clear()
        raise RuntimeError(f"embedding store {self._path} kept changing during a read; retry")

    def _gather(self, parts: list[_Part], segment_ids: np.ndarray | None) -> EmbeddingTable:
        pieces = []
        for part in parts:
            rows = None if segment_ids is None else part.rows_of(segment_ids)
            if rows is None or len(rows):
                pieces.append(part.read(rows))
        if len(pieces) == 1:
            return pieces[0]  # a part is already sorted and distinct
        # Pieces in commit order, so the first row of a key is the first committed.
        table = EmbeddingTable.concat(pieces, dim=self._dim)
        return table.take(first_of_each_key(table.segment_id, table.node_id))

    def _stage(self, table: EmbeddingTable) -> str:
        """Write ``table`` (sorted, distinct) as a part under staging/; returns its token."""
        token = uuid.uuid4().hex
        path = self._path / _STAGING / token
        try:
            group = zarr.open_group(str(path), mode="w-", zarr_format=3)
            segments, starts = np.unique(table.segment_id, return_index=True)
            group.create_array("segments", data=segments)
            group.create_array("offsets", data=np.append(starts, len(table)).astype(np.int64))
            chunk_rows = min(len(table), _CHUNK_ROWS)
            shard_rows = _SHARD_ROWS if len(table) > _SHARD_ROWS else None
            for name, data in (
                ("node_id", table.node_id),
                ("position_nm", table.position_nm),
                ("embedding", table.embedding),
            ):
                group.create_array(
                    name,
                    data=data,
                    chunks=(chunk_rows, *data.shape[1:]),
                    shards=None if shard_rows is None else (shard_rows, *data.shape[1:]),
                )
            group.attrs.update({"rows": len(table), "segments": len(segments)})
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        return token

    def _commit(self, token: str) -> None:
        """Publish a staged part: one atomic rename; its name orders parts by commit time."""
        name = f"{time.time_ns():020d}-{token}"
        staged = self._path / _STAGING / token
        try:
            os.rename(staged, self._path / _PARTS / name)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise

    def _remove_leftovers(self) -> None:
        now = time.time()
        for folder, max_age in ((_STAGING, _STALE_STAGING_S), (_TRASH, 0.0)):
            with os.scandir(self._path / folder) as entries:
                old = [e.path for e in entries if e.is_dir() and now - e.stat().st_mtime > max_age]
            for path in old:
                shutil.rmtree(path, ignore_errors=True)


def _count_distinct(parts: list[_Part]) -> int:
    if len(parts) < 2:
        return sum(len(part) for part in parts)
    segments = np.concatenate([part.segment_ids(None) for part in parts])
    nodes = np.concatenate([part.node_ids(None) for part in parts])
    return len(first_of_each_key(segments, nodes))


def _keys_of(parts: list[_Part], segment_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The stored (segment id, node id) pairs of ``segment_ids`` (sorted, distinct)."""
    segments, nodes = [np.zeros(0, np.uint64)], [np.zeros(0, np.int64)]
    for part in parts:
        rows = part.rows_of(segment_ids)
        if len(rows):
            segments.append(part.segment_ids(rows))
            nodes.append(part.node_ids(rows))
    return np.concatenate(segments), np.concatenate(nodes)


def _segment_groups(parts: list[_Part], rows_per_part: int) -> list[np.ndarray]:
    """The parts' segment ids, ascending, cut into runs of about ``rows_per_part`` rows."""
    segments = np.concatenate([part.segments for part in parts])
    counts = np.concatenate([np.diff(part.offsets) for part in parts])
    segments, inverse = np.unique(segments, return_inverse=True)
    rows = np.bincount(inverse, weights=counts, minlength=len(segments))
    group = np.floor_divide(np.cumsum(rows) - rows, rows_per_part).astype(np.int64)
    cuts = np.flatnonzero(np.diff(group)) + 1
    return np.split(segments, cuts)


def _read_attrs(root: Path) -> dict[str, Any]:
    """The store attributes at ``root``; refuses a missing path or anything else."""
    if not root.exists():
        raise VolumeNotFoundError(f"embedding store {root} does not exist")
    try:
        attrs = zarr.open_group(str(root), mode="r").attrs.asdict().get(_ATTRS_KEY)
    except (FileNotFoundError, ValueError, NotADirectoryError) as err:
        raise UnknownFormatError(f"{root} is not an embedding store (not a zarr group)") from err
    if not isinstance(attrs, dict) or attrs.get("kind") != _KIND:
        raise UnknownFormatError(f"{root} is a zarr group but not an embedding store")
    if attrs.get("format_version") != _FORMAT_VERSION:
        raise UnknownFormatError(
            f"embedding store {root} has format version {attrs.get('format_version')}; "
            f"this napari-segclr reads version {_FORMAT_VERSION}"
        )
    return attrs


def _canonical_signature(signature: Mapping[str, Any]) -> dict[str, Any]:
    """``signature`` as plain JSON types (what is stored and compared)."""
    if not isinstance(signature, Mapping):
        raise TypeError(f"signature must be a mapping, got {type(signature).__name__}")

    def plain(value: Any) -> Any:
        if isinstance(value, np.generic | np.ndarray):
            return value.tolist()
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        raise TypeError(f"signature value {value!r} is not JSON-able")

    try:
        text = json.dumps(dict(signature), default=plain, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"signature must be JSON-able: {err}") from err
    return json.loads(text)


def _check_signature(root: Path, stored: dict[str, Any], given: dict[str, Any]) -> None:
    if stored == given:
        return
    keys = sorted(key for key in stored.keys() | given.keys() if stored.get(key) != given.get(key))

    def short(value: Any) -> str:
        text = json.dumps(value, sort_keys=True)
        return text if len(text) <= 60 else text[:57] + "..."

    key = keys[0]
    raise StoreSignatureError(
        f"embedding store {root} was made with another signature: it differs in "
        f"{', '.join(map(repr, keys))} (stored {key}={short(stored.get(key))}, "
        f"given {short(given.get(key))}); use another path or create it anew"
    )
