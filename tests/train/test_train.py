"""Training: it learns, checkpoints say what and on what, resumes exactly, stops cleanly."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from napari_segclr.exceptions import CheckpointError, OutputExistsError, SegmentTooSmallError
from napari_segclr.io import Dataset, Volume
from napari_segclr.model import SegclrModel, get_preset, load_checkpoint
from napari_segclr.runs import read_log
from napari_segclr.train import (
    TrainConfig,
    TrainingData,
    TrainProgress,
    skeletons_from_nodes,
    train,
)

# Few steps, near pairs without shifts and a high constant rate: the loss falls within
# a few dozen steps (at 0.01 from about 7 to about 4.5 in 60 steps, for any seed).
QUICK = TrainConfig(
    model="tiny",
    steps=60,
    batch_size=16,
    learning_rate=1e-2,
    schedule="constant",
    warmup_fraction=0.0,
    max_path_nm=1000.0,
    jitter_nm=0.0,
    checkpoint_every=1000,
    device="cpu",
)
SHORT = TrainConfig(model="tiny", steps=6, batch_size=4, checkpoint_every=2, device="cpu")


class Stop(Exception):
    pass


def stop_at(step: int):
    def progress(update: TrainProgress) -> None:
        if update.step == step:
            raise Stop

    return progress


def weights(model: SegclrModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def test_loss_falls_and_weights_change(neuropil_data, tmp_path):
    with torch.random.fork_rng():
        torch.manual_seed(QUICK.seed)
        initial = weights(SegclrModel(QUICK.model))
    result = train(neuropil_data, QUICK, checkpoint=tmp_path / "model.pt")
    losses = result.losses
    assert len(losses) == QUICK.steps and np.all(np.isfinite(losses))
    # Random 16-d projections at temperature 0.1 give about 7; learning brings it down.
    assert losses[:15].mean() - losses[-15:].mean() > 0.5
    trained = weights(result.model)
    assert any(not torch.equal(initial[k], trained[k]) for k in initial)


def test_checkpoint_holds_configs_provenance_and_state(neuropil_data, tmp_path):
    path = tmp_path / "model.pt"
    seen = []
    result = train(
        neuropil_data, SHORT, checkpoint=path, log=tmp_path / "loss.csv", progress=seen.append
    )
    assert [u.step for u in seen] == list(range(1, 7)) and all(u.total == 6 for u in seen)
    assert all(math.isfinite(u.loss) and u.learning_rate > 0 for u in seen)

    model, extra = load_checkpoint(path)
    assert model.config == get_preset("tiny")
    assert extra["format"] == "napari-segclr/train" and extra["step"] == 6
    assert TrainConfig.from_dict(extra["train_config"]) == SHORT
    (provenance,) = extra["data"]
    assert provenance["kind"] == "synthetic"
    assert provenance["neuropil"]["seed"] == 7
    assert provenance["neuropil"]["voxel_size"] == [128.0, 128.0, 128.0]
    states = sorted(p.name for p in tmp_path.glob("model.pt.state-*"))
    assert states == [extra["state_file"]] == ["model.pt.state-000000006"]
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, result.model.state_dict()[name].cpu())

    rows = read_log(tmp_path / "loss.csv")
    assert list(rows.columns) == ["step", "loss", "learning_rate", "elapsed_s"]
    assert rows["step"].tolist() == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(rows["loss"], result.losses, atol=1e-5)


def test_resumed_run_equals_uninterrupted_run(neuropil_data, tmp_path):
    whole = train(neuropil_data, SHORT, checkpoint=tmp_path / "whole.pt")

    path = tmp_path / "parts.pt"
    with pytest.raises(Stop):
        train(neuropil_data, SHORT, checkpoint=path, progress=stop_at(5), log=tmp_path / "l.csv")
    _, extra = load_checkpoint(path)
    assert extra["step"] == 4  # step 5 was done but not saved: the last checkpoint stands
    resumed = train(neuropil_data, SHORT, checkpoint=path, resume=True, log=tmp_path / "l.csv")

    assert resumed.start_step == 4 and resumed.step == 6 and len(resumed.losses) == 2
    np.testing.assert_array_equal(resumed.losses, whole.losses[4:])
    expected, got = weights(whole.model), weights(resumed.model)
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert read_log(tmp_path / "l.csv")["step"].tolist() == [1, 2, 3, 4, 5, 6]


def test_cancel_before_first_checkpoint_leaves_nothing(neuropil_data, tmp_path):
    with pytest.raises(Stop):
        train(neuropil_data, SHORT, checkpoint=tmp_path / "model.pt", progress=stop_at(1))
    assert list(tmp_path.iterdir()) == []


def test_cancel_keeps_last_checkpoint_byte_for_byte(neuropil_data, tmp_path):
    path = tmp_path / "model.pt"
    snapshot = {}

    def progress(update: TrainProgress) -> None:
        if update.step == 2:
            snapshot.update({p.name: p.read_bytes() for p in tmp_path.iterdir()})
        if update.step == 3:
            raise Stop

    with pytest.raises(Stop):
        train(neuropil_data, SHORT, checkpoint=path, progress=progress)
    assert sorted(snapshot) == ["model.pt", "model.pt.state-000000002"]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == snapshot


def test_existing_checkpoint_is_never_overwritten(neuropil_data, tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="resume"):
        train(neuropil_data, SHORT, checkpoint=path)
    assert path.read_bytes() == b"precious"


def test_resume_refuses_other_settings_or_data(neuropil_data, tmp_path):
    path = tmp_path / "model.pt"
    train(neuropil_data, SHORT, checkpoint=path)
    before = path.read_bytes()
    other = TrainConfig.from_dict({**SHORT.to_dict(), "learning_rate": 0.5, "steps": 8})
    with pytest.raises(CheckpointError, match="learning_rate"):
        train(neuropil_data, other, checkpoint=path, resume=True)
    moved = TrainingData(neuropil_data.dataset, neuropil_data.skeletons, {"kind": "other"})
    with pytest.raises(CheckpointError, match="other data"):
        train(moved, SHORT, checkpoint=path, resume=True)
    assert path.read_bytes() == before


def test_resume_may_extend_the_run(neuropil_data, tmp_path):
    path = tmp_path / "model.pt"
    train(neuropil_data, SHORT, checkpoint=path)
    longer = TrainConfig.from_dict({**SHORT.to_dict(), "steps": 8})
    result = train(neuropil_data, longer, checkpoint=path, resume=True)
    assert (result.start_step, result.step, len(result.losses)) == (6, 8, 2)
    assert load_checkpoint(path)[1]["step"] == 8
    again = train(neuropil_data, longer, checkpoint=path, resume=True)
    assert len(again.losses) == 0 and again.step == 8


def test_weights_only_checkpoint_cannot_be_resumed(neuropil_data, tmp_path):
    from napari_segclr.model import save_checkpoint

    path = tmp_path / "model.pt"
    save_checkpoint(path, SegclrModel(get_preset("tiny")), extra={})
    with pytest.raises(CheckpointError, match="no training run"):
        train(neuropil_data, SHORT, checkpoint=path, resume=True)


def test_several_volumes_share_each_batch(neuropil_data, tmp_path):
    result = train([neuropil_data, neuropil_data], SHORT, checkpoint=tmp_path / "m.pt")
    assert len(result.losses) == 6
    assert len(load_checkpoint(tmp_path / "m.pt")[1]["data"]) == 2


def test_config_validation_and_round_trip():
    config = TrainConfig(model="tiny", steps=100, learning_rate=0.1, warmup_fraction=0.1)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.model == get_preset("tiny")
    # Linear warm-up over 10 steps, then cosine decay to 0.
    assert config.learning_rate_at(0) == pytest.approx(0.01)
    assert config.learning_rate_at(9) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 0.09)))
    assert config.learning_rate_at(50) == pytest.approx(0.05)
    assert config.learning_rate_at(99) < 1e-4
    for bad in (
        {"steps": 0},
        {"batch_size": 1},
        {"learning_rate": -1.0},
        {"schedule": "step"},
        {"device": "gpu"},
        {"model": "huge"},
        {"warmup_fraction": 2.0},
    ):
        with pytest.raises(ValueError):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="unknown training config keys"):
        TrainConfig.from_dict({"epochs": 3})


def test_skeletons_from_nodes_follow_segments():
    # Cell 1 runs over nodes 0-1-2-3 and is split after node 1 (segment 20 holds 2-3);
    # cell 2 (nodes 0-1) is merged into segment 10.
    nodes = pd.DataFrame(
        {
            "cell_id": np.array([1, 1, 1, 1, 2, 2], np.uint64),
            "node": [0, 1, 2, 3, 0, 1],
            "parent": [-1, 0, 1, 2, -1, 0],
            "z_nm": [0.0, 100, 200, 300, 0, 0],
            "y_nm": [0.0, 0, 0, 0, 500, 600],
            "x_nm": [0.0] * 6,
            "radius_nm": [50.0] * 6,
            "segment_id": np.array([10, 10, 20, 20, 10, 10], np.uint64),
        }
    )
    skeletons = skeletons_from_nodes(nodes)
    assert sorted(skeletons) == [10, 20]
    assert len(skeletons[10]) == 4 and len(skeletons[10].roots) == 2  # two cells: a forest
    assert len(skeletons[20]) == 2 and len(skeletons[20].roots) == 1  # the split-off piece
    assert skeletons[10].cable_length == pytest.approx(200.0)
    assert skeletons[20].cable_length == pytest.approx(100.0)


def test_synthetic_skeleton_nodes_lie_on_their_segments(neuropil_data):
    seg = neuropil_data.dataset.segmentation
    labels = np.asarray(seg.array)
    offsets = np.array(list(np.ndindex(3, 3, 3))) - 1
    assert len(neuropil_data.skeletons) > 50
    for sid, skel in neuropil_data.skeletons.items():
        voxels = np.rint(seg.to_voxel(skel.nodes)).astype(int)
        around = np.clip(voxels[:, None, :] + offsets, 0, np.array(labels.shape) - 1)
        hit = labels[around[..., 0], around[..., 1], around[..., 2]] == sid
        assert hit.any(axis=1).all(), sid
        assert skel.cable_length > 0


def test_training_data_from_dataset_skeletonises_it():
    seg = np.zeros((24, 40, 40), np.uint64)
    seg[10:15, 10:15, 2:38] = 2**63 + 3  # a rod 36 voxels (2.3 µm) long
    em = np.full(seg.shape, 128, np.uint8)
    dataset = Dataset(Volume(em, 64.0), Volume(seg, 64.0, kind="labels", source="rod.tif"))
    data = TrainingData.from_dataset(dataset)
    assert list(data.skeletons) == [2**63 + 3]
    assert data.provenance["kind"] == "volumes"
    assert data.provenance["data"]["segmentation"]["source"] == "rod.tif"
    assert data.provenance["skeletons"]["skeletonize_volume"]["min_volume_nm3"] == 1e6

    dust = np.zeros_like(seg)
    dust[5, 5, 5] = 9
    with pytest.raises(SegmentTooSmallError, match="nothing to draw"):
        TrainingData.from_dataset(Dataset(Volume(em, 64.0), Volume(dust, 64.0, kind="labels")))
