"""Atomic files: the old file survives a failed write; no temporary file stays behind."""

from __future__ import annotations

import pandas as pd
import pytest

from napari_segclr.atomic import write_atomic, write_csv_atomic


@pytest.mark.parametrize("durable", [False, True])
def test_a_failed_write_leaves_the_old_file_and_no_leftovers(tmp_path, durable):
    path = tmp_path / "file.bin"
    write_atomic(path, lambda f: f.write(b"old"), durable=durable)

    def fail(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, fail, durable=durable)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]
    assert path.stat().st_mode & 0o644 == 0o644


def test_csv_round_trip(tmp_path):
    frame = pd.DataFrame({"segment_id": [2**63 + 5], "class": ["axon"]})
    path = write_csv_atomic(frame, tmp_path / "labels.csv", durable=True)
    back = pd.read_csv(path, dtype={"segment_id": "uint64"})
    pd.testing.assert_frame_equal(back, frame)
