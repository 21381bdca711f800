"""Round trips: volumes written by each format's own library reopen with their metadata."""

from __future__ import annotations

import functools
import json
import pickle
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import h5py
import numpy as np
import pytest
import tensorstore as ts
import tifffile
import zarr

from napari_segclr.io import open_volume

BOX = (slice(2, 9), slice(3, 15), slice(1, 20))


def _check(volume, data: np.ndarray) -> None:
    assert volume.shape == data.shape
    assert volume.dtype == data.dtype
    np.testing.assert_array_equal(volume.read(BOX), data[BOX])


# --- TIFF --------------------------------------------------------------------


def test_tiff_imagej_voxel_size(tmp_path, ramp):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(
        path,
        ramp,
        imagej=True,
        resolution=(1 / 0.004, 1 / 0.005),  # pixels per µm in x, y
        metadata={"axes": "ZYX", "spacing": 0.03, "unit": "um"},
    )
    volume = open_volume(path)
    assert volume.voxel_size == pytest.approx((30.0, 5.0, 4.0))
    _check(volume, ramp)


def test_tiff_ome_voxel_size_with_units(tmp_path, ramp):
    path = tmp_path / "stack.ome.tif"
    meta = {"axes": "ZYX", "PhysicalSizeZ": 0.04, "PhysicalSizeZUnit": "µm"}
    meta |= {"PhysicalSizeY": 8.0, "PhysicalSizeYUnit": "nm", "PhysicalSizeX": 8.0}
    meta["PhysicalSizeXUnit"] = "nm"
    tifffile.imwrite(path, ramp, ome=True, metadata=meta)
    assert open_volume(path).voxel_size == pytest.approx((40.0, 8.0, 8.0))


def test_tiff_zlib_pages_given_voxel_size_wins(tmp_path, ramp):
    path = tmp_path / "stack.tiff"
    tifffile.imwrite(
        path, ramp, imagej=True, compression="zlib", resolution=(250, 250),
        metadata={"axes": "ZYX", "spacing": 0.01, "unit": "um"},
    )  # fmt: skip
    volume = open_volume(path, voxel_size=(12, 6, 6))
    assert volume.voxel_size == (12.0, 6.0, 6.0)
    assert volume.kind == "labels"  # uint16 ids
    _check(volume, ramp)


# --- HDF5 --------------------------------------------------------------------


def test_hdf5_resolution_and_offset_attrs(tmp_path, ramp):
    path = tmp_path / "volume.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("volumes/raw", data=ramp, chunks=(4, 8, 8))
        ds.attrs["resolution"] = (40.0, 4.0, 4.0)
        ds.attrs["offset"] = (400.0, 40.0, 0.0)
        f.create_dataset("volumes/other", data=ramp[:2])
    for spec in (f"{path}:/volumes/raw", f"{path}:volumes/raw", f"{path}/volumes/raw"):
        volume = open_volume(spec)
        assert volume.voxel_size == (40.0, 4.0, 4.0)
        assert volume.offset == (400.0, 40.0, 0.0)
        _check(volume, ramp)


def test_hdf5_element_size_um_and_single_dataset(tmp_path, ramp):
    path = tmp_path / "volume.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("exported_data", data=ramp).attrs["element_size_um"] = (0.03, 0.008, 0.008)
    volume = open_volume(path)  # the only dataset: no need to name it
    assert volume.voxel_size == pytest.approx((30.0, 8.0, 8.0))
    _check(volume, ramp)


def test_hdf5_channel_axis_of_length_one_is_dropped(tmp_path, ramp):
    path = tmp_path / "ilastik.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=ramp[..., None])  # (z, y, x, c=1)
    volume = open_volume(f"{path}:/data", voxel_size=5)
    _check(volume, ramp)


# --- Zarr --------------------------------------------------------------------


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_array_with_resolution(tmp_path, ramp, zarr_format):
    store = tmp_path / "store.zarr"
    group = zarr.open_group(store, mode="w", zarr_format=zarr_format)
    array = group.create_array("volumes/raw", data=ramp, chunks=(4, 8, 8))
    array.attrs.update(resolution=[8, 4, 4], offset=[16, 0, 0])
    for spec in (f"{store}/volumes/raw", f"{store}:volumes/raw", f"{store}:/volumes/raw"):
        volume = open_volume(spec)
        assert volume.voxel_size == (8.0, 4.0, 4.0)
        assert volume.offset == (16.0, 0.0, 0.0)
        _check(volume, ramp)
    assert open_volume(store).shape == ramp.shape  # the only array in the store


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_without_metadata_takes_given_voxel_size(tmp_path, ramp, zarr_format):
    store = tmp_path / "plain.zarr"
    zarr.create_array(store, data=ramp, chunks=(6, 8, 10), zarr_format=zarr_format)
    volume = open_volume(store, voxel_size=7)
    assert volume.voxel_size == (7.0, 7.0, 7.0)
    _check(volume, ramp)


