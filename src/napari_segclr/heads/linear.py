"""Linear head: multinomial logistic regression, fitted full-batch with L-BFGS."""

from __future__ import annotations

import torch
from torch import nn

from .options import HeadOptions
from .training import fit_full_batch


class LinearNet(nn.Module):
    """Logits = W x + b on standardised embeddings."""

    def __init__(self, dim: int, n_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, n_classes)

    def train_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.linear(x), None


def build(dim: int, n_classes: int, options: HeadOptions) -> LinearNet:
    """An untrained linear head (zero weights: the convex fit needs no random start)."""
    net = LinearNet(dim, n_classes)
    nn.init.zeros_(net.linear.weight)
    nn.init.zeros_(net.linear.bias)
    return net


def fit(
    x: torch.Tensor,
    y: torch.Tensor,
    weights: torch.Tensor,
    *,
    n_classes: int,
    options: HeadOptions,
    generator: torch.Generator,
) -> LinearNet:
    """The L2-penalised logistic regression of ``y`` on ``x`` (a convex problem)."""
    net = build(x.shape[1], n_classes, options)
    fit_full_batch(net, x, y, weights, l2=options.l2, max_iter=options.max_iter)
    return net.eval()
