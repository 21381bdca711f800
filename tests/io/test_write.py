"""Writing volumes as OME-Zarr, chunk by chunk, and reopening them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from napari_segclr.exceptions import OutputExistsError
from napari_segclr.io import Volume, open_volume, write_ome_zarr


class Rendered:
    """A volume computed on request (like a rendered view); records each request's size."""

    def __init__(self, shape: tuple[int, int, int], step: int = 1) -> None:
        self.shape = shape
        self.dtype = np.dtype(np.uint32)
        self.step = step
        self.requests: list[int] = []

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        z, y, x = (np.arange(s.start, s.stop) * self.step for s in key)
        self.requests.append(z.size * y.size * x.size)
        return (z[:, None, None] * 10000 + y[None, :, None] * 100 + x[None, None, :]).astype(
            np.uint32
        )

    def full(self) -> np.ndarray:
        return self[tuple(slice(0, n) for n in self.shape)]


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_multiscale_round_trip_keeps_placement_and_values(tmp_path, version):
    fine, coarse = Rendered((20, 30, 36)), Rendered((10, 15, 18), step=2)
    volume = Volume(
        fine,
        voxel_size=(40, 8, 8),
        offset=(1000, -24, 8),
        kind="labels",
        source="render",
        levels=(fine, coarse),
        level_voxel_sizes=((40, 8, 8), (80, 16, 16)),
    )
    calls: list[tuple[int, int]] = []
    path = tmp_path / "render.ome.zarr"
    write_ome_zarr(
        volume, path, chunks=(8, 16, 16), ngff_version=version, progress=lambda *a: calls.append(a)
    )
    # Never the whole volume at once: at most one chunk per request.
    assert max(fine.requests + coarse.requests) <= 8 * 16 * 16
    assert calls[-1] == (len(calls), len(calls)) == (3 * 2 * 3 + 2 * 1 * 2,) * 2
    back = open_volume(path)
    assert back.kind == "labels"  # from the image-label metadata
    assert back.voxel_size == (40.0, 8.0, 8.0)
    assert back.offset == (1000.0, -24.0, 8.0)
    assert back.level_voxel_sizes == volume.level_voxel_sizes
    np.testing.assert_allclose(back.level_offsets, volume.level_offsets)
    np.testing.assert_array_equal(
        back.read((slice(0, 20), slice(0, 30), slice(0, 36))), fine.full()
    )
    np.testing.assert_array_equal(back.levels[1][0:10, 0:15, 0:18], coarse.full())


def test_written_metadata_follows_ngff(tmp_path):
    volume = Volume(np.zeros((4, 5, 6), np.uint8), voxel_size=(30, 4, 4), source="em")
    write_ome_zarr(volume, tmp_path / "v05.zarr")
    write_ome_zarr(volume, tmp_path / "v04.zarr", ngff_version="0.4")
    ome = json.loads((tmp_path / "v05.zarr" / "zarr.json").read_text())["attributes"]["ome"]
    assert ome["version"] == "0.5"
    (multiscale,) = ome["multiscales"]
    assert [a["unit"] for a in multiscale["axes"]] == ["nanometer"] * 3
    assert multiscale["datasets"][0]["coordinateTransformations"][0]["scale"] == [30, 4, 4]
    array = json.loads((tmp_path / "v05.zarr" / "0" / "zarr.json").read_text())
    assert array["dimension_names"] == ["z", "y", "x"]
    attrs = json.loads((tmp_path / "v04.zarr" / ".zattrs").read_text())
    assert attrs["multiscales"][0]["version"] == "0.4"
    assert (
        json.loads((tmp_path / "v04.zarr" / "0" / ".zarray").read_text())["dimension_separator"]
        == "/"
    )
    assert open_volume(tmp_path / "v04.zarr").kind == "image"


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    volume = Volume(np.ones((4, 4, 4), np.uint8), voxel_size=8, source="em")
    path = tmp_path / "out.ome.zarr"
    write_ome_zarr(volume, path)
    with pytest.raises(OutputExistsError, match=r"out\.ome\.zarr.*overwrite=True"):
        write_ome_zarr(volume, path)
    write_ome_zarr(
        Volume(np.full((2, 2, 2), 7, np.uint8), voxel_size=4, source="em"), path, overwrite=True
    )
    back = open_volume(path)
    assert back.shape == (2, 2, 2) and back.voxel_size == (4.0, 4.0, 4.0)


def test_overwrite_never_deletes_a_non_zarr_folder_or_the_input(tmp_path):
    volume = Volume(np.ones((4, 4, 4), np.uint8), voxel_size=8, source="em")
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not a Zarr store"):
        write_ome_zarr(volume, folder, overwrite=True)
    assert (folder / "keep.txt").read_text() == "mine"

    source = tmp_path / "in.zarr"
    zarr.create_array(source, data=np.ones((4, 4, 4), np.uint8))
    opened = open_volume(source, voxel_size=8)
    for target in (source, tmp_path, source / "inside.zarr"):
        with pytest.raises(OutputExistsError, match="input"):
            write_ome_zarr(opened, target, overwrite=True)
    np.testing.assert_array_equal(open_volume(source, voxel_size=8).read((slice(0, 4),) * 3), 1)


def test_bad_chunks_are_refused(tmp_path):
    volume = Volume(np.ones((4, 4, 4), np.uint8), voxel_size=8, source="em")
    with pytest.raises(ValueError, match="chunks"):
        write_ome_zarr(volume, tmp_path / "out.zarr", chunks=(0, 8, 8))
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_written_store_validates_against_the_ngff_models(tmp_path, version):
    """An independent reading of the spec (the ome-zarr-models package), where installed."""
    models = pytest.importorskip(f"ome_zarr_models.v{version.replace('.', '')}.image_label")
    fine = np.zeros((8, 8, 8), np.uint32)
    volume = Volume(
        fine,
        voxel_size=(40, 8, 8),
        kind="labels",
        source="cells",
        levels=(fine, fine[::2, ::2, ::2]),
        level_voxel_sizes=((40, 8, 8), (80, 16, 16)),
    )
    write_ome_zarr(volume, tmp_path / "cells.zarr", ngff_version=version)
    # Raises a validation error on a store that breaks the spec.
    models.ImageLabel.from_zarr(zarr.open_group(tmp_path / "cells.zarr", mode="r"))


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_labels_written_beside_the_image_in_lockstep(tmp_path, version):
    order: list[tuple[str, tuple[int, ...]]] = []

    class Logged(Rendered):
        def __init__(self, name: str) -> None:
            super().__init__((20, 30, 36))
            self.name = name

        def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
            order.append((self.name, tuple(k.start for k in key)))
            return super().__getitem__(key)

    em = Volume(Logged("em"), voxel_size=(40, 8, 8), offset=(80, 0, 16))
    seg = Volume(Logged("seg"), voxel_size=(40, 8, 8), offset=(80, 0, 16), kind="labels")
    out = tmp_path / "scene.ome.zarr"
    write_ome_zarr(em, out, labels={"cells": seg}, chunks=(8, 16, 16), ngff_version=version)
    # each box is asked of the image and then at once of its labels
    assert order[0::2] == [("em", corner) for _, corner in order[1::2]]
    assert {name for name, _ in order[1::2]} == {"seg"}
    back = open_volume(out / "labels" / "cells")
    assert back.kind == "labels"
    assert back.voxel_size == (40, 8, 8) and back.offset == (80, 0, 16)
    np.testing.assert_array_equal(
        back.read([slice(0, 20), slice(0, 30), slice(0, 36)]), seg.array.full()
    )
