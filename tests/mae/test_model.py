"""The masked autoencoder: masking, per-patch targets, a loss on hidden patches only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segclr.exceptions import ShapeMismatchError
from napari_segclr.mae import (
    MaskedAutoencoder,
    get_preset,
    patch_targets,
    patchify,
    random_masking,
    reconstruction_loss,
)

TINY = get_preset("tiny")  # tiles (8, 16, 16), patches (4, 4, 4): 32 per tile


def tiles(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 1, *TINY.tile_shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("ratio", "hidden"), [(0.5, 16), (0.75, 24), (0.9, 29)])
def test_masking_hides_the_asked_share_of_every_tile(ratio, hidden):
    keep, mask = random_masking(64, 32, ratio, generator=torch.Generator().manual_seed(1))
    assert mask.shape == (64, 32) and mask.dtype == torch.bool
    assert mask.sum(dim=1).tolist() == [hidden] * 64
    assert keep.shape == (64, 32 - hidden)
    assert torch.all(keep[:, 1:] > keep[:, :-1])  # sorted, no repeats
    assert not mask.gather(1, keep).any()  # the kept ones are the visible ones
    assert len({tuple(row) for row in mask.tolist()}) > 60  # drawn afresh per tile
    # Every patch is hidden about as often as any other.
    share = mask.float().mean(dim=0)
    assert share.min() > ratio - 0.25 and share.max() < ratio + 0.25


def test_masking_is_reproducible_from_its_generator():
    a = random_masking(4, 32, 0.75, generator=torch.Generator().manual_seed(5))
    b = random_masking(4, 32, 0.75, generator=torch.Generator().manual_seed(5))
    c = random_masking(4, 32, 0.75, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])


def test_masking_refuses_a_ratio_that_hides_all_or_nothing():
    with pytest.raises(ValueError, match="hides 0 of 32"):
        random_masking(1, 32, 0.01)
    with pytest.raises(ValueError, match="hides 32 of 32"):
        random_masking(1, 32, 0.99)


def test_patchify_orders_patches_like_the_token_grid():
    x = tiles(1)
    patches = patchify(x, TINY.patch_shape)
    assert patches.shape == (1, 32, 64)
    _, gy, gx = TINY.grid_shape
    for index in (0, 5, 17, 31):
        z, rest = divmod(index, gy * gx)
        y, x_ = divmod(rest, gx)
        cube = x[0, 0, 4 * z : 4 * z + 4, 4 * y : 4 * y + 4, 4 * x_ : 4 * x_ + 4]
        assert torch.equal(patches[0, index], cube.reshape(-1))


def test_targets_are_normalised_per_patch():
    g = torch.Generator().manual_seed(0)
    contrast = 1 + 50 * torch.rand(3, 10, 1, generator=g)
    patches = torch.rand(3, 10, 64, generator=g) * contrast + 100 * torch.randn(
        3, 10, 1, generator=g
    )
    targets = patch_targets(patches)
    assert torch.allclose(targets.mean(-1), torch.zeros(3, 10), atol=1e-4)
    assert torch.allclose(targets.var(-1, unbiased=False), torch.ones(3, 10), atol=1e-3)
    # Brightness and contrast of a patch do not change what is to be predicted.
    shifted = patches * 3.0 + 7.0
    assert torch.allclose(patch_targets(shifted), targets, atol=1e-4)
    assert reconstruction_loss(targets, patches, torch.ones(3, 10, dtype=torch.bool)) < 1e-8


def test_loss_counts_hidden_patches_only():
    patches = torch.randn(2, 32, 64)
    _, mask = random_masking(2, 32, 0.75, generator=torch.Generator().manual_seed(0))
    prediction = torch.randn(2, 32, 64, requires_grad=True)
    loss = reconstruction_loss(prediction, patches, mask)
    loss.backward()
    grad_norm = prediction.grad.abs().sum(-1)
    assert torch.all(grad_norm[~mask] == 0) and torch.all(grad_norm[mask] > 0)
    changed = prediction.detach().clone()
    changed[~mask] += 100.0
    value = loss.item()
    assert reconstruction_loss(changed, patches, mask).item() == pytest.approx(value)
    expected = ((changed - patch_targets(patches)) ** 2).mean(-1)[mask].mean()
    assert value == pytest.approx(expected.item(), rel=1e-5)


def test_forward_shapes_and_mask_from_generator():
    torch.manual_seed(0)
    model = MaskedAutoencoder(TINY)
    x = tiles(3)
    prediction, mask = model(x, mask_ratio=0.75, generator=torch.Generator().manual_seed(2))
    assert prediction.shape == (3, 32, 64) and mask.sum().item() == 3 * 24
    _, again = model(x, mask_ratio=0.75, generator=torch.Generator().manual_seed(2))
    assert torch.equal(mask, again)


def test_encoder_sees_only_the_visible_patches():
    """Changing a hidden patch of the input leaves the encoder's tokens unchanged."""
    torch.manual_seed(0)
    model = MaskedAutoencoder(TINY).eval()
    keep, mask = random_masking(1, 32, 0.75, generator=torch.Generator().manual_seed(3))
    x = tiles(1)
    hidden = int(mask[0].nonzero()[0])
    z, rest = divmod(hidden, 16)
    y, x_ = divmod(rest, 4)
    changed = x.clone()
    changed[0, 0, 4 * z : 4 * z + 4, 4 * y : 4 * y + 4, 4 * x_ : 4 * x_ + 4] += 5.0
    with torch.no_grad():
        assert torch.equal(model.encoder(x, keep)[0], model.encoder(changed, keep)[0])
        assert not torch.equal(model.encoder(x)[0], model.encoder(changed)[0])


def test_reconstruction_loss_falls_on_a_tiny_cube():
    torch.manual_seed(0)
    model = MaskedAutoencoder(TINY)
    smooth = torch.linspace(-1, 1, 16)
    x = (smooth[None, :, None] * smooth[None, None, :]).expand(8, 16, 16)[None, None]
    x = x.repeat(4, 1, 1, 1, 1) + 0.05 * tiles(4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(30):
        generator = torch.Generator().manual_seed(step)
        prediction, mask = model(x, mask_ratio=0.75, generator=generator)
        loss = reconstruction_loss(prediction, patchify(x, TINY.patch_shape), mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_tiles_of_another_shape_are_refused():
    model = MaskedAutoencoder(TINY)
    with pytest.raises(ShapeMismatchError, match=r"\(B, 1, 8, 16, 16\).*got \(1, 1, 8, 16, 12\)"):
        model(torch.zeros(1, 1, 8, 16, 12), mask_ratio=0.5)
    with pytest.raises(TypeError, match="float"):
        model.encoder(torch.zeros(1, 1, 8, 16, 16, dtype=torch.uint8))
