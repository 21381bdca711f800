"""`napari-segclr embed` on a Dask scheduler or local workers stores what one process does."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from distributed import Client, LocalCluster

from napari_segclr.cli import main
from napari_segclr.model import SegclrModel, get_preset, save_checkpoint
from napari_segclr.store import EmbeddingStore
from napari_segclr.synthetic import Neuropil, NeuropilConfig, render_all

VOXEL = ("128", "128", "128")


@pytest.fixture(scope="module")
def argv(tmp_path_factory) -> list[str]:
    """`embed` of the largest segments of a synthetic neuropil in TIFF files, on the CPU."""
    folder = tmp_path_factory.mktemp("data")
    crop = render_all(Neuropil(NeuropilConfig(shape=(16, 32, 32), voxel_size=128, seed=1)))
    tifffile.imwrite(folder / "em.tif", crop.em)
    tifffile.imwrite(folder / "seg.tif", crop.segmentation)
    ids, counts = np.unique(crop.segmentation[crop.segmentation > 0], return_counts=True)
    largest = ids[np.argsort(counts)[::-1][:6]]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        save_checkpoint(folder / "tiny.pt", SegclrModel(get_preset("tiny")), extra={})
    return [
        "embed",
        "--em",
        str(folder / "em.tif"),
        "--seg",
        str(folder / "seg.tif"),
        "--em-voxel-size",
        *VOXEL,
        "--seg-voxel-size",
        *VOXEL,
        "--model",
        str(folder / "tiny.pt"),
        "--segments",
        *map(str, largest),
        "--spacing-nm",
        "2000",
        "--batch-size",
        "8",
        "--device",
        "cpu",
    ]


@pytest.fixture(scope="module")
def one_process(argv, tmp_path_factory):
    store = tmp_path_factory.mktemp("one") / "store.zarr"
    assert main([*argv, "--store", str(store)]) == 0
    return EmbeddingStore.open(store).read()


def assert_same(store, expected) -> None:
    table = EmbeddingStore.open(store).read()
    np.testing.assert_array_equal(table.segment_id, expected.segment_id)
    np.testing.assert_array_equal(table.node_id, expected.node_id)
    np.testing.assert_allclose(table.embedding, expected.embedding, atol=1e-5)


def test_embed_on_a_scheduler(argv, one_process, tmp_path, capsys):
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as local,
        Client(local),
    ):
        store = tmp_path / "store.zarr"
        assert main([*argv, "--store", str(store), "--scheduler", local.scheduler_address]) == 0
        assert_same(store, one_process)
        out = capsys.readouterr().out
        assert f"embedded {len(one_process)} nodes" in out and "on 2 workers" in out
        assert main([*argv, "--store", str(store), "--scheduler", local.scheduler_address]) == 0
        assert "embedded 0 nodes" in capsys.readouterr().out


def test_embed_on_local_workers(argv, one_process, tmp_path, capsys):
    store = tmp_path / "store.zarr"
    assert main([*argv, "--store", str(store), "--local-workers", "1"]) == 0
    assert_same(store, one_process)
    assert "on 1 workers; 0 were recorded" in capsys.readouterr().out


def test_scheduler_and_local_workers_exclude_each_other(argv, tmp_path, capsys):
    both = ["--scheduler", "tcp://host:8786", "--local-workers", "2"]
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--store", str(tmp_path / "s.zarr"), *both])
    assert stop.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
