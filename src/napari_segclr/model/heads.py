"""MLP heads: the embedding head on pooled features and the projection head.

Both follow the SegCLR/SimCLR v2 heads: each hidden layer is Linear → BatchNorm →
ReLU, the last is Linear → BatchNorm with no ReLU. Linear layers carry no bias
since the batch norm that follows has its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from torch import nn


class MLPHead(nn.Sequential):
    """A multi-layer perceptron ``in_dim → *hidden_dims → out_dim`` on (B, in_dim) inputs.

    In training mode it needs batches of two or more (batch norm statistics).
    """

    def __init__(self, in_dim: int, hidden_dims: Sequence[int], out_dim: int) -> None:
        dims = [in_dim, *hidden_dims]
        layers: list[nn.Module] = []
        for d_in, d_out in pairwise(dims):
            layers += [nn.Linear(d_in, d_out, bias=False), nn.BatchNorm1d(d_out), nn.ReLU()]
        layers += [nn.Linear(dims[-1], out_dim, bias=False), nn.BatchNorm1d(out_dim)]
        super().__init__(*layers)
        self.in_dim = in_dim
        self.out_dim = out_dim


class ProjectionHead(MLPHead):
    """The 3-layer projection of embeddings (64-d) to the space of the contrastive loss (16-d).

    Used in training only: the embedding, not the projection, is the product.

    Examples
    --------
    >>> import torch
    >>> head = ProjectionHead().eval()
    >>> head(torch.randn(4, 64)).shape
    torch.Size([4, 16])
    """

    def __init__(
        self, in_dim: int = 64, hidden_dims: Sequence[int] = (64, 64), out_dim: int = 16
    ) -> None:
        super().__init__(in_dim, hidden_dims, out_dim)