def _ome_04_image(path: Path, ramp: np.ndarray) -> None:
    """An NGFF 0.4 image as other tools write it: (t, c, z, y, x), µm, two levels."""
    group = zarr.open_group(path, mode="w", zarr_format=2)
    levels = [ramp[None, None], ramp[None, None, ::2, ::2, ::2]]
    for i, data in enumerate(levels):
        group.create_array(str(i), data=data, chunks=(1, 1, 4, 8, 8))
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}]
    axes += [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"]
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": axes,
            "datasets": [
                {
                    "path": str(i),
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [1, 1, 0.04 * f, 0.008 * f, 0.008 * f]},
                        {"type": "translation", "translation": [0, 0, 0.02 * (f - 1), 0, 0]},
                    ],
                }
                for i, f in enumerate((1, 2))
            ],
            "coordinateTransformations": [
                {"type": "translation", "translation": [0, 0, 1.0, 0.5, 0.25]}
            ],
        }
    ]


def test_ome_zarr_04_multiscale_units_and_offsets(tmp_path, ramp):
    path = tmp_path / "image.ome.zarr"
    _ome_04_image(path, ramp)
    volume = open_volume(path)
    assert volume.kind == "labels"  # uint16, no image-label metadata: from the dtype
    assert len(volume.levels) == 2
    assert volume.voxel_size == pytest.approx((40.0, 8.0, 8.0))
    assert volume.offset == pytest.approx((1000.0, 500.0, 250.0))
    assert volume.level_voxel_sizes[1] == pytest.approx((80.0, 16.0, 16.0))
    assert volume.level_offsets[1] == pytest.approx((1020.0, 500.0, 250.0))
    assert volume.levels[1].shape == (6, 8, 10)
    np.testing.assert_array_equal(
        volume.levels[1][0:3, 1:4, 2:5], ramp[::2, ::2, ::2][0:3, 1:4, 2:5]
    )
    _check(volume, ramp)


def test_ome_zarr_level_path_keeps_its_placement(tmp_path, ramp):
    path = tmp_path / "image.ome.zarr"
    _ome_04_image(path, ramp)
    for spec in (f"{path}/1", f"{path}:1"):
        level = open_volume(spec)
        assert len(level.levels) == 1
        assert level.voxel_size == pytest.approx((80.0, 16.0, 16.0))
        assert level.offset == pytest.approx((1020.0, 500.0, 250.0))
        np.testing.assert_array_equal(
            level.read((slice(0, 6), slice(0, 8), slice(0, 10))), ramp[::2, ::2, ::2]
        )


def test_ome_zarr_given_voxel_size_rescales_levels(tmp_path, ramp):
    path = tmp_path / "image.ome.zarr"
    _ome_04_image(path, ramp)
    volume = open_volume(path, voxel_size=(20, 4, 4), offset=(0, 0, 0))
    assert volume.voxel_size == (20.0, 4.0, 4.0)
    assert volume.level_voxel_sizes[1] == pytest.approx((40.0, 8.0, 8.0))
    assert volume.offset == (0.0, 0.0, 0.0)
    assert volume.level_offsets[1] == pytest.approx((10.0, 0.0, 0.0))


# --- N5 ----------------------------------------------------------------------


def _write_n5(path: Path, data: np.ndarray, attrs: dict) -> None:
    """N5 as other tools lay it out: axes listed x first, resolution in (x, y, z)."""
    spec = {
        "driver": "n5",
        "kvstore": path.as_uri() + "/",
        "metadata": {
            "dimensions": list(data.shape[::-1]),
            "blockSize": [8, 8, 4],
            "dataType": str(data.dtype),
            "compression": {"type": "gzip"},
        },
    }
    ts.open(spec, create=True).result().T.write(data).result()
    meta = json.loads((path / "attributes.json").read_text())
    (path / "attributes.json").write_text(json.dumps(meta | attrs))


@pytest.mark.parametrize(
    ("attrs", "voxel_size"),
    [
        ({"pixelResolution": {"dimensions": [0.004, 0.005, 0.04], "unit": "um"}}, (40, 5, 4)),
        ({"resolution": [4, 5, 40]}, (40, 5, 4)),
    ],
)
def test_n5_dataset_resolution_attrs(tmp_path, ramp, attrs, voxel_size):
    container = tmp_path / "container.n5"
    container.mkdir()
    (container / "attributes.json").write_text('{"n5": "2.5.1"}')
    _write_n5(container / "volumes" / "raw", ramp, attrs)
    for spec in (f"{container}/volumes/raw", f"{container}:volumes/raw"):
        volume = open_volume(spec)
        assert volume.voxel_size == pytest.approx(voxel_size)
        _check(volume, ramp)
    assert open_volume(container).shape == ramp.shape  # the only dataset


