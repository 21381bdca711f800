"""Embeddings in the released SegCLR format: sharded ZIP archives of per-segment CSVs.

The published SegCLR embeddings (H01 human cortex, MICrONS mouse cortex) are a
folder of ZIP archives named ``<shard>.zip``. Each holds one ``<segment_id>.csv``
per segment, one row per skeleton node and no header::

    node_id,x,y,z,e0,e1,…,e63

A segment lies in shard ``md5(id as bytewidth little-endian bytes)``, the digest
read as a little-endian integer, modulo the number of shards (``shard_of``).
Releases differ in ``n_shards`` and ``bytewidth``: the 2022 H01 and MICrONS v343
releases use 10,000 shards and bytewidth 64; later ones (MICrONS v943) 50,000
shards and bytewidth 8. Coordinates are x, y, z in nm in the ``*_nm_coord*``
releases and in voxels in the older ones (pass ``voxel_size`` to convert);
this package stores positions as (z, y, x) nm.

Folders written here also hold ``sharding.json`` (shard count, bytewidth,
dimension), written last, so they are read back without naming ``n_shards``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from .exceptions import OutputExistsError, UnknownFormatError, VolumeNotFoundError
from .io.volume import as_voxel_size
from .store import EmbeddingStore, EmbeddingTable
from .store.table import as_segment_ids

SHARDING_FILE = "sharding.json"
_FLOAT_FORMAT = "%.9g"  # round-trips float32 exactly; 0.01 nm below 10 mm for positions
_UINT64_LIMIT = 2**64
_IMPORT_BATCH_ROWS = 200_000

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class _Sharding:
    n_shards: int
    bytewidth: int


def shard_of(segment_id: int, n_shards: int, *, bytewidth: int = 8) -> int:
    """The shard that holds ``segment_id`` in a release with ``n_shards`` shards.

    The id is hashed with md5 as ``bytewidth`` little-endian bytes and the
    digest, read as a little-endian integer, is taken modulo ``n_shards``.

    Examples
    --------
    >>> shard_of(864691135591041291, 50_000)  # doctest: +SKIP
    """
    sharding = _as_sharding(n_shards, bytewidth)
    return _shard(_as_id(segment_id), sharding)


def write_sharded_zips(
    source: EmbeddingTable | EmbeddingStore,
    out_dir: str | os.PathLike[str],
    *,
    n_shards: int,
    bytewidth: int = 8,
    overwrite: bool = False,
) -> list[Path]:
    """Write embeddings as sharded ZIPs in the released SegCLR format.

    Positions are written as x, y, z in nm, values with 9 significant digits
    (float32 embeddings round-trip exactly). A store is read one shard at a
    time, so it may be larger than memory.

    Parameters
    ----------
    source
        A table or a store.
    out_dir
        The folder to write ``<shard>.zip`` files (only non-empty shards) and
        ``sharding.json`` into.
    n_shards, bytewidth
        The md5 sharding (see ``shard_of``).
    overwrite
        Replace an existing folder of sharded ZIPs (never any other folder).

    Returns
    -------
    The ZIP files written, by shard.
    """
    sharding = _as_sharding(n_shards, bytewidth)
    out = Path(out_dir).expanduser()
    _prepare_out_dir(out, overwrite=overwrite)
    written = []
    for shard, table in _tables_by_shard(source, sharding):
        path = out / f"{shard}.zip"
        _write_zip(path, table)
        written.append(path)
    meta = {
        "format": "segclr-csv-zip",
        "n_shards": sharding.n_shards,
        "bytewidth": sharding.bytewidth,
        "hash": "md5, little-endian",
        "dim": source.dim,
        "columns": f"node_id,x,y,z,e0..e{source.dim - 1}",
        "position_unit": "nm",
    }
    (out / SHARDING_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return written


def read_sharded_zips(
    path: str | os.PathLike[str],
    *,
    segment_ids: object = None,
    n_shards: int | None = None,
    bytewidth: int | None = None,
    voxel_size: float | Sequence[float] | None = None,
) -> EmbeddingTable:
    """Read embeddings in the released SegCLR format, sorted by (segment, node).

    Parameters
    ----------
    path
        A folder of ``<shard>.zip`` files, or one ZIP file.
    segment_ids
        Read only these segments (absent ones are left out). In a folder only
        their shards are opened, found by the md5 rule, which needs ``n_shards``.
    n_shards, bytewidth
        The release's sharding; default: the folder's ``sharding.json``, else
        unknown (and bytewidth 8). When known, every segment read is checked
        to lie in its md5 shard.
    voxel_size
        For releases with coordinates in voxels: the voxel size in nm (z, y, x)
        that converts them to nm. Default: coordinates are in nm.
    """
    root = _existing(path)
    sharding = _sharding_for(root, n_shards, bytewidth)
    scale = None if voxel_size is None else np.asarray(as_voxel_size(voxel_size, str(root)))
    wanted = (
        None if segment_ids is None else np.unique(as_segment_ids(segment_ids, name="segment_ids"))
    )
    if wanted is not None and root.is_dir():
        if sharding is None:
            raise ValueError(
                f"n_shards is needed to find segments in {root} (it has no {SHARDING_FILE})"
            )
        shards = _shards_of(wanted, sharding)
        files = [root / f"{shard}.zip" for shard in np.unique(shards)]
        for file in files:
            if not file.is_file():
                raise VolumeNotFoundError(
                    f"shard {file} does not exist (n_shards={sharding.n_shards}, "
                    f"bytewidth={sharding.bytewidth}: right for this release?)"
                )
    else:
        files = _zip_files(root)
    tables = [table for _, table in _zip_tables(files, wanted, sharding, scale)]
    dim = tables[0].dim if tables else _stored_dim(root)
    return EmbeddingTable.concat(tables, dim=dim).sorted()


def import_sharded_zips(
    src: str | os.PathLike[str],
    store: EmbeddingStore,
    *,
    n_shards: int | None = None,
    bytewidth: int | None = None,
    voxel_size: float | Sequence[float] | None = None,
    progress: Progress | None = None,
) -> int:
    """Append every embedding of a sharded ZIP release to ``store``, ZIP by ZIP.

    Memory holds one ZIP's rows (small ZIPs are appended together). Nodes the
    store already holds are skipped, so an interrupted import can be run again.
    Arguments as in ``read_sharded_zips``; ``progress(done, total)`` is called
    after each ZIP. Returns the number of rows added.
    """
    root = _existing(src)
    sharding = _sharding_for(root, n_shards, bytewidth)
    scale = None if voxel_size is None else np.asarray(as_voxel_size(voxel_size, str(root)))
    files = _zip_files(root)
    added = 0
    pending: list[EmbeddingTable] = []

    def flush() -> int:
        table = EmbeddingTable.concat(pending, dim=store.dim)
        pending.clear()
        return store.append(table.segment_id, table.node_id, table.position_nm, table.embedding)

    for done, (file, table) in enumerate(_zip_tables(files, None, sharding, scale), start=1):
        if len(table) and table.dim != store.dim:
            raise UnknownFormatError(
                f"{file} holds {table.dim}-d embeddings but store {store.path} holds {store.dim}-d"
            )
        # Small ZIPs are appended together: a store part per ZIP would make many tiny parts.
        pending.append(table)
        if sum(map(len, pending)) >= _IMPORT_BATCH_ROWS or done == len(files):
            added += flush()
        if progress is not None:
            progress(done, len(files))
    return added


# ----------------------------------------------------------------------------- sharding


def _as_sharding(n_shards: object, bytewidth: object) -> _Sharding:
    for name, value in (("n_shards", n_shards), ("bytewidth", bytewidth)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return _Sharding(int(n_shards), int(bytewidth))


def _as_id(segment_id: object) -> int:
    if isinstance(segment_id, bool) or not isinstance(segment_id, int | np.integer):
        raise TypeError(f"segment_id must be an integer, got {segment_id!r}")
    value = int(segment_id)
    if not 0 <= value < _UINT64_LIMIT:
        raise ValueError(f"segment_id must be in [0, 2**64), got {value}")
    return value


def _shard(segment_id: int, sharding: _Sharding) -> int:
    try:
        key = segment_id.to_bytes(sharding.bytewidth, "little")
    except OverflowError:
        raise ValueError(
            f"segment id {segment_id} does not fit in bytewidth={sharding.bytewidth} bytes"
        ) from None
    return int.from_bytes(hashlib.md5(key).digest(), "little") % sharding.n_shards


def _shards_of(segment_ids: np.ndarray, sharding: _Sharding) -> np.ndarray:
    # md5 has no vectorised form; this loops over segments, never over rows.
    return np.array([_shard(int(s), sharding) for s in segment_ids], dtype=np.int64)


def _sharding_for(root: Path, n_shards: int | None, bytewidth: int | None) -> _Sharding | None:
    """The sharding given, else the one in ``sharding.json``, else None (unknown)."""
    meta_path = (root if root.is_dir() else root.parent) / SHARDING_FILE
    stored = _read_meta(meta_path)
    for name, given in (("n_shards", n_shards), ("bytewidth", bytewidth)):
        if given is not None and name in stored and stored[name] != given:
            raise ValueError(f"{name}={given} disagrees with {meta_path} ({name}={stored[name]})")
    n = n_shards if n_shards is not None else stored.get("n_shards")
    width = bytewidth if bytewidth is not None else stored.get("bytewidth", 8)
    return None if n is None else _as_sharding(n, width)


def _read_meta(meta_path: Path) -> dict:
    if not meta_path.is_file():
        return {}
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UnknownFormatError(f"{meta_path} is not valid JSON: {err}") from err
    if not isinstance(meta, dict):
        raise UnknownFormatError(f"{meta_path} does not hold a JSON object")
    return meta


def _stored_dim(root: Path) -> int:
    """The dimension written in ``sharding.json``; 64 (SegCLR's) if there is none."""
    return int(_read_meta((root if root.is_dir() else root.parent) / SHARDING_FILE).get("dim", 64))


# ----------------------------------------------------------------------------- reading


def _existing(path: str | os.PathLike[str]) -> Path:
    root = Path(path).expanduser()
    if not root.exists():
        raise VolumeNotFoundError(f"sharded ZIP embeddings {root} do not exist")
    return root


def _zip_files(root: Path) -> list[Path]:
    """``root`` itself if a file, else the folder's ZIP files, in shard order."""
    if root.is_file():
        return [root]
    files = [p for p in root.iterdir() if p.suffix == ".zip" and p.is_file()]
    if not files:
        raise UnknownFormatError(f"{root} holds no .zip files")
    return sorted(
        files, key=lambda p: (not p.stem.isdigit(), int(p.stem) if p.stem.isdigit() else 0, p.name)
    )


def _zip_tables(
    files: list[Path],
    wanted: np.ndarray | None,
    sharding: _Sharding | None,
    scale: np.ndarray | None,
) -> Iterator[tuple[Path, EmbeddingTable]]:
    """Each ZIP's rows (of ``wanted`` segments, or all), checking shards and duplicates."""
    seen: dict[int, Path] = {}
    for file in files:
        table = _read_zip(file, wanted, scale)
        segments = table.segments()
        if sharding is not None and file.stem.isdigit():
            shards = _shards_of(segments, sharding)
            wrong = np.flatnonzero(shards != int(file.stem))
            if len(wrong):
                raise UnknownFormatError(
                    f"{file}: segment {segments[wrong[0]]} belongs in shard {shards[wrong[0]]} "
                    f"by md5 sharding (n_shards={sharding.n_shards}, "
                    f"bytewidth={sharding.bytewidth}): wrong n_shards or bytewidth?"
                )
        for segment in segments.tolist():
            if segment in seen:
                raise UnknownFormatError(f"segment {segment} is in both {seen[segment]} and {file}")
            seen[segment] = file
        yield file, table


def _read_zip(file: Path, wanted: np.ndarray | None, scale: np.ndarray | None) -> EmbeddingTable:
    """The rows of one ZIP's CSVs (those of ``wanted`` segments if given)."""
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError) as err:
        raise UnknownFormatError(f"{file} is not a readable ZIP file: {err}") from err
    with archive:
        names = [n for n in archive.namelist() if n.endswith(".csv")]
        if not names:
            raise UnknownFormatError(f"{file} holds no <segment_id>.csv files")
        ids = [_segment_of_entry(file, name) for name in names]
        if len(set(ids)) != len(ids):
            twice = next(i for i in ids if ids.count(i) > 1)
            raise UnknownFormatError(f"{file} holds segment {twice} more than once")
        entries = list(zip(ids, names, strict=True))
        if wanted is not None:
            keep = np.isin(np.array(ids, dtype=np.uint64), wanted)
            entries = [entry for entry, k in zip(entries, keep, strict=True) if k]
        return _parse_csvs(file, [(sid, name, archive.read(name)) for sid, name in entries], scale)


