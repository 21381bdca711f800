"""Augmentations: invariants, determinism and the EM/mask channel rules."""

from __future__ import annotations

import pytest
import torch

from napari_segclr.exceptions import ShapeMismatchError
from napari_segclr.model import (
    ModelConfig,
    RandomAxisPermutation,
    RandomFlip,
    RandomIntensity,
    SegclrAugment,
    equivalent_axes,
    get_preset,
)


def random_views(batch: int = 8, channels: int = 1, shape=(9, 9, 9), seed: int = 0):
    return torch.rand(batch, channels, *shape, generator=torch.Generator().manual_seed(seed))


def masked_em_views(batch: int = 8, shape=(9, 9, 9), seed: int = 0):
    """(B, 3, …) views: EM, the segment mask, and EM inside the segment."""
    g = torch.Generator().manual_seed(seed)
    em = torch.rand(batch, 1, *shape, generator=g) * 0.9 + 0.05
    mask = (torch.rand(batch, 1, *shape, generator=g) < 0.4).float()
    return torch.cat([em, mask, em * mask], dim=1)


def test_flipping_twice_with_the_same_draws_is_the_identity():
    views = random_views()
    once = RandomFlip(seed=3)(views)
    assert not torch.equal(once, views)
    assert torch.equal(RandomFlip(seed=3)(once), views)


def test_flip_with_certainty_flips_every_axis():
    views = random_views()
    assert torch.equal(RandomFlip(p=1.0)(views), views.flip(2, 3, 4))
    assert torch.equal(RandomFlip(axes=("x",), p=1.0)(views), views.flip(4))
    assert torch.equal(RandomFlip(p=0.0)(views), views)


def test_flips_are_drawn_per_sample():
    views = random_views(batch=1).expand(16, -1, -1, -1, -1).contiguous()
    out = RandomFlip(seed=0)(views)
    distinct = {tuple(out[i].flatten()[:20].tolist()) for i in range(16)}
    assert len(distinct) > 2


def test_permutation_keeps_each_sample_values():
    views = random_views(batch=16)
    out = RandomAxisPermutation(seed=1)(views)
    assert out.shape == views.shape
    assert not torch.equal(out, views)
    for before, after in zip(views, out, strict=True):
        assert torch.equal(before.flatten().sort().values, after.flatten().sort().values)
        assert any(
            torch.equal(after, before.permute(0, *order))
            for order in [(1, 2, 3), (1, 3, 2), (2, 1, 3), (2, 3, 1), (3, 1, 2), (3, 2, 1)]
        )


def test_yx_permutation_leaves_z_alone():
    views = random_views(batch=16, shape=(5, 7, 7))
    out = RandomAxisPermutation(axes=("y", "x"), seed=0)(views)
    assert torch.allclose(out.sum(dim=(3, 4)), views.sum(dim=(3, 4)))
    assert not torch.equal(out, views)


def test_permuting_unequal_axes_is_refused():
    with pytest.raises(ShapeMismatchError, match="permuted"):
        RandomAxisPermutation()(random_views(shape=(5, 7, 7)))
    with pytest.raises(ValueError, match="at least two"):
        RandomAxisPermutation(axes=("z",))
    with pytest.raises(ValueError, match="distinct axes"):
        RandomFlip(axes=("x", "x"))


def test_intensity_keeps_masks_binary_and_outside_of_masked_em_zero():
    views = masked_em_views()
    out = RandomIntensity(("em", "mask", "masked_em"), seed=0)(views)
    em, mask, masked = out[:, 0], out[:, 1], out[:, 2]
    assert torch.equal(mask, views[:, 1])
    assert torch.equal(masked[views[:, 1] == 0], torch.zeros_like(masked[views[:, 1] == 0]))
    assert not torch.equal(em, views[:, 0])
    assert not torch.equal(masked, views[:, 2])
    assert out.min() >= 0 and out.max() <= 1
    # EM and masked EM of one sample get the same change.
    inside = views[:, 1] > 0
    assert torch.allclose(masked[inside], em[inside])


def test_intensity_parameters_vary_per_sample():
    views = torch.full((8, 1, 4, 4, 4), 0.5)
    out = RandomIntensity(("em",), seed=0)(views)
    per_sample = out.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample))
    assert per_sample[:, 0].unique().numel() == 8


def test_intensity_stays_within_the_documented_ranges():
    views = torch.full((256, 1, 2, 2, 2), 0.5)
    out = RandomIntensity(("em",), seed=0)(views)[:, 0, 0, 0, 0]
    lowest = ((0.5 * 0.75 - 0.25) ** 2.0, (0.5 * 1.25 + 0.25) ** 0.5)
    assert out.min() >= lowest[0] - 1e-6 and out.max() <= lowest[1] + 1e-6
    assert out.max() - out.min() > 0.5


def test_intensity_refuses_views_with_other_channels():
    with pytest.raises(ShapeMismatchError, match="channels"):
        RandomIntensity(("em", "mask"))(random_views(channels=1))
    with pytest.raises(ValueError, match="input_kinds"):
        RandomIntensity(("raw",))


@pytest.mark.parametrize("transform", [RandomIntensity, RandomFlip, RandomAxisPermutation])
def test_a_seed_fixes_the_draws(transform):
    views = random_views()
    args = (("em",),) if transform is RandomIntensity else ()
    first = transform(*args, seed=5)(views)
    assert torch.equal(first, transform(*args, seed=5)(views))
    assert not torch.equal(first, transform(*args, seed=6)(views))


def test_segclr_augment_composes_and_is_deterministic():
    cfg = get_preset("tiny")
    views = random_views(batch=4, shape=cfg.view_shape)
    augment = SegclrAugment.from_config(cfg, seed=0)
    assert [type(t) for t in augment] == [RandomIntensity, RandomFlip, RandomAxisPermutation]
    out = augment(views)
    assert out.shape == views.shape
    assert torch.equal(out, SegclrAugment.from_config(cfg, seed=0)(views))
    assert not torch.equal(out, SegclrAugment.from_config(cfg, seed=1)(views))
    # Later calls draw afresh.
    assert not torch.equal(out, augment(views))


def test_anisotropic_views_permute_only_y_and_x():
    cfg = ModelConfig(view_shape=(33, 65, 65), voxel_size_nm=(40.0, 32.0, 32.0))
    assert equivalent_axes(cfg) == ("y", "x")
    augment = SegclrAugment.from_config(cfg, seed=0)
    assert augment[2].axes == ("y", "x")
    assert equivalent_axes(ModelConfig(voxel_size_nm=(40.0, 32.0, 30.0))) == ()
    assert len(SegclrAugment(("em",), permute_axes=())) == 2


def test_channels_last_and_bfloat16_views_are_accepted():
    views = masked_em_views()[:, 2:].contiguous(memory_format=torch.channels_last_3d)
    views = views.to(torch.bfloat16)
    out = SegclrAugment(("masked_em",), seed=0)(views)
    assert out.dtype == torch.bfloat16
    assert torch.isfinite(out).all()
    intensity_only = RandomIntensity(("masked_em",), seed=0)(views)
    assert torch.equal(intensity_only[views == 0], views[views == 0])


def test_non_float_views_are_refused():
    with pytest.raises(ShapeMismatchError, match="float"):
        RandomFlip()(torch.zeros(2, 1, 4, 4, 4, dtype=torch.uint8))
