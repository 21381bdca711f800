"""MLP head: a shallow residual multi-layer perceptron, fitted with mini-batch Adam."""

from __future__ import annotations

import torch
from torch import nn

from .options import HeadOptions
from .training import fit_mini_batch


class ResidualMLP(nn.Module):
    """Input layer, ``blocks`` residual blocks h + relu(W h + b) of ``hidden`` units, output."""

    def __init__(self, dim: int, n_classes: int, *, hidden: int, blocks: int) -> None:
        super().__init__()
        self.input = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(blocks))
        self.output = nn.Linear(hidden, n_classes)

    def train_logits(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.input(x))
        for block in self.blocks:
            h = h + torch.relu(block(h))
        return self.output(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.train_logits(x), None


def build(dim: int, n_classes: int, options: HeadOptions) -> ResidualMLP:
    """An MLP head with PyTorch's default random initialisation."""
    return ResidualMLP(dim, n_classes, hidden=options.hidden, blocks=options.blocks)


def fit(
    x: torch.Tensor,
    y: torch.Tensor,
    weights: torch.Tensor,
    *,
    n_classes: int,
    options: HeadOptions,
    generator: torch.Generator,
) -> ResidualMLP:
    """A residual MLP trained for ``options.steps`` mini-batch steps."""
    net = build(x.shape[1], n_classes, options)
    fit_mini_batch(net, x, y, weights, options=options, generator=generator)
    return net.eval()
