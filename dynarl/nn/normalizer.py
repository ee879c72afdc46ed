"""Per-dimension standardisation of model inputs and outputs, with statistics from the data."""

from __future__ import annotations

import torch
from torch import nn


class Normalizer(nn.Module):
    """x -> (x - mean) / std, fitted on training data; saved with the model (buffers).

    Dimensions with (near) zero spread get std 1 instead of a huge factor, as in MBPO's
    ``StandardScaler``: a constant input carries no information and must not blow up.
    """

    def __init__(self, dim: int, eps: float = 1e-8):
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).to(self.mean)
        self.mean.copy_(x.mean(0))
        std = x.std(0, correction=0) if x.shape[0] > 1 else torch.ones_like(self.std)
        self.std.copy_(torch.where(std < self.eps, torch.ones_like(std), std))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean

    def denormalize_var(self, var: torch.Tensor) -> torch.Tensor:
        """A variance in normalised units, in data units."""
        return var * self.std.square()
