"""The SegCLR model: shapes, precision modes, training, FLOPs and checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from napari_segclr.exceptions import CheckpointError, SegclrError, ShapeMismatchError
from napari_segclr.model import (
    ModelConfig,
    NTXentLoss,
    SegclrModel,
    count_flops,
    get_preset,
    load_checkpoint,
    model_signature,
    save_checkpoint,
)

TINY = get_preset("tiny")


def views_for(config: ModelConfig, batch: int = 4, seed: int = 0) -> torch.Tensor:
    shape = (batch, config.in_channels, *config.view_shape)
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def tiny_model() -> SegclrModel:
    torch.manual_seed(0)
    return SegclrModel(TINY).eval()


def test_tiny_model_gives_64d_embeddings_and_16d_projections(tiny_model):
    embedding, projection = tiny_model(views_for(TINY))
    assert embedding.shape == (4, 64)
    assert projection.shape == (4, 16)
    assert torch.equal(embedding, tiny_model.embed(views_for(TINY)))


@torch.inference_mode()
def test_lite_model_embeds_one_view():
    cfg = get_preset("lite")
    embedding, projection = SegclrModel(cfg).eval()(views_for(cfg, batch=1))
    assert embedding.shape == (1, 64) and projection.shape == (1, 16)
    assert torch.isfinite(embedding).all()


def test_paper_model_shapes_on_the_meta_device():
    cfg = get_preset("paper")
    with torch.device("meta"):
        model = SegclrModel(cfg).eval()
        embedding, projection = model(torch.empty(2, 1, *cfg.view_shape))
    assert embedding.shape == (2, 64) and projection.shape == (2, 16)
    assert model.encoder.backbone.layer4[-1].conv2.out_channels == 512
    assert model.encoder.backbone.conv1.kernel_size == (7, 7, 7)
    assert model.encoder.backbone.conv1.stride == (2, 2, 2)


def test_input_channels_follow_the_input_kinds():
    cfg = ModelConfig.from_dict({**TINY.to_dict(), "input_kinds": ["em", "mask", "masked_em"]})
    model = SegclrModel(cfg).eval()
    assert model.encoder.backbone.conv1.in_channels == 3
    assert model.embed(views_for(cfg)).shape == (4, 64)


def test_views_of_the_wrong_shape_or_dtype_are_refused(tiny_model):
    with pytest.raises(ShapeMismatchError, match=r"\(B, 1, 17, 17, 17\)"):
        tiny_model.embed(torch.rand(2, 1, 16, 17, 17))
    with pytest.raises(ShapeMismatchError):
        tiny_model.embed(torch.rand(2, 2, 17, 17, 17))
    with pytest.raises(TypeError, match="float or uint8"):
        tiny_model.embed(torch.zeros(2, 1, 17, 17, 17, dtype=torch.int16))


@torch.inference_mode()
def test_uint8_views_embed_as_the_floats_they_stand_for(tiny_model):
    quantised = (views_for(TINY) * 255).round().to(torch.uint8)
    as_floats = quantised.float() / 255
    assert torch.equal(tiny_model.embed(quantised), tiny_model.embed(as_floats))


@torch.inference_mode()
def test_channels_last_gives_the_same_embeddings(tiny_model):
    views = views_for(TINY)
    expected = tiny_model.embed(views)
    model = tiny_model.to(memory_format=torch.channels_last_3d)
    got = model.embed(views.contiguous(memory_format=torch.channels_last_3d))
    assert torch.allclose(got, expected, atol=1e-4)


@torch.inference_mode()
def test_bfloat16_autocast_runs_and_stays_finite(tiny_model):
    views = views_for(TINY).contiguous(memory_format=torch.channels_last_3d)
    model = tiny_model.to(memory_format=torch.channels_last_3d)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embedding, projection = model(views)
    assert torch.isfinite(embedding.float()).all() and torch.isfinite(projection.float()).all()
    assert torch.allclose(embedding.float(), tiny_model.embed(views), atol=0.2, rtol=0.1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bfloat16_channels_last_forward():
    model = SegclrModel(TINY).cuda().eval().to(memory_format=torch.channels_last_3d)
    views = views_for(TINY).cuda().contiguous(memory_format=torch.channels_last_3d)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        embedding, projection = model(views)
    assert embedding.shape == (4, 64) and projection.shape == (4, 16)
    assert torch.isfinite(embedding.float()).all() and torch.isfinite(projection.float()).all()


def test_a_few_optimisation_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = SegclrModel(TINY).train()
    loss_fn = NTXentLoss(TINY.temperature)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    # Random pairs: each view and a noisy copy of it.
    g = torch.Generator().manual_seed(1)
    views1 = views_for(TINY, batch=8)
    views2 = views1 + 0.05 * torch.randn(views1.shape, generator=g)

    losses = []
    for _ in range(10):
        loss = loss_fn(model(views1)[1], model(views2)[1])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_flops_are_positive_and_ordered_by_preset():
    paper, lite, tiny = (count_flops(get_preset(n)) for n in ("paper", "lite", "tiny"))
    assert paper > lite > tiny > 0
    # The 7³ stride-2 stem alone: 65³ outputs × 64 channels × 343 taps, 2 FLOPs each.
    stem = 2 * 65**3 * 64 * 343
    assert stem < paper < 10 * stem


@torch.inference_mode()
def test_checkpoint_round_trip_gives_the_same_model(tmp_path, tiny_model):
    path = tmp_path / "model.pt"
    extra = {"data": {"volume": "fib25/sample2", "voxel_size_nm": [10, 10, 10]}, "steps": 3}
    save_checkpoint(path, tiny_model, extra=extra)
    model, got_extra = load_checkpoint(path)
    assert got_extra == extra
    assert model.config == TINY
    assert not model.training
    views = views_for(TINY)
    assert torch.equal(model.embed(views), tiny_model.embed(views))
    assert model_signature(model) == model_signature(tiny_model)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_saving_replaces_an_existing_checkpoint(tmp_path, tiny_model):
    path = tmp_path / "model.pt"
    save_checkpoint(path, tiny_model, extra={"run": 1})
    save_checkpoint(path, tiny_model, extra={"run": 2})
    assert load_checkpoint(path)[1] == {"run": 2}


def test_extra_must_be_json(tmp_path, tiny_model):
    with pytest.raises(ValueError, match="extra"):
        save_checkpoint(tmp_path / "model.pt", tiny_model, extra={"when": object()})
    assert list(tmp_path.iterdir()) == []


def test_missing_checkpoint_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist") as info:
        load_checkpoint(tmp_path / "absent.pt")
    assert isinstance(info.value, SegclrError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00garbage" * 100, json.dumps({"format": "napari-segclr/model"}).encode()],
    ids=["empty", "garbage", "json"],
)
def test_files_that_are_not_checkpoints_are_refused(tmp_path, content):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a napari-segclr checkpoint"):
        load_checkpoint(path)


def test_truncated_and_foreign_torch_files_are_refused(tmp_path, tiny_model):
    path = tmp_path / "model.pt"
    save_checkpoint(path, tiny_model, extra={})
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="not a napari-segclr checkpoint"):
        load_checkpoint(path)
    torch.save({"state_dict": tiny_model.state_dict()}, path)
    with pytest.raises(CheckpointError, match="not a napari-segclr checkpoint"):
        load_checkpoint(path)


def test_weights_that_do_not_match_the_stored_config_are_refused(tmp_path, tiny_model):
    path = tmp_path / "model.pt"
    save_checkpoint(path, tiny_model, extra={})
    payload = torch.load(path, weights_only=True)
    payload["config"]["stage_widths"] = [16, 32, 64, 128]
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(path)
    payload["config"] = {"view_shape": [0, 1, 2]}
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="invalid model config"):
        load_checkpoint(path)


def test_signature_tracks_weights_and_config(tiny_model):
    signature = model_signature(tiny_model)
    assert signature == model_signature(tiny_model)
    assert len(signature) == 64
    other = SegclrModel(ModelConfig.from_dict({**TINY.to_dict(), "temperature": 0.2}))
    other.load_state_dict(tiny_model.state_dict())
    assert model_signature(other) != signature
    with torch.no_grad():
        tiny_model.encoder.backbone.conv1.weight[0, 0, 0, 0, 0] += 1e-3
    assert model_signature(tiny_model) != signature
