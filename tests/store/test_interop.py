"""Sharded ZIP embeddings in the released SegCLR format."""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile

import numpy as np
import pytest

from napari_segclr.exceptions import OutputExistsError, UnknownFormatError, VolumeNotFoundError
from napari_segclr.interop import (
    import_sharded_zips,
    read_sharded_zips,
    shard_of,
    write_sharded_zips,
)
from napari_segclr.store import EmbeddingStore, EmbeddingTable

DIM = 8


def md5_shard(segment_id: int, n_shards: int, bytewidth: int = 8) -> int:
    """The release's sharding, computed another way: struct packing and a reversed hex digest."""
    key = struct.pack("<Q", segment_id) + bytes(bytewidth - 8)
    digest = hashlib.md5(key).digest()
    return int(digest[::-1].hex(), 16) % n_shards


def write_zip(path, csvs: dict[str, str]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in csvs.items():
            archive.writestr(name, text)


def csv_rows(rows: list[list[float]]) -> str:
    return "\n".join(",".join(str(v) for v in row) for row in rows)


@pytest.fixture
def table(grid) -> EmbeddingTable:
    return EmbeddingTable(*grid(40, 3)).sorted()


@pytest.mark.parametrize("bytewidth", [8, 64])
def test_shard_of_matches_an_independent_md5(bytewidth):
    ids = [0, 1, 255, 864691135591041291, 2**63 - 1, 2**63, 2**64 - 1]
    for segment_id in ids:
        for n_shards in (1, 7, 10_000, 50_000):
            expected = md5_shard(segment_id, n_shards, bytewidth)
            assert shard_of(segment_id, n_shards, bytewidth=bytewidth) == expected
    assert shard_of(np.uint64(2**64 - 1), 7) == md5_shard(2**64 - 1, 7)
    with pytest.raises(ValueError, match="n_shards"):
        shard_of(5, 0)
    with pytest.raises(ValueError, match="2\\*\\*64"):
        shard_of(2**64, 10)


def test_sharded_zips_round_trip(table, tmp_path):
    out = tmp_path / "zips"
    written = write_sharded_zips(table, out, n_shards=7)
    assert written == sorted(written, key=lambda p: int(p.stem))
    ids_by_file = {}
    for path in written:
        with zipfile.ZipFile(path) as archive:
            ids_by_file[path.name] = [int(n.removesuffix(".csv")) for n in archive.namelist()]
    for name, ids in ids_by_file.items():
        assert {md5_shard(i, 7) for i in ids} == {int(name.removesuffix(".zip"))}
    assert sorted(i for ids in ids_by_file.values() for i in ids) == table.segments().tolist()
    meta = json.loads((out / "sharding.json").read_text())
    assert meta["n_shards"] == 7 and meta["bytewidth"] == 8 and meta["dim"] == DIM

    back = read_sharded_zips(out)
    np.testing.assert_array_equal(back.segment_id, table.segment_id)
    np.testing.assert_array_equal(back.node_id, table.node_id)
    np.testing.assert_array_equal(back.embedding, table.embedding)  # float32 exactly
    np.testing.assert_allclose(back.position_nm, table.position_nm, rtol=1e-8)


def test_csv_rows_are_node_x_y_z_then_embedding_without_header(table, tmp_path):
    write_sharded_zips(table, tmp_path / "zips", n_shards=3)
    segment_id = int(table.segment_id[0])
    shard = md5_shard(segment_id, 3)
    with zipfile.ZipFile(tmp_path / "zips" / f"{shard}.zip") as archive:
        lines = archive.read(f"{segment_id}.csv").decode().splitlines()
    assert len(lines) == 3
    fields = [float(v) for v in lines[0].split(",")]
    z, y, x = table.position_nm[0]
    assert fields[:4] == pytest.approx([table.node_id[0], x, y, z], rel=1e-8)
    np.testing.assert_array_equal(np.float32(fields[4:]), table.embedding[0])


def test_reading_one_segment_opens_exactly_its_shard(table, tmp_path, monkeypatch):
    write_sharded_zips(table, tmp_path / "zips", n_shards=16)
    opened = []
    real_zipfile = zipfile.ZipFile

    class CountingZipFile(real_zipfile):
        def __init__(self, file, *args, **kwargs):
            opened.append(file)
            super().__init__(file, *args, **kwargs)

    monkeypatch.setattr(zipfile, "ZipFile", CountingZipFile)
    segment_id = int(table.segment_id[-1])
    one = read_sharded_zips(tmp_path / "zips", segment_ids=[segment_id])
    assert [p.name for p in opened] == [f"{md5_shard(segment_id, 16)}.zip"]
    np.testing.assert_array_equal(
        one.embedding, table.take(table.segment_id == segment_id).embedding
    )
    assert len(read_sharded_zips(tmp_path / "zips", segment_ids=[12345])) == 0


def test_store_export_and_import_round_trip(table, tmp_path, signature):
    source = EmbeddingStore.create(tmp_path / "a.zarr", signature=signature, dim=DIM)
    half = len(table) // 2
    source.append(*(column[:half] for column in vars(table).values()))
    source.append(*(column[half:] for column in vars(table).values()))
    write_sharded_zips(source, tmp_path / "zips", n_shards=5)

    target = EmbeddingStore.create(tmp_path / "b.zarr", signature=signature, dim=DIM)
    calls = []
    added = import_sharded_zips(tmp_path / "zips", target, progress=lambda *a: calls.append(a))
    assert added == len(table) == len(target)
    assert calls[-1][0] == calls[-1][1] == len(list((tmp_path / "zips").glob("*.zip")))
    assert import_sharded_zips(tmp_path / "zips", target) == 0  # re-running adds nothing
    np.testing.assert_array_equal(target.read().embedding, table.embedding)

    wrong_dim = EmbeddingStore.create(tmp_path / "c.zarr", signature=signature, dim=4)
    with pytest.raises(UnknownFormatError, match="8-d embeddings"):
        import_sharded_zips(tmp_path / "zips", wrong_dim)


def test_reads_release_files_with_header_voxels_and_no_trailing_newline(tmp_path):
    rows = [[1, 10, 20, 30, *[0.5] * DIM], [2, 11, 21, 31, *[0.25] * DIM]]
    header = ",".join(["node_id", "x", "y", "z", *[f"e{i}" for i in range(DIM)]])
    write_zip(tmp_path / "0.zip", {"17.csv": header + "\n" + csv_rows(rows)})
    table = read_sharded_zips(tmp_path / "0.zip", voxel_size=(40, 8, 4))
    assert table.segment_id.tolist() == [17, 17] and table.node_id.tolist() == [1, 2]
    np.testing.assert_array_equal(table.position_nm[0], [30 * 40, 20 * 8, 10 * 4])
    np.testing.assert_array_equal(table.embedding[1], [0.25] * DIM)


@pytest.mark.parametrize(
    ("csvs", "message"),
    [
        ({"readme.txt": "hello"}, "holds no <segment_id>.csv"),
        ({"abc.csv": "1,2,3,4,5"}, "not named <segment_id>.csv"),
        ({"5.csv": "1,2,3,4,0.5,0.5\n2,2,3,4,0.5\n"}, "not every row has 6 columns"),
        ({"5.csv": "1,2,3,4,0.5,0.5\n", "6.csv": "1,2,3,4,0.5\n"}, "not every row has 6 columns"),
        ({"5.csv": "1,2,3\n"}, "3 columns"),
        ({"5.csv": "node,x,y,z,e0\n1,2,3,4,5\n"}, "header"),
        ({"5.csv": "1,2,3,4,abc\n"}, "not all numbers"),
    ],
)
def test_malformed_zips_are_refused_in_one_line(tmp_path, csvs, message):
    write_zip(tmp_path / "0.zip", csvs)
    with pytest.raises(UnknownFormatError, match=message) as info:
        read_sharded_zips(tmp_path)
    assert "\n" not in str(info.value)


def test_duplicate_and_misplaced_segments_are_refused(tmp_path):
    row = "1,2,3,4,0.5,0.5\n"
    write_zip(tmp_path / "0.zip", {"5.csv": row})
    write_zip(tmp_path / "1.zip", {"5.csv": row})
    with pytest.raises(UnknownFormatError, match="segment 5 is in both"):
        read_sharded_zips(tmp_path)
    (tmp_path / "1.zip").unlink()
    write_zip(tmp_path / "2.zip", {"7.csv": row})
    with zipfile.ZipFile(tmp_path / "2.zip", "a") as archive, pytest.warns(UserWarning):
        archive.writestr("7.csv", row)  # a ZIP may hold one name twice
    with pytest.raises(UnknownFormatError, match="segment 7 more than once"):
        read_sharded_zips(tmp_path / "2.zip")
    (tmp_path / "2.zip").unlink()
    shard = md5_shard(5, 3)
    (tmp_path / "0.zip").rename(tmp_path / f"{(shard + 1) % 3}.zip")
    with pytest.raises(UnknownFormatError, match=f"belongs in shard {shard}"):
        read_sharded_zips(tmp_path, n_shards=3)


def test_missing_inputs_and_outputs_are_explained(table, tmp_path):
    with pytest.raises(VolumeNotFoundError):
        read_sharded_zips(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnknownFormatError, match=r"no \.zip files"):
        read_sharded_zips(tmp_path / "empty")
    (tmp_path / "bad.zip").write_text("not a zip")
    with pytest.raises(UnknownFormatError, match="not a readable ZIP"):
        read_sharded_zips(tmp_path / "bad.zip")
    with pytest.raises(ValueError, match="n_shards is needed"):
        read_sharded_zips(tmp_path / "empty", segment_ids=[1])

    write_sharded_zips(table, tmp_path / "zips", n_shards=4)
    segment_id = int(table.segment_id[0])
    (tmp_path / "zips" / f"{md5_shard(segment_id, 4)}.zip").unlink()
    with pytest.raises(VolumeNotFoundError, match="n_shards=4"):
        read_sharded_zips(tmp_path / "zips", segment_ids=[segment_id])
    with pytest.raises(ValueError, match="disagrees"):
        read_sharded_zips(tmp_path / "zips", n_shards=5)

    with pytest.raises(OutputExistsError, match="overwrite"):
        write_sharded_zips(table, tmp_path / "zips", n_shards=4)
    write_sharded_zips(table, tmp_path / "zips", n_shards=2, overwrite=True)
    assert len(list((tmp_path / "zips").glob("*.zip"))) == 2
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(OutputExistsError, match="refusing"):
        write_sharded_zips(table, tmp_path / "mine", n_shards=2, overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
