"""NT-Xent: against a per-sample reference, and its invariants."""

from __future__ import annotations

import math

import pytest
import torch

from napari_segclr.model import NTXentLoss, nt_xent_loss


def reference_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    """The SimCLR loss written out view by view, in float64."""
    views = [v / v.norm() for v in torch.cat([z1, z2]).double()]
    batch = z1.shape[0]
    total = 0.0
    for i, anchor in enumerate(views):
        partner = (i + batch) % (2 * batch)
        others = [
            math.exp(float(anchor @ other) / temperature) for k, other in enumerate(views) if k != i
        ]
        positive = math.exp(float(anchor @ views[partner]) / temperature)
        total += -math.log(positive / sum(others))
    return total / (2 * batch)


def pairs(batch: int = 6, dim: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, dim, generator=g), torch.randn(batch, dim, generator=g)


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("batch", [1, 2, 7])
def test_matches_the_per_sample_reference(temperature, batch):
    z1, z2 = pairs(batch, seed=batch)
    expected = reference_nt_xent(z1, z2, temperature)
    assert nt_xent_loss(z1, z2, temperature=temperature).item() == pytest.approx(expected, abs=1e-5)


def test_symmetric_in_the_two_views():
    z1, z2 = pairs()
    assert torch.allclose(nt_xent_loss(z1, z2), nt_xent_loss(z2, z1), atol=1e-6)


def test_invariant_to_a_common_permutation_of_the_pairs():
    z1, z2 = pairs()
    order = torch.randperm(z1.shape[0], generator=torch.Generator().manual_seed(1))
    assert torch.allclose(nt_xent_loss(z1, z2), nt_xent_loss(z1[order], z2[order]), atol=1e-6)


def test_invariant_to_positive_scaling_of_each_row():
    z1, z2 = pairs()
    g = torch.Generator().manual_seed(2)
    s1 = torch.rand(z1.shape[0], 1, generator=g) * 10 + 0.1
    s2 = torch.rand(z2.shape[0], 1, generator=g) * 10 + 0.1
    assert torch.allclose(nt_xent_loss(z1, z2), nt_xent_loss(z1 * s1, z2 * s2), atol=1e-5)


def test_aligned_pairs_cost_less_than_random_pairs():
    z1, z2 = pairs(batch=16)
    g = torch.Generator().manual_seed(3)
    nearly_z1 = z1 + 0.05 * torch.randn(z1.shape, generator=g)
    assert nt_xent_loss(z1, nearly_z1) < nt_xent_loss(z1, z2) - 1.0


def test_single_pair_has_no_negatives_and_zero_loss():
    z1, z2 = pairs(batch=1)
    loss = nt_xent_loss(z1, z2)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_give_a_finite_float32_loss(dtype):
    z1, z2 = pairs(batch=32)
    loss = nt_xent_loss(z1.to(dtype), z2.to(dtype))
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(nt_xent_loss(z1, z2).item(), rel=2e-2)


def test_under_autocast_the_loss_stays_float32():
    z1, z2 = pairs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nt_xent_loss(z1, z2)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(nt_xent_loss(z1, z2).item(), abs=1e-5)


def test_gradients_flow_to_both_views():
    z1, z2 = (z.requires_grad_() for z in pairs())
    NTXentLoss()(z1, z2).backward()
    assert z1.grad is not None and z2.grad is not None
    assert torch.isfinite(z1.grad).all() and z1.grad.abs().sum() > 0


def test_module_uses_its_temperature():
    z1, z2 = pairs()
    assert NTXentLoss(0.5)(z1, z2).item() == pytest.approx(reference_nt_xent(z1, z2, 0.5), abs=1e-5)
    assert "temperature=0.5" in repr(NTXentLoss(0.5))


def test_bad_inputs_are_rejected():
    z1, z2 = pairs()
    with pytest.raises(ValueError, match="z1 and z2"):
        nt_xent_loss(z1, z2[:3])
    with pytest.raises(ValueError, match="z1 and z2"):
        nt_xent_loss(z1[0], z2[0])
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(temperature=0.0)
