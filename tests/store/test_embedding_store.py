"""The embedding store: round trips, no duplicates, signatures, crashes and concurrent writers."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from napari_segclr.exceptions import (
    OutputExistsError,
    SegclrError,
    ShapeMismatchError,
    StoreSignatureError,
    UnknownFormatError,
    VolumeNotFoundError,
)
from napari_segclr.store import EmbeddingStore, EmbeddingTable

DIM = 8


def keys(table: EmbeddingTable) -> list[tuple[int, int]]:
    return list(zip(table.segment_id.tolist(), table.node_id.tolist(), strict=True))


def tree_state(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a hash of its bytes: equal states, untouched store."""
    return {
        str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def staged(store: EmbeddingStore) -> list[Path]:
    """Parts being written (or left by a crashed writer)."""
    return [p for p in (store.path / "staging").iterdir() if p.is_dir()]


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_rows_round_trip_sorted_by_segment_and_node(store, grid):
    seg, node, pos, emb = grid(5, 7)
    shuffle = np.random.default_rng(0).permutation(len(seg))
    first, second = shuffle[:20], shuffle[20:]
    assert store.append(seg[first], node[first], pos[first], emb[first]) == 20
    assert store.append(seg[second], node[second], pos[second], emb[second]) == 15

    table = store.read()
    assert len(store) == len(table) == 35
    assert keys(table) == sorted(keys(EmbeddingTable(seg, node, pos, emb)))
    order = np.lexsort((node, seg))
    np.testing.assert_array_equal(table.embedding, emb[order])
    np.testing.assert_array_equal(table.position_nm, pos[order])
    assert table.segment_id.dtype == np.uint64 and table.node_id.dtype == np.int64
    np.testing.assert_array_equal(store.segments(), np.unique(seg))

    one = store.read([seg[3]])
    assert set(one.segment_id.tolist()) == {int(seg[3])}
    np.testing.assert_array_equal(one.node_id, np.arange(7))
    assert len(store.read([12345])) == 0

    frame = one.to_frame()
    assert list(frame.columns[:5]) == ["segment_id", "node_id", "z_nm", "y_nm", "x_nm"]
    assert list(frame.columns[5:]) == [f"e{i}" for i in range(DIM)]
    assert frame["segment_id"].iloc[0] == seg[3]


def test_reappend_skips_rows_already_stored(store, grid):
    seg, node, pos, emb = grid(3, 4)
    assert store.append(seg, node, pos, emb) == 12
    other = emb + 1.0
    # The same rows again (new values) plus two new nodes: only the new nodes are written.
    seg2 = np.append(seg, [seg[0], seg[0]])
    node2 = np.append(node, [100, 100])  # node 100 twice within the call: the first wins
    pos2 = np.vstack([pos, pos[:2]])
    emb2 = np.vstack([other, np.full((2, DIM), 5.0), np.full((1, DIM), 6.0)])[: len(seg2)]
    emb2[-1] = 6.0
    assert store.append(seg2, node2, pos2, emb2) == 1
    assert store.append(seg2, node2, pos2, emb2) == 0
    table = store.read()
    assert len(table) == len(store) == 13
    assert len(set(keys(table))) == 13
    np.testing.assert_array_equal(
        table.take(table.node_id != 100).embedding, emb[np.lexsort((node, seg))]
    )
    np.testing.assert_array_equal(
        table.take(table.node_id == 100).embedding, np.full((1, DIM), 5.0)
    )
    assert store.n_parts == 2


def test_missing_and_has_agree_with_a_set(store, grid):
    seg, node, pos, emb = grid(6, 10)
    rng = np.random.default_rng(1)
    stored = rng.random(len(seg)) < 0.5
    stored_half = np.flatnonzero(stored)
    for part in np.array_split(stored_half, 3):  # spread over three parts
        store.append(seg[part], node[part], pos[part], emb[part])
    query_seg = np.append(seg, [seg[0] + np.uint64(100)])
    query_node = np.append(node, [0])
    expected = [
        (s, n) not in set(keys(store.read()))
        for s, n in zip(query_seg.tolist(), query_node.tolist(), strict=True)
    ]
    np.testing.assert_array_equal(store.missing(query_seg, query_node), expected)
    np.testing.assert_array_equal(store.missing(seg[stored], node[stored]), False)
    assert store.missing([], []).shape == (0,)

    held = int(seg[stored_half[0]])
    assert store.has(held) is True
    assert store.has(held + 10_000) is False
    nodes = node[seg == held]
    np.testing.assert_array_equal(store.has(held, nodes), stored[seg == held])


def test_ids_near_two_to_the_63_and_64_round_trip_exactly(store, rows_for):
    seg = np.array([2**63 - 1, 2**63, 2**63 + 1, 2**64 - 1, 2**64 - 2], dtype=np.uint64)
    node = np.array([2**62, 0, 1, 2**63 - 1, 5], dtype=np.int64)
    store.append(*rows_for(seg, node))
    table = store.read()
    assert keys(table) == sorted(zip(seg.tolist(), node.tolist(), strict=True))
    assert store.read([2**64 - 1]).node_id.tolist() == [2**63 - 1]
    # Ids one apart must stay apart (as float64 they would collide).
    np.testing.assert_array_equal(store.missing(seg + np.uint64(0), node), False)
    np.testing.assert_array_equal(store.missing([2**63 + 2], [0]), True)
    np.testing.assert_array_equal(store.segments(), np.sort(seg))


def test_other_signature_is_refused_and_store_untouched(store, grid, signature):
    store.append(*grid(2, 3))
    before = tree_state(store.path)
    changed = dict(signature, model_hash="def456")
    with pytest.raises(StoreSignatureError, match="model_hash") as info:
        EmbeddingStore.open(store.path, signature=changed, mode="a")
    assert "\n" not in str(info.value)
    with pytest.raises(StoreSignatureError):
        EmbeddingStore.open_or_create(store.path, signature=changed, dim=DIM)
    assert tree_state(store.path) == before

    # The same signature, spelt with a tuple and numpy values, is the same signature.
    same = dict(signature, data={"em": "raw.zarr", "voxel_nm": np.array([40, 8, 8])})
    reopened = EmbeddingStore.open(store.path, signature=same)
    assert len(reopened) == 6 and reopened.signature == signature


def test_open_and_create_refuse_what_is_not_a_store(tmp_path, store, signature):
    with pytest.raises(VolumeNotFoundError, match="does not exist"):
        EmbeddingStore.open(tmp_path / "absent.zarr")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hello")
    with pytest.raises(UnknownFormatError, match="not an embedding store"):
        EmbeddingStore.open(tmp_path / "plain")
    import zarr

    zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    with pytest.raises(UnknownFormatError, match="not an embedding store"):
        EmbeddingStore.open(tmp_path / "other.zarr")
    with pytest.raises(OutputExistsError, match="overwrite"):
        EmbeddingStore.create(store.path, signature=signature, dim=DIM)
    with pytest.raises(UnknownFormatError):
        EmbeddingStore.create(tmp_path / "plain", signature=signature, overwrite=True)
    assert (tmp_path / "plain" / "notes.txt").read_text() == "hello"
    with pytest.raises(ValueError, match="JSON"):
        EmbeddingStore.create(tmp_path / "x.zarr", signature={"f": object()})
    with pytest.raises(ValueError, match="mode"):
        EmbeddingStore.open(store.path, mode="w")
    with pytest.raises(ShapeMismatchError, match="8-d"):
        EmbeddingStore.open_or_create(store.path, signature=signature, dim=64)


def test_append_validates_rows(store, grid):
    seg, node, pos, emb = grid(2, 3)
    read_only = EmbeddingStore.open(store.path)
    with pytest.raises(ValueError, match="read-only"):
        read_only.append(seg, node, pos, emb)
    with pytest.raises(ShapeMismatchError, match="8-d"):
        store.append(seg, node, pos, emb[:, :4])
    with pytest.raises(ShapeMismatchError):
        store.append(seg[:-1], node, pos, emb)
    with pytest.raises(ValueError, match="negative"):
        store.append(-np.ones(6, int), node, pos, emb)
    with pytest.raises(SegclrError, match="integers"):
        store.append(seg.astype(float), node, pos, emb)
    emb[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        store.append(seg, node, pos, emb)
    assert len(store) == 0 and store.n_parts == 0


def test_overwrite_replaces_a_store(store, grid, signature):
    store.append(*grid(2, 3))
    fresh = EmbeddingStore.create(store.path, signature=signature, dim=4, overwrite=True)
    assert len(fresh) == 0 and fresh.dim == 4


def test_failed_append_changes_nothing(store, grid, monkeypatch):
    store.append(*grid(2, 3))
    before = keys(store.read())

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "rename", fail)
    with pytest.raises(OSError, match="disk full"):
        store.append(*grid(2, 3, first_node=10))
    monkeypatch.undo()
    assert keys(store.read()) == before
    assert staged(store) == []


def test_crash_between_write_and_commit_keeps_committed_rows(store, grid, tmp_path):
    rows = tmp_path / "rows.npz"
    seg, node, pos, emb = grid(4, 5)
    np.savez(rows, seg=seg, node=node, pos=pos, emb=emb)
    # The writer commits a first append, then dies after writing the second
    # one's data but before its commit (the rename), as a killed worker would.
    code = """
        import os, sys
        import numpy as np
        from napari_segclr.store import EmbeddingStore
        r = np.load(sys.argv[2])
        store = EmbeddingStore.open(sys.argv[1], mode="a")
        first, second = slice(0, 8), slice(8, None)
        store.append(r["seg"][first], r["node"][first], r["pos"][first], r["emb"][first])
        os.rename = lambda *args: os._exit(17)
        store.append(r["seg"][second], r["node"][second], r["pos"][second], r["emb"][second])
        sys.exit(0)
    """
    result = run_python(code, str(store.path), str(rows))
    assert result.returncode == 17, result.stderr

    after = EmbeddingStore.open(store.path, mode="a")
    assert len(after) == 8
    assert keys(after.read()) == sorted(keys(EmbeddingTable(seg[:8], node[:8], pos[:8], emb[:8])))
    leftovers = staged(store)
    assert len(leftovers) == 1 and any(leftovers[0].rglob("c/*"))  # data written, never committed

    # Running the job again embeds only what was lost.
    assert after.missing(seg, node).sum() == 12
    assert after.append(seg, node, pos, emb) == 12
    assert len(after) == 20

    # compact() clears a crashed writer's leftovers once they are stale.
    os.utime(leftovers[0], (0, 0))
    after.compact()
    assert staged(store) == []
    assert len(after) == 20 and after.n_parts == 1


def test_two_processes_appending_at_once_store_each_row_once(store, grid, tmp_path):
    seg, node, pos, emb = grid(12, 25)
    rows = tmp_path / "rows.npz"
    np.savez(rows, seg=seg, node=node, pos=pos, emb=emb)
    # Two writers cover overlapping thirds of the rows in opposite orders, in
    # small batches, so their appends interleave and race on the shared third.
    # Both start appending together: each says it is ready, then waits for "go".
    code = """
        import sys, time
        from pathlib import Path
        import numpy as np
        from napari_segclr.store import EmbeddingStore
        path, rows, lo, hi, step, ready, go = sys.argv[1:]
        r = np.load(rows)
        lo, hi, step = int(lo), int(hi), int(step)
        store = EmbeddingStore.open(path, mode="a")
        Path(ready).touch()
        while not Path(go).exists():
            time.sleep(0.005)
        starts = range(lo, hi, 10) if step > 0 else range(hi - 10, lo - 1, -10)
        for s in starts:
            b = slice(s, s + 10)
            store.append(r["seg"][b], r["node"][b], r["pos"][b], r["emb"][b])
    """
    n = len(seg)
    go = tmp_path / "go"
    ready = [tmp_path / "ready0", tmp_path / "ready1"]
    args = [
        (str(store.path), str(rows), "0", str(2 * n // 3), "1", str(ready[0]), str(go)),
        (str(store.path), str(rows), str(n // 3), str(n), "-1", str(ready[1]), str(go)),
    ]
    procs = [
        subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *a], stderr=subprocess.PIPE)
        for a in args
    ]
    deadline = time.monotonic() + 60
    while not all(p.exists() for p in ready) and time.monotonic() < deadline:
        time.sleep(0.005)
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()

    table = EmbeddingStore.open(store.path).read()
    assert len(table) == n == len(store)
    assert keys(table) == sorted(keys(EmbeddingTable(seg, node, pos, emb)))
    order = np.lexsort((node, seg))
    np.testing.assert_array_equal(table.embedding, emb[order])


def test_racing_duplicates_are_read_once_and_compacted_away(store, grid, monkeypatch):
    seg, node, pos, emb = grid(4, 6)
    store.append(seg[:12], node[:12], pos[:12], emb[:12])
    # A second writer that checked before the first committed writes the same nodes.
    racer = EmbeddingStore.open(store.path, mode="a")
    monkeypatch.setattr(racer, "missing", lambda s, n: np.ones(len(s), bool))
    racer.append(seg, node, pos, emb + 1.0)
    assert store.n_parts == 2

    table = store.read()
    assert len(table) == len(store) == 24
    assert len(set(keys(table))) == 24
    first = np.isin(table.segment_id, seg[:12])
    # Rows of the part committed first win.
    np.testing.assert_array_equal(table.take(first).embedding, emb[:12])
    np.testing.assert_array_equal(table.take(~first).embedding, emb[12:] + 1.0)

    store.compact(rows_per_part=12)  # parts of whole segments, about 12 rows each
    assert store.n_parts > 1
    parts = sorted((store.path / "parts").iterdir())
    assert len(EmbeddingStore.open(store.path).read(seg[:1])) == 6
    assert keys(store.read()) == keys(table)
    np.testing.assert_array_equal(store.read().embedding, table.embedding)
    assert [p for p in (store.path / "trash").iterdir() if p.is_dir()] == []
    store.compact(rows_per_part=100)
    assert store.n_parts == 1 and sorted((store.path / "parts").iterdir()) != parts
    np.testing.assert_array_equal(store.read().embedding, table.embedding)


def test_empty_store(store):
    assert len(store) == 0
    assert store.segments().dtype == np.uint64 and len(store.segments()) == 0
    table = store.read()
    assert len(table) == 0 and table.dim == DIM
    assert store.has(1) is False
    store.compact()
    assert store.append([], [], np.zeros((0, 3)), np.zeros((0, DIM))) == 0


def test_large_part_reads_segments_across_chunks(tmp_path, signature, rows_for):
    store = EmbeddingStore.create(tmp_path / "big.zarr", signature=signature, dim=DIM)
    n = 70_000  # more than one shard file of 65,536 rows
    seg = np.sort(np.random.default_rng(2).integers(0, 300, n)).astype(np.uint64)
    node = np.arange(n)
    store.append(*rows_for(seg, node))
    expected = rows_for(seg[seg == 299], node[seg == 299])
    got = store.read([299])
    np.testing.assert_array_equal(got.node_id, expected[1])
    np.testing.assert_array_equal(got.embedding, expected[3])
    assert len(store) == n


def test_read_racing_a_compaction_retries_on_the_new_parts(store, grid, monkeypatch):
    from napari_segclr.store import embedding_store

    seg, node, pos, emb = grid(6, 5)
    for part in np.array_split(np.arange(len(seg)), 3):
        store.append(seg[part], node[part], pos[part], emb[part])
    reader = EmbeddingStore.open(store.path)
    real_read = embedding_store._Part.read
    compacted = []

    def read_then_compact(part, rows):
        out = real_read(part, rows)
        if not compacted:  # another process compacts right after this part was read
            compacted.append(True)
            store.compact()
        return out

    monkeypatch.setattr(embedding_store._Part, "read", read_then_compact)
    table = reader.read()
    assert compacted and store.n_parts == 1
    # The parts read after the compaction had vanished (zarr reads them as zeros):
    # the read notices and starts again on the merged part.
    np.testing.assert_array_equal(table.embedding, emb[np.lexsort((node, seg))])
    assert len(table) == 30