def _segment_of_entry(file: Path, name: str) -> int:
    stem = PurePosixPath(name).name.removesuffix(".csv")
    if not stem.isdigit() or int(stem) >= _UINT64_LIMIT:
        raise UnknownFormatError(f"{file}: entry {name!r} is not named <segment_id>.csv")
    return int(stem)


def _parse_csvs(
    file: Path, entries: list[tuple[int, str, bytes]], scale: np.ndarray | None
) -> EmbeddingTable:
    """Parse the CSVs of one ZIP with a single pandas call (per-file calls are slow)."""
    blocks, counts, segment_ids = [], [], []
    n_columns = None
    for segment_id, name, data in entries:
        data = _strip_header(file, name, data)
        if data and not data.endswith(b"\n"):
            data += b"\n"
        rows = data.count(b"\n")
        if rows == 0:
            continue
        if n_columns is None:
            n_columns = data[: data.index(b"\n")].count(b",") + 1
            if n_columns < 5:
                raise UnknownFormatError(
                    f"{file}:{name} has {n_columns} columns, expected node_id, x, y, z, e0, …"
                )
        if data.count(b",") != rows * (n_columns - 1):
            raise UnknownFormatError(
                f"{file}:{name}: not every row has {n_columns} columns "
                f"(node_id, x, y, z and {n_columns - 4} embedding values, as the other CSVs)"
            )
        blocks.append(data)
        counts.append(rows)
        segment_ids.append(segment_id)
    if n_columns is None:
        return EmbeddingTable.empty(_stored_dim(file))
    dtypes = {0: np.int64} | {i: np.float64 for i in range(1, n_columns)}
    try:
        frame = pd.read_csv(io.BytesIO(b"".join(blocks)), header=None, dtype=dtypes)
    except (ValueError, pd.errors.ParserError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UnknownFormatError(f"{file}: CSV values are not all numbers ({message})") from err
    values = frame.to_numpy(dtype=np.float64)[:, 1:]
    if len(frame) != sum(counts) or not np.isfinite(values).all():
        raise UnknownFormatError(f"{file}: a CSV has blank lines or empty or non-finite values")
    xyz = values[:, :3]
    position = xyz[:, ::-1] if scale is None else xyz[:, ::-1] * scale
    return EmbeddingTable(
        np.repeat(np.array(segment_ids, dtype=np.uint64), counts),
        frame[0].to_numpy(),
        position,
        values[:, 3:],
    )


def _strip_header(file: Path, name: str, data: bytes) -> bytes:
    """``data`` without its header line, if it has one (the release has none)."""
    if not data[:1].isalpha():
        return data
    header, _, body = data.partition(b"\n")
    columns = [c.strip() for c in header.decode("utf-8", "replace").split(",")]
    expected = ["node_id", "x", "y", "z"] + [f"e{i}" for i in range(len(columns) - 4)]
    if columns != expected or len(columns) < 5:
        raise UnknownFormatError(
            f"{file}:{name}: header {','.join(columns[:6])}… is not node_id,x,y,z,e0,e1,…"
        )
    return body


# ----------------------------------------------------------------------------- writing


def _prepare_out_dir(out: Path, *, overwrite: bool) -> None:
    if out.exists():
        if not out.is_dir():
            raise OutputExistsError(f"{out} exists and is not a folder")
        entries = list(out.iterdir())
        if entries and not overwrite:
            raise OutputExistsError(f"{out} is not empty; pass overwrite=True to replace it")
        ours = all(p.name == SHARDING_FILE or p.suffix in (".zip", ".partial") for p in entries)
        if entries and not ours:
            raise OutputExistsError(
                f"{out} holds files other than sharded ZIPs; refusing to overwrite it"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True)


def _tables_by_shard(
    source: EmbeddingTable | EmbeddingStore, sharding: _Sharding
) -> Iterator[tuple[int, EmbeddingTable]]:
    """(shard, its rows sorted by segment and node), for each non-empty shard in order."""
    if isinstance(source, EmbeddingStore):
        segments = source.segments()
        shards = _shards_of(segments, sharding)
        for shard in np.unique(shards):
            yield int(shard), source.read(segments[shards == shard])
        return
    table = source.sorted()
    segments, inverse = np.unique(table.segment_id, return_inverse=True)
    row_shards = _shards_of(segments, sharding)[inverse]
    order = np.argsort(row_shards, kind="stable")  # stable: rows stay sorted within a shard
    shards, starts = np.unique(row_shards[order], return_index=True)
    for shard, rows in zip(shards, np.split(order, starts[1:]), strict=True):
        yield int(shard), table.take(rows)


def _write_zip(path: Path, table: EmbeddingTable) -> None:
    """One ZIP of per-segment CSVs, written to a temporary name then renamed."""
    z, y, x = table.position_nm.T
    frame = pd.concat(
        [
            pd.DataFrame({"node_id": table.node_id, "x": x, "y": y, "z": z}),
            pd.DataFrame(table.embedding),
        ],
        axis=1,
    )
    # One formatting call for the whole shard, then cut into segments by lines.
    lines = frame.to_csv(header=False, index=False, float_format=_FLOAT_FORMAT, lineterminator="\n")
    lines = lines.split("\n")
    segments, starts = np.unique(table.segment_id, return_index=True)
    stops = np.append(starts[1:], len(table))
    partial = path.with_name(f".{path.name}.partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for segment, start, stop in zip(segments.tolist(), starts, stops, strict=True):
            archive.writestr(f"{segment}.csv", "\n".join(lines[start:stop]) + "\n")
    os.replace(partial, path)