# --- neuroglancer precomputed -------------------------------------------------


def _write_precomputed(root: Path, data: np.ndarray, kind: str = "image") -> None:
    """Two scales, 4×4×8 nm and 8×8×16 nm (x, y, z), with voxel offsets."""
    url = root.as_uri() + "/"
    dtype = str(data.dtype)
    scales = [([4, 4, 8], [10, 20, 30], data), ([8, 8, 16], [5, 10, 15], data[::2, ::2, ::2])]
    for i, (resolution, voxel_offset, values) in enumerate(scales):
        spec = {
            "driver": "neuroglancer_precomputed",
            "kvstore": url,
            "scale_metadata": {
                "resolution": resolution,
                "voxel_offset": voxel_offset,
                "size": list(values.shape[::-1]),
                "chunk_size": [8, 8, 4],
                "encoding": "raw",
            },
        }
        if i == 0:
            spec["multiscale_metadata"] = {"type": kind, "data_type": dtype, "num_channels": 1}
        store = ts.open(spec, create=True).result()
        store[ts.d["channel"][0]].T.write(values).result()


def _check_precomputed(volume, ramp: np.ndarray) -> None:
    assert volume.voxel_size == (8.0, 4.0, 4.0)
    assert volume.offset == (240.0, 80.0, 40.0)  # voxel_offset × resolution
    assert len(volume.levels) == 2
    assert volume.level_voxel_sizes[1] == (16.0, 8.0, 8.0)
    # Coarse voxels start where fine ones do: lower faces at offset − voxel/2.
    lo0 = np.subtract(volume.level_offsets[0], np.divide(volume.level_voxel_sizes[0], 2))
    lo1 = np.subtract(volume.level_offsets[1], np.divide(volume.level_voxel_sizes[1], 2))
    np.testing.assert_allclose(lo0, lo1)
    np.testing.assert_array_equal(volume.levels[1][0:6, 0:8, 0:10], ramp[::2, ::2, ::2])
    _check(volume, ramp)


def test_precomputed_local_directory_and_file_url(tmp_path, ramp):
    root = tmp_path / "vol"
    _write_precomputed(root, ramp)
    for spec in (str(root), f"precomputed://{root.as_uri()}"):
        volume = open_volume(spec)
        assert volume.kind == "image"  # from the info file, although uint16
        _check_precomputed(volume, ramp)


def test_precomputed_scale_key_picks_the_scale(tmp_path, ramp):
    root = tmp_path / "vol"
    _write_precomputed(root, ramp.astype(np.uint64), kind="segmentation")
    for spec in (f"{root}:8_8_16", f"precomputed://{root.as_uri()}:8_8_16", str(root / "8_8_16")):
        volume = open_volume(spec)
        assert volume.kind == "labels"
        assert volume.shape == (6, 8, 10)
        assert volume.voxel_size == (16.0, 8.0, 8.0)
        assert volume.offset == (240.0, 80.0, 40.0)


@pytest.fixture
def http_root(tmp_path):
    """``tmp_path`` served over HTTP on localhost, as a remote store would be."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=tmp_path))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_precomputed_over_http(tmp_path, ramp, http_root):
    _write_precomputed(tmp_path / "vol", ramp)
    _check_precomputed(open_volume(f"precomputed://{http_root}/vol"), ramp)
    assert open_volume(f"precomputed://{http_root}/vol:8_8_16").shape == (6, 8, 10)


# --- every backend --------------------------------------------------------------


def test_volumes_pickle_and_read_after_unpickling(tmp_path, ramp):
    """Worker processes (data loaders, Dask) get volumes by pickling; files reopen there."""
    tifffile.imwrite(tmp_path / "a.tif", ramp)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["raw"] = ramp
    zarr.create_array(tmp_path / "a.zarr", data=ramp, chunks=(4, 8, 8))
    _write_n5(tmp_path / "a.n5", ramp, {})
    _write_precomputed(tmp_path / "vol", ramp)
    for name in ("a.tif", "a.h5:/raw", "a.zarr", "a.n5", "vol"):
        volume = open_volume(
            tmp_path / name if ":" not in name else f"{tmp_path}/{name}", voxel_size=1
        )
        clone = pickle.loads(pickle.dumps(volume))
        np.testing.assert_array_equal(clone.read(BOX), ramp[BOX])
