"""Fitting a head's network: class weights, the loss, full-batch L-BFGS and mini-batch Adam.

The optimisers are written here rather than taken from ``torch.optim``: a
torch optimiser imports ``torch._dynamo`` when first built, which costs
seconds, and the first refit in the napari plugin must be as quick as the
others.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.optimize
import torch
from torch import nn
from torch.nn import functional as F

from .options import HeadOptions

_BETAS = (0.9, 0.999)
_EPS = 1e-8


def class_weights(y: torch.Tensor, n_classes: int, *, balance: bool) -> torch.Tensor:
    """Per-class loss weights: inverse class frequency (mean 1 per example) or all ones."""
    if not balance:
        return torch.ones(n_classes)
    counts = torch.bincount(y, minlength=n_classes).to(torch.float32)
    return len(y) / (n_classes * counts)


def penalised_loss(
    logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, net: nn.Module, l2: float
) -> torch.Tensor:
    """Weighted cross-entropy plus ``l2 / 2`` times the squared weights (biases are free)."""
    loss = F.cross_entropy(logits, y, weight=weights)
    penalty = sum(p.square().sum() for name, p in net.named_parameters() if name.endswith("weight"))
    return loss + 0.5 * l2 * penalty


def fit_full_batch(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    weights: torch.Tensor,
    *,
    l2: float,
    max_iter: int,
) -> None:
    """Minimise the loss over all examples at once with L-BFGS (for convex heads)."""
    params = list(net.parameters())

    def loss_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
        _set_parameters(params, theta)
        loss = penalised_loss(net.train_logits(x), y, weights, net, l2)
        gradients = torch.autograd.grad(loss, params)
        return float(loss.detach()), torch.cat([g.reshape(-1) for g in gradients]).double().numpy()

    start = torch.cat([p.detach().reshape(-1) for p in params]).double().numpy()
    result = scipy.optimize.minimize(
        loss_and_gradient,
        start,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": 1e-6},
    )
    _set_parameters(params, result.x)


def _set_parameters(params: list[nn.Parameter], theta: np.ndarray) -> None:
    values = torch.from_numpy(theta).to(torch.float32)
    at = 0
    with torch.no_grad():
        for p in params:
            p.copy_(values[at : at + p.numel()].view_as(p))
            at += p.numel()


def fit_mini_batch(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    weights: torch.Tensor,
    *,
    options: HeadOptions,
    generator: torch.Generator,
) -> None:
    """``options.steps`` Adam steps on shuffled mini-batches, the rate decaying to 0.

    The cost is ``steps`` batches whatever the number of examples, so a refit
    takes the same time for a hundred labels as for ten thousand.
    """
    n = len(x)
    steps, batch = options.steps, min(options.batch_size, n)
    per_epoch = n // batch  # full batches only: a tiny last batch would be a noisy step
    params = list(net.parameters())
    first = [torch.zeros_like(p) for p in params]
    second = [torch.zeros_like(p) for p in params]
    (beta1, beta2) = _BETAS
    net.train()
    order = torch.randperm(n, generator=generator)
    for step in range(steps):
        at = step % per_epoch
        if at == 0 and step:
            order = torch.randperm(n, generator=generator)
        rows = order[at * batch : (at + 1) * batch]
        loss = penalised_loss(net.train_logits(x[rows]), y[rows], weights, net, options.l2)
        gradients = torch.autograd.grad(loss, params)
        # Adam, with a cosine decay of the rate to 0 over the steps.
        rate = options.learning_rate * 0.5 * (1 + math.cos(math.pi * step / steps))
        t = step + 1
        size = rate * math.sqrt(1 - beta2**t) / (1 - beta1**t)
        with torch.no_grad():
            for p, g, m, v in zip(params, gradients, first, second, strict=True):
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                p.addcdiv_(m, v.sqrt().add_(_EPS), value=-size)
    net.eval()
