"""NT-Xent, the SimCLR contrastive loss that SegCLR trains with."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, *, temperature: float = 0.1) -> torch.Tensor:
    """Normalised-temperature cross-entropy of two batches of projections.

    Row ``i`` of ``z1`` and row ``i`` of ``z2`` are two views of one segment (a
    positive pair); every other view in the 2B batch is a negative. Projections
    are L2-normalised, so their scale does not matter. Computed in float32 whatever
    the input dtype or an enclosing autocast, so bf16/fp16 projections stay finite.

    Parameters
    ----------
    z1, z2
        Projections (B, D) of the first and second view of each pair.
    temperature
        Softmax temperature (SegCLR: 0.1).

    Returns
    -------
    The mean loss over the 2B views, a scalar tensor (0 for B = 1: no negatives).
    """
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(
            f"z1 and z2 must be two (B, D) tensors of one shape, got {tuple(z1.shape)} "
            f"and {tuple(z2.shape)}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    batch = z1.shape[0]
    with torch.autocast(z1.device.type, enabled=False):
        z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
        logits = z @ z.T / temperature
        self_pairs = torch.eye(2 * batch, dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(self_pairs, float("-inf"))
        # View i's partner sits B rows away, in the other half.
        partner = torch.arange(2 * batch, device=z.device).roll(batch)
        return F.cross_entropy(logits, partner)


class NTXentLoss(nn.Module):
    """:func:`nt_xent_loss` as a module: ``NTXentLoss(temperature=0.1)(z1, z2)``.

    Examples
    --------
    >>> import torch
    >>> loss = NTXentLoss(temperature=0.1)
    >>> z = torch.randn(8, 16)
    >>> bool(loss(z, z) < loss(z, torch.randn(8, 16)))
    True
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        self.temperature = temperature

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return nt_xent_loss(z1, z2, temperature=self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
