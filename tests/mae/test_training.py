"""Pre-training and fine-tuning: checkpoints, exact resume, stopping, learning, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segclr.exceptions import (
    CheckpointError,
    OutputExistsError,
    ShapeMismatchError,
    VoxelSizeError,
)
from napari_segclr.io import Volume
from napari_segclr.mae import (
    AffinityModel,
    FinetuneConfig,
    MaskedAutoencoder,
    PretrainConfig,
    finetune,
    labels_to_affinities,
    load_affinity_model,
    load_model,
    pretrain,
)
from napari_segclr.model import SegclrModel, save_checkpoint
from napari_segclr.runs import read_log

PRE = PretrainConfig(model="tiny", steps=4, batch_size=2, checkpoint_every=2, device="cpu")
TUNE = FinetuneConfig(steps=4, batch_size=2, checkpoint_every=2, device="cpu")


class Stop(Exception):
    pass


def stop_at(step: int):
    def progress(update) -> None:
        if update.step == step:
            raise Stop

    return progress


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def mae_checkpoint(tmp_path_factory, unlabelled):
    path = tmp_path_factory.mktemp("mae") / "mae.pt"
    pretrain(unlabelled, PRE, checkpoint=path)
    return path


def test_pretraining_checkpoint_holds_config_intensity_and_provenance(unlabelled, tmp_path):
    path, seen = tmp_path / "mae.pt", []
    result = pretrain(
        unlabelled, PRE, checkpoint=path, log=tmp_path / "loss.csv", progress=seen.append
    )
    assert [u.step for u in seen] == [1, 2, 3, 4] and result.step == 4
    assert np.all(np.isfinite(result.losses)) and len(result.losses) == 4
    model, extra = load_model(path, kind="mae")
    assert isinstance(model, MaskedAutoencoder) and not model.training
    raw = np.asarray(unlabelled.array, dtype=np.float64)
    # Measured on random tiles of the volume: near the whole volume's figures.
    assert model.config.intensity_mean == pytest.approx(raw.mean(), rel=0.15)
    assert model.config.intensity_std == pytest.approx(raw.std(), rel=0.25)
    assert extra["step"] == 4 and extra["train_config"]["mask_ratio"] == 0.75
    assert extra["data"]["volumes"][0]["source"] == "toy unlabelled"
    assert [p.name for p in tmp_path.glob("mae.pt.state-*")] == ["mae.pt.state-000000004"]
    assert read_log(tmp_path / "loss.csv")["step"].tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_resumed_run_equals_uninterrupted_run(stage, unlabelled, toy, tmp_path):
    def run(path, **kwargs):
        if stage == "pretrain":
            return pretrain(unlabelled, PRE, checkpoint=path, **kwargs)
        tune = FinetuneConfig(**{**TUNE.to_dict(), "model": "tiny"})
        return finetune(*toy, tune, checkpoint=path, **kwargs)

    whole = run(tmp_path / "whole.pt")
    with pytest.raises(Stop):
        run(tmp_path / "part.pt", progress=stop_at(3))  # checkpoint at step 2
    resumed = run(tmp_path / "part.pt", resume=True)
    assert resumed.start_step == 2 and resumed.step == 4
    assert np.array_equal(resumed.losses, whole.losses[2:])
    assert same_weights(resumed.model, whole.model)


def test_existing_checkpoint_is_never_overwritten(unlabelled, tmp_path):
    path = tmp_path / "mae.pt"
    path.write_bytes(b"mine")
    with pytest.raises(OutputExistsError, match="resume"):
        pretrain(unlabelled, PRE, checkpoint=path)
    assert path.read_bytes() == b"mine"


def test_resume_refuses_other_settings_or_data(unlabelled, toy, mae_checkpoint):
    with pytest.raises(CheckpointError, match="differs in mask_ratio"):
        pretrain(unlabelled, PretrainConfig(**{**PRE.to_dict(), "mask_ratio": 0.5}),
                 checkpoint=mae_checkpoint, resume=True)  # fmt: skip
    with pytest.raises(CheckpointError, match="other data"):
        pretrain(toy[0], PRE, checkpoint=mae_checkpoint, resume=True)


def test_time_limit_stops_with_a_checkpoint(unlabelled, tmp_path):
    config = PretrainConfig(**{**PRE.to_dict(), "steps": 50, "checkpoint_every": 100})
    result = pretrain(unlabelled, config, checkpoint=tmp_path / "mae.pt", time_limit_s=0.0)
    assert result.step == 1 and len(result.losses) == 1
    assert load_model(tmp_path / "mae.pt", kind="mae")[1]["step"] == 1


def test_volumes_that_do_not_fit_the_model_are_refused(tmp_path):
    small = Volume(np.zeros((4, 40, 40), np.uint8), 10.0, source="thin.tif")
    with pytest.raises(
        ShapeMismatchError, match=r"thin.tif of shape \(4, 40, 40\) is smaller .* along z"
    ):
        pretrain(small, PRE, checkpoint=tmp_path / "a.pt")
    coarse = Volume(np.zeros((16, 40, 40), np.uint8), 20.0, source="coarse.tif")
    with pytest.raises(VoxelSizeError, match=r"coarse.tif has voxel size \(20.0, 20.0, 20.0\)"):
        pretrain(coarse, PRE, checkpoint=tmp_path / "b.pt")
    assert not list(tmp_path.iterdir())


def test_labels_must_be_integers_on_the_raw_grid(toy, tmp_path):
    raw, labels = toy
    shifted = Volume(labels.array, 10.0, offset=(10, 0, 0), kind="labels", source="shifted")
    with pytest.raises(ShapeMismatchError, match="do not lie on the voxel grid"):
        finetune(raw, shifted, TUNE, checkpoint=tmp_path / "a.pt")
    floats = Volume(np.zeros(raw.shape, np.float32), 10.0, source="float labels")
    with pytest.raises(Exception, match="integer segment ids"):
        finetune(raw, floats, TUNE, checkpoint=tmp_path / "a.pt")


def test_finetuning_starts_from_the_pretrained_encoder(toy, mae_checkpoint, tmp_path):
    mae, _ = load_model(mae_checkpoint, kind="mae")
    config = FinetuneConfig(**{**TUNE.to_dict(), "steps": 1, "learning_rate": 1e-12})
    result = finetune(*toy, config, init=mae_checkpoint, checkpoint=tmp_path / "aff.pt")
    model = load_affinity_model(tmp_path / "aff.pt")
    assert model.config == mae.config  # the architecture and intensity of the MAE
    for name, value in mae.encoder.state_dict().items():
        assert torch.allclose(model.encoder.state_dict()[name], value, atol=1e-6), name
    extra = load_model(tmp_path / "aff.pt", kind="affinity")[1]
    assert extra["data"]["init"]["step"] == 4 and len(extra["data"]["init"]["signature"]) == 64
    assert result.step == 1


def test_init_from_another_kind_of_checkpoint_is_refused(toy, mae_checkpoint, tmp_path):
    segclr = tmp_path / "segclr.pt"
    save_checkpoint(segclr, SegclrModel(get_preset_segclr()), extra={})
    with pytest.raises(CheckpointError, match="holds a SegCLR network; an MAE pre-trained"):
        finetune(*toy, TUNE, init=segclr, checkpoint=tmp_path / "a.pt")
    finetune(*toy, FinetuneConfig(**{**TUNE.to_dict(), "steps": 1}), init=mae_checkpoint,
             checkpoint=tmp_path / "aff.pt")  # fmt: skip
    with pytest.raises(CheckpointError, match="holds an affinity network"):
        finetune(*toy, TUNE, init=tmp_path / "aff.pt", checkpoint=tmp_path / "b.pt")
    other = FinetuneConfig(**{**TUNE.to_dict(), "model": "small"})
    with pytest.raises(CheckpointError, match=r"another architecture .* differs in tile_shape"):
        finetune(*toy, other, init=mae_checkpoint, checkpoint=tmp_path / "c.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a napari-segclr checkpoint"):
        load_affinity_model(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_affinity_model(tmp_path / "missing.pt")


def get_preset_segclr():
    from napari_segclr.model import get_preset as segclr_preset

    return segclr_preset("tiny")


def test_load_affinity_model_meets_the_segmentation_contract(toy, tmp_path):
    config = FinetuneConfig(**{**TUNE.to_dict(), "model": "tiny", "steps": 1})
    finetune(*toy, config, checkpoint=tmp_path / "aff.pt")
    model = load_affinity_model(tmp_path / "aff.pt", device="cpu")
    assert isinstance(model, AffinityModel) and isinstance(model, torch.nn.Module)
    assert model.patch_shape == (8, 16, 16) and all(isinstance(n, int) for n in model.patch_shape)
    assert model.voxel_size_nm == (10.0, 10.0, 10.0)
    raw = np.asarray(toy[0].array[:8, :16, :16])
    x = model.normalise(raw)
    assert x.dtype == np.float32 and x.shape == raw.shape
    assert np.allclose(x * model.config.intensity_std + model.config.intensity_mean, raw, atol=1e-3)
    assert not model.training
    with torch.no_grad():
        logits = model(torch.from_numpy(x)[None, None])
    assert logits.shape == (1, 3, 8, 16, 16) and logits.dtype == torch.float32


def test_finetuning_learns_toy_affinities_better_than_chance(toy, tmp_path):
    config = FinetuneConfig(
        model="tiny", steps=60, batch_size=4, learning_rate=3e-3, schedule="constant",
        warmup_fraction=0.0, checkpoint_every=100, device="cpu",
    )  # fmt: skip
    raw, labels = toy
    result = finetune(raw, labels, config, checkpoint=tmp_path / "aff.pt")
    assert result.losses[-10:].mean() < result.losses[:10].mean()
    model = load_affinity_model(tmp_path / "aff.pt")
    tile = (slice(4, 12), slice(8, 24), slice(8, 24))
    with torch.no_grad():
        x = torch.from_numpy(model.normalise(raw.read(tile)))[None, None]
        predicted = torch.sigmoid(model(x))[0].numpy() > 0.5
    truth = labels_to_affinities(labels.read(tile)).astype(bool)
    inner = (slice(None), slice(1, None), slice(1, None), slice(1, None))
    predicted, truth = predicted[inner], truth[inner]
    balanced = 0.5 * (predicted[truth].mean() + (~predicted[~truth]).mean())
    assert balanced > 0.75  # chance is 0.5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_both_stages_train_on_cuda_under_bf16(unlabelled, toy, tmp_path):
    pre = PretrainConfig(**{**PRE.to_dict(), "device": "cuda", "bf16": True})
    result = pretrain(unlabelled, pre, checkpoint=tmp_path / "mae.pt")
    assert np.all(np.isfinite(result.losses)) and next(result.model.parameters()).is_cuda
    tune = FinetuneConfig(**{**TUNE.to_dict(), "device": "cuda", "bf16": True})
    result = finetune(*toy, tune, init=tmp_path / "mae.pt", checkpoint=tmp_path / "aff.pt")
    assert np.all(np.isfinite(result.losses))
    model = load_affinity_model(tmp_path / "aff.pt", device="cuda")
    x = torch.zeros(2, 1, *model.patch_shape, device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        assert model(x).shape == (2, 3, *model.patch_shape)
