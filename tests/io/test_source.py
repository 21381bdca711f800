"""Volume specs: files, datasets inside containers, and precomputed URLs."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from napari_segclr.exceptions import VolumeNotFoundError
from napari_segclr.io.source import parse_source


def test_container_and_inner_path(tmp_path):
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["g/raw"] = np.zeros((1, 1, 1))
    (tmp_path / "s.zarr" / "raw").mkdir(parents=True)
    h5 = str(tmp_path / "v.h5")
    assert parse_source(f"{h5}:/g/raw").location == h5
    assert parse_source(f"{h5}:/g/raw").inner == "g/raw"
    assert parse_source(f"{h5}/g/raw").inner == "g/raw"
    assert parse_source(f"{tmp_path}/s.zarr:raw").inner == "raw"
    assert parse_source(f"{tmp_path}/s.zarr/raw").inner == ""  # a real folder: opened as is
    assert parse_source(f"{tmp_path}/s.zarr/missing").location == str(tmp_path / "s.zarr")


def test_precomputed_urls(tmp_path):
    (tmp_path / "vol").mkdir()
    local = parse_source(f"precomputed://{(tmp_path / 'vol').as_uri()}:8_8_8")
    assert (local.location, local.inner, local.is_url) == (str(tmp_path / "vol"), "8_8_8", False)
    remote = parse_source("precomputed://gs://bucket/em/raw:s1")
    assert (remote.location, remote.inner, remote.is_url) == ("gs://bucket/em/raw/", "s1", True)
    port = parse_source("precomputed://http://localhost:8080/vol")
    assert (port.location, port.inner) == ("http://localhost:8080/vol/", "")


def test_display_names(tmp_path):
    assert parse_source("precomputed://gs://bucket/em/raw").name == "raw"
    (tmp_path / "cells.ome.zarr").mkdir()
    assert parse_source(tmp_path / "cells.ome.zarr").name == "cells"


def test_missing_names_the_spec(tmp_path):
    with pytest.raises(VolumeNotFoundError, match=r"nope\.h5:/raw"):
        parse_source(f"{tmp_path}/nope.h5:/raw")
