"""SNGP head: distance-preserving hidden layers and a Gaussian-process output layer.

Spectral-normalised residual Gaussian process (Liu et al. 2020): the hidden
blocks h + c·relu(W h + b) have spectral norm ‖W‖ ≤ 1 (c < 1), so distances
between embeddings survive into the hidden space; the output layer is a
Gaussian process approximated by random Fourier features φ(h) of an RBF
kernel, its weights β trained as the last layer. After training, the Laplace
posterior covariance of β is computed in closed form over the training
features, Σ = (I + Σᵢ φᵢ φᵢᵀ)⁻¹ (a unit prior, every example weighing
one: the Gaussian-likelihood form), giving each input a
predictive variance var = φᵀ Σ φ: small close to the training data, near
the prior's ‖φ‖² ≈ 1 far from it. Logits are mean-field adjusted,
logits / √(1 + λ·var) with λ = π/8, so distant inputs get flatter probabilities.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from .options import HeadOptions
from .training import fit_mini_batch

#: λ of the mean-field approximation of the softmax under the GP's variance.
MEAN_FIELD_FACTOR = math.pi / 8
#: Scale of each residual branch: with ‖W‖ ≤ 1 its Lipschitz constant is at most this.
BRANCH_SCALE = 0.95


class SNGPNet(nn.Module):
    """The SNGP network; ``forward`` gives mean-field logits and the GP variance."""

    def __init__(
        self,
        dim: int,
        n_classes: int,
        *,
        hidden: int,
        blocks: int,
        random_features: int,
        length_scale: float,
    ) -> None:
        super().__init__()
        # A fixed orthogonal projection keeps input distances (trained, it could shrink them).
        projection = torch.empty(hidden, dim)
        nn.init.orthogonal_(projection)
        self.register_buffer("projection", projection)
        self.blocks = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(blocks))
        self.register_buffer("frequencies", torch.randn(random_features, hidden) / length_scale)
        self.register_buffer("phases", 2 * math.pi * torch.rand(random_features))
        self.output = nn.Linear(random_features, n_classes, bias=False)
        self.register_buffer("covariance", torch.eye(random_features))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The random Fourier features φ of the hidden representation (‖φ‖² ≈ 1)."""
        h = x @ self.projection.T
        for block in self.blocks:
            h = h + BRANCH_SCALE * torch.relu(block(h))
        scale = math.sqrt(2.0 / self.frequencies.shape[0])
        return scale * torch.cos(torch.addmm(self.phases, h, self.frequencies.T))

    def train_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The GP's posterior-mean logits (what training fits)."""
        return self.output(self.features(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        phi = self.features(x)
        variance = ((phi @ self.covariance) * phi).sum(dim=1)
        logits = self.output(phi) / torch.sqrt(1 + MEAN_FIELD_FACTOR * variance)[:, None]
        return logits, variance


def build(dim: int, n_classes: int, options: HeadOptions) -> SNGPNet:
    """An untrained SNGP head (random features drawn from torch's random state)."""
    return SNGPNet(
        dim,
        n_classes,
        hidden=options.hidden,
        blocks=options.blocks,
        random_features=options.random_features,
        length_scale=options.length_scale or math.sqrt(dim),
    )


def fit(
    x: torch.Tensor,
    y: torch.Tensor,
    weights: torch.Tensor,
    *,
    n_classes: int,
    options: HeadOptions,
    generator: torch.Generator,
) -> SNGPNet:
    """Train the SNGP head, then compute its posterior covariance over ``x``."""
    net = build(x.shape[1], n_classes, options)
    for block in net.blocks:
        spectral_norm(block)
    fit_mini_batch(net, x, y, weights, options=options, generator=generator)
    # Fix the normalised weights (eval: no more power iterations): a plain, faster network.
    net.eval()
    for block in net.blocks:
        parametrize.remove_parametrizations(block, "weight", leave_parametrized=True)
    with torch.no_grad():
        phi = net.features(x)
        # Every example weighs one. Weighing by the softmax curvature p (1 - p) instead
        # lets confidently fitted examples add almost no precision, so the variance
        # stays near the prior everywhere and stops telling familiar inputs from others.
        phi = phi.double()
        precision = torch.eye(phi.shape[1], dtype=torch.float64) + phi.T @ phi
        covariance = torch.cholesky_inverse(torch.linalg.cholesky(precision))
        net.covariance.copy_(covariance.float())
    return net
