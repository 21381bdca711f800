"""A crop read touches only the storage it needs, in every format."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import tensorstore as ts
import tifffile
import zarr
from zarr.storage import LocalStore

from napari_segclr.io import open_volume

SHAPE = (48, 96, 96)  # 0.9 MB of uint16; chunks of 16³ are 8 kB, about 1 % of it
CHUNK = (16, 16, 16)


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*"))


# Each writer stores ``data`` under ``root`` and returns (spec to open, file or folder).


def _tiff(root: Path, data: np.ndarray) -> tuple[str, Path]:
    tifffile.imwrite(root / "v.tif", data, compression="zlib")
    return str(root / "v.tif"), root / "v.tif"


def _hdf5(root: Path, data: np.ndarray) -> tuple[str, Path]:
    with h5py.File(root / "v.h5", "w") as f:
        f.create_dataset("raw", data=data, chunks=CHUNK)
    return f"{root / 'v.h5'}:/raw", root / "v.h5"


def _zarr(zarr_format: int):
    def write(root: Path, data: np.ndarray) -> tuple[str, Path]:
        zarr.create_array(root / "v.zarr", data=data, chunks=CHUNK, zarr_format=zarr_format)
        return str(root / "v.zarr"), root / "v.zarr"

    return write


def _n5(root: Path, data: np.ndarray) -> tuple[str, Path]:
    meta = {"dimensions": list(data.shape[::-1]), "blockSize": list(CHUNK)}
    meta |= {"dataType": "uint16", "compression": {"type": "raw"}}
    spec = {"driver": "n5", "kvstore": (root / "v.n5").as_uri() + "/", "metadata": meta}
    ts.open(spec, create=True).result().T.write(data).result()
    return str(root / "v.n5"), root / "v.n5"


def _precomputed(root: Path, data: np.ndarray) -> tuple[str, Path]:
    spec = {
        "driver": "neuroglancer_precomputed",
        "kvstore": (root / "vol").as_uri() + "/",
        "multiscale_metadata": {"type": "image", "data_type": "uint16", "num_channels": 1},
        "scale_metadata": {
            "resolution": [8, 8, 8],
            "size": list(data.shape[::-1]),
            "chunk_size": list(CHUNK),
            "encoding": "raw",
        },
    }
    ts.open(spec, create=True).result()[ts.d["channel"][0]].T.write(data).result()
    return str(root / "vol"), root / "vol"


WRITERS = {
    "tiff": _tiff,
    "hdf5": _hdf5,
    "zarr2": _zarr(2),
    "zarr3": _zarr(3),
    "n5": _n5,
    "precomputed": _precomputed,
}


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_crop_reads_a_small_fraction_of_the_store(tmp_path, bytes_read, fmt):
    data = np.random.default_rng(0).integers(0, 60000, SHAPE, dtype=np.uint16)  # incompressible
    spec, store = WRITERS[fmt](tmp_path, data)
    volume = open_volume(spec, voxel_size=8)
    volume.read((slice(0, 1), slice(0, 2), slice(0, 2)))  # warm up: imports, codecs, metadata
    box = (slice(17, 18), slice(33, 40), slice(50, 60))  # one plane of one chunk (one TIFF page)
    before = bytes_read()
    crop = volume.read(box)
    spent = bytes_read() - before
    np.testing.assert_array_equal(crop, data[box])
    whole = _size(store)
    assert 0 < spent < 0.05 * whole, f"{fmt}: read {spent} of {whole} bytes"


def test_zarr_crop_fetches_only_its_chunks(tmp_path, monkeypatch):
    """Counted at the store: 2 × 2 × 1 chunks of a 3 × 6 × 6 grid."""
    data = np.arange(np.prod(SHAPE), dtype=np.uint32).reshape(SHAPE)
    zarr.create_array(tmp_path / "v.zarr", data=data, chunks=CHUNK, zarr_format=3)
    volume = open_volume(tmp_path / "v.zarr", voxel_size=8)
    fetched: list[str] = []
    original = LocalStore.get

    async def counting_get(self, key, *args, **kwargs):
        fetched.append(key)
        return await original(self, key, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "get", counting_get)
    crop = volume.read((slice(20, 30), slice(10, 40), slice(40, 48)))
    np.testing.assert_array_equal(crop, data[20:30, 10:40, 40:48])
    chunks = {k for k in fetched if k.startswith("c/")}
    assert chunks == {f"c/1/{y}/2" for y in (0, 1, 2)}


def test_opening_reads_metadata_only(tmp_path, bytes_read):
    """A 0.9 MB store costs a few kB to open."""
    data = np.random.default_rng(1).integers(0, 60000, SHAPE, dtype=np.uint16)
    spec, store = _zarr(3)(tmp_path, data)
    open_volume(spec, voxel_size=8)  # warm up: imports
    before = bytes_read()
    volume = open_volume(spec, voxel_size=8)
    assert volume.shape == SHAPE
    assert bytes_read() - before < 0.02 * _size(store)
