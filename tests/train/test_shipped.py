"""The shipped checkpoint: float16 on disk, float32 when loaded, a clear error when absent."""

from __future__ import annotations

import pytest
import torch

from napari_segclr.exceptions import CheckpointError
from napari_segclr.model import (
    SegclrModel,
    get_preset,
    load_checkpoint,
    save_checkpoint,
    shipped,
)
from napari_segclr.model.shipped import load_shipped_model, save_compact_checkpoint


def test_compact_checkpoint_halves_the_file_and_loads_as_float32(tmp_path):
    model = SegclrModel(get_preset("tiny")).eval()
    full, compact = tmp_path / "full.pt", tmp_path / "compact.pt"
    save_checkpoint(full, model, extra={})
    save_compact_checkpoint(compact, model, extra={"steps": 3})
    assert compact.stat().st_size < 0.6 * full.stat().st_size
    loaded, extra = load_checkpoint(compact)
    assert extra == {"steps": 3}
    assert next(model.parameters()).dtype == torch.float32  # the model given is untouched
    views = torch.rand(2, 1, 17, 17, 17)
    with torch.no_grad():
        expected, got = model.embed(views), loaded.embed(views)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    torch.testing.assert_close(got, expected, atol=2e-2, rtol=2e-2)


def test_missing_shipped_checkpoint_says_how_to_make_it(monkeypatch, tmp_path):
    monkeypatch.setattr(shipped, "shipped_checkpoint_path", lambda: tmp_path / "none.pt")
    with pytest.raises(CheckpointError, match=r"train_shipped_model\.py"):
        load_shipped_model()


def test_shipped_checkpoint_must_hold_the_lite_network(monkeypatch, tmp_path):
    path = tmp_path / "segclr_lite.pt"
    monkeypatch.setattr(shipped, "shipped_checkpoint_path", lambda: path)
    save_compact_checkpoint(path, SegclrModel(get_preset("tiny")), extra={})
    with pytest.raises(CheckpointError, match="lite"):
        load_shipped_model()


@pytest.mark.skipif(not shipped.shipped_checkpoint_path().is_file(), reason="not trained yet")
def test_installed_shipped_model_loads():
    model, extra = load_shipped_model()
    assert model.config == get_preset("lite") and not model.training
    assert extra["trained_on"] == "synthetic neuropil"
