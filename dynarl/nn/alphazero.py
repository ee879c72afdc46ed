"""AlphaZero's policy-value network f_theta(s) = (p, v) (Silver et al. 2017/2018), small: an MLP over the board planes."""

from __future__ import annotations

import torch
from torch import nn

from dynarl.nn.mlp import Linear, mlp


class PolicyValueNet(nn.Module):
    """(p logits [B, A], v [B] in (-1, 1)) from observations [B, *obs_shape] (flattened board planes).

    One MLP trunk, a linear policy head and a tanh value head (AlphaGo Zero's two heads on a shared body);
    v is the expected outcome for the player to move.
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden_sizes: tuple[int, ...]):
        super().__init__()
        self.trunk = mlp(obs_dim, hidden_sizes[:-1], hidden_sizes[-1])
        self.policy = Linear(hidden_sizes[-1], n_actions)
        self.value = Linear(hidden_sizes[-1], 1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.trunk(obs.flatten(1)))
        return self.policy(h), torch.tanh(self.value(h)).squeeze(-1)
