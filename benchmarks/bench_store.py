"""Benchmark the embedding store and the sharded ZIP export.

Prints one JSON object. Run from the repository root:

    python benchmarks/bench_store.py [--rows 1000000] [--small-rows 100000] [--segments 10000]

1. Appends of 64-d rows in batches of 1,000 (``--small-rows`` rows: an
   interactive session or many small workers) and of 100,000 (``--rows`` rows:
   a volume job), rows in random order so that every part holds most segments
   (the worst case for reading one segment).
2. On the large store: re-appending a batch that is already stored (the
   "never embed twice" check), ``missing`` for a clicked fragment, reading
   everything, reading one segment (median over 50 segments) before and after
   ``compact``, and the size on disk.
3. Writing the small store as sharded ZIPs, reading one segment back from them,
   and importing them into a new store.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_segclr.interop import import_sharded_zips, read_sharded_zips, write_sharded_zips
from napari_segclr.store import EmbeddingStore

SIGNATURE = {"model_hash": "bench", "model": {"dim": 64}, "data": {"em": "bench"}}


def make_rows(n_rows: int, n_segments: int, dim: int, seed: int):
    """Random rows: sparse uint64 segment ids, node ids unique per segment, in random order."""
    rng = np.random.default_rng(seed)
    ids = np.unique(rng.integers(2**62, 2**64 - 1, size=2 * n_segments, dtype=np.uint64))
    ids = rng.permutation(ids)[:n_segments]
    seg = ids[np.arange(n_rows) % n_segments]
    node = np.arange(n_rows, dtype=np.int64) // n_segments
    order = rng.permutation(n_rows)
    pos = rng.uniform(0, 1e6, (n_rows, 3))
    emb = rng.standard_normal((n_rows, dim), dtype=np.float32)
    return seg[order], node[order], pos[order], emb[order], ids


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def median_latency_ms(fn, items) -> float:
    times = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - start)
    return round(1e3 * float(np.median(times)), 2)


def fill(store: EmbeddingStore, rows, batch: int) -> dict:
    seg, node, pos, emb, _ = rows
    start = time.perf_counter()
    for lo in range(0, len(seg), batch):
        hi = lo + batch
        store.append(seg[lo:hi], node[lo:hi], pos[lo:hi], emb[lo:hi])
    seconds = time.perf_counter() - start
    return {
        "rows": len(seg),
        "batch": batch,
        "parts": store.n_parts,
        "seconds": round(seconds, 2),
        "rows_per_s": round(len(seg) / seconds),
        "disk_mb": round(disk_bytes(store.path) / 2**20, 1),
        "bytes_per_row": round(disk_bytes(store.path) / len(seg)),
    }


def bench_reads(store: EmbeddingStore, ids: np.ndarray, n_rows: int, rng) -> dict:
    picks = rng.choice(ids, 50, replace=False)
    table, read_all_s = timed(store.read)
    assert len(table) == n_rows
    one = store.read(picks[:1])
    clicked_seg = np.full(300, picks[0], np.uint64)
    clicked_node = np.arange(300, dtype=np.int64)
    return {
        "read_all_s": round(read_all_s, 2),
        "read_all_rows_per_s": round(len(table) / read_all_s),
        "read_one_segment_ms": median_latency_ms(lambda s: store.read([s]), picks),
        "rows_per_segment": len(one),
        "missing_300_nodes_ms": median_latency_ms(
            lambda _: store.missing(clicked_seg, clicked_node), range(10)
        ),
        "len_s": round(timed(lambda: len(store))[1], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small-rows", type=int, default=100_000)
    parser.add_argument("--segments", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--zip-segments", type=int, default=500)
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to write (default: a temp dir)"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(dir=args.dir))
    rng = np.random.default_rng(0)
    signature = dict(SIGNATURE, model={"dim": args.dim})
    result: dict = {"dim": args.dim, "segments": args.segments}
    try:
        small_rows = make_rows(args.small_rows, args.segments, args.dim, seed=1)
        small = EmbeddingStore.create(workdir / "small.zarr", signature=signature, dim=args.dim)
        result["append_batch_1000"] = fill(small, small_rows, 1000)
        result["append_batch_1000"].update(bench_reads(small, small_rows[4], args.small_rows, rng))

        rows = make_rows(args.rows, args.segments, args.dim, seed=2)
        large = EmbeddingStore.create(workdir / "large.zarr", signature=signature, dim=args.dim)
        result["append_batch_100000"] = fill(large, rows, 100_000)
        seg, node, pos, emb, _ = rows
        _, again_s = timed(lambda: large.append(seg[:1000], node[:1000], pos[:1000], emb[:1000]))
        result["append_batch_100000"]["reappend_1000_stored_rows_ms"] = round(1e3 * again_s, 1)
        result["append_batch_100000"].update(bench_reads(large, rows[4], args.rows, rng))

        _, compact_s = timed(large.compact)
        result["compacted"] = {
            "compact_s": round(compact_s, 2),
            "parts": large.n_parts,
            "disk_mb": round(disk_bytes(large.path) / 2**20, 1),
            **bench_reads(large, rows[4], args.rows, rng),
        }

        ids = small_rows[4][: args.zip_segments]
        subset = small.read(ids)
        zips = workdir / "zips"
        _, write_s = timed(lambda: write_sharded_zips(subset, zips, n_shards=100))
        target = EmbeddingStore.create(workdir / "imported.zarr", signature=signature, dim=args.dim)
        added, import_s = timed(lambda: import_sharded_zips(zips, target))
        assert added == len(subset)
        result["sharded_zips"] = {
            "rows": len(subset),
            "segments": len(ids),
            "n_shards": 100,
            "write_s": round(write_s, 2),
            "write_rows_per_s": round(len(subset) / write_s),
            "disk_mb": round(disk_bytes(zips) / 2**20, 1),
            "read_one_segment_ms": median_latency_ms(
                lambda s: read_sharded_zips(zips, segment_ids=[s]), ids[:20]
            ),
            "import_s": round(import_s, 2),
            "import_rows_per_s": round(added / import_s),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
