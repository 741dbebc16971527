"""MuZero's categorical value and reward: an invertible squashing ``h`` then a two-hot code over integer bins.

A cross-entropy on bins of ``h(x)`` keeps the loss scale the same whether returns are 1 or 1,000, which a mean
squared error on raw returns does not (MuZero, appendix F).
"""

from __future__ import annotations

import torch

__all__ = ["from_support", "inverse_scale", "scale", "to_support"]

EPSILON = 1e-3


def scale(x: torch.Tensor) -> torch.Tensor:
    """``h(x) = sign(x) (sqrt(|x| + 1) - 1) + eps x``."""
    return torch.sign(x) * (torch.sqrt(torch.abs(x) + 1) - 1) + EPSILON * x


def inverse_scale(y: torch.Tensor) -> torch.Tensor:
    """The exact inverse of :func:`scale`."""
    root = (torch.sqrt(1 + 4 * EPSILON * (torch.abs(y) + 1 + EPSILON)) - 1) / (2 * EPSILON)
    return torch.sign(y) * (root**2 - 1)


def to_support(x: torch.Tensor, support_size: int) -> torch.Tensor:
    """Scalars ``(...)`` -> two-hot distributions ``(..., 2 * support_size + 1)`` over the bins of ``h(x)``."""
    y = scale(x).clamp(-support_size, support_size)
    low = y.floor()
    upper_weight = y - low
    bins = torch.zeros(*x.shape, 2 * support_size + 1, dtype=x.dtype, device=x.device)
    low_index = (low + support_size).long()
    bins.scatter_(-1, low_index.unsqueeze(-1), (1 - upper_weight).unsqueeze(-1))
    high_index = (low_index + 1).clamp(max=2 * support_size)
    # At the top bin upper_weight is 0, so adding to the clamped index changes nothing.
    bins.scatter_add_(-1, high_index.unsqueeze(-1), upper_weight.unsqueeze(-1))
    return bins


def from_support(logits: torch.Tensor, support_size: int) -> torch.Tensor:
    """Logits over the bins ``(..., 2 * support_size + 1)`` -> expected scalars ``(...)`` (through ``h^-1``)."""
    bins = torch.arange(-support_size, support_size + 1, dtype=logits.dtype, device=logits.device)
    return inverse_scale((torch.softmax(logits, -1) * bins).sum(-1))
