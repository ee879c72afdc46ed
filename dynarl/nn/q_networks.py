"""Action-value networks for discrete actions: Q(s, .) for every action in one forward pass (DQN family)."""

from __future__ import annotations

import math

import torch
from torch import nn

from dynarl.nn.mlp import Linear, mlp


class QNetwork(nn.Module):
    """Q_phi(s, .): observations [B, *obs_shape] -> action values [B, n_actions].

    Observations are flattened. ``scale_uint8`` casts uint8 images to float and divides by 255 (the buffer
    keeps them as uint8, so the cast happens here, once per batch). ``n_obs_categories`` one-hot encodes
    Discrete observations given as indices ([B] or [B, 1]).

    With ``dueling`` (Wang et al. 2016, eq. 9) the last hidden layer feeds two heads, a state value V(s)
    and advantages A(s, a), combined as

        Q(s, a) = V(s) + A(s, a) - 1/|A| sum_a' A(s, a')

    so that the advantages have mean zero over actions and V is identifiable.
    """

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, hidden_sizes: tuple[int, ...] = (64, 64), dueling: bool = False,
                 scale_uint8: bool = False, n_obs_categories: int | None = None):
        super().__init__()
        self.obs_shape = tuple(obs_shape)
        self.n_actions = int(n_actions)
        self.dueling = bool(dueling)
        self.scale_uint8 = bool(scale_uint8)
        self.n_obs_categories = None if n_obs_categories is None else int(n_obs_categories)
        in_dim = self.n_obs_categories if self.n_obs_categories is not None else int(math.prod(self.obs_shape))
        hidden = tuple(hidden_sizes)
        if dueling:
            # shared trunk ending in an activation, then the two streams (one linear layer each)
            self.trunk = nn.Sequential(*mlp(in_dim, hidden[:-1], hidden[-1]), nn.ReLU())
            self.value = Linear(hidden[-1], 1)
            self.advantage = Linear(hidden[-1], self.n_actions)
        else:
            self.net = mlp(in_dim, hidden, self.n_actions)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """The flat float input: one-hot for Discrete observations, /255 for uint8 images."""
        if self.n_obs_categories is not None:
            return nn.functional.one_hot(obs.reshape(-1).long(), self.n_obs_categories).float()
        x = obs.reshape(obs.shape[0], -1)
        if self.scale_uint8:
            return x.float() / 255.0
        return x.float()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.features(obs)
        if not self.dueling:
            return self.net(x).float()  # float32 under bf16 autocast too, as every network here returns
        h = self.trunk(x)
        adv = self.advantage(h).float()
        return self.value(h).float() + adv - adv.mean(1, keepdim=True)

    def advantages(self, obs: torch.Tensor) -> torch.Tensor:
        """A(s, .) - mean_a A(s, a) of the dueling head (mean zero over actions); for tests and diagnostics."""
        if not self.dueling:
            raise ValueError("advantages() needs dueling=True")
        adv = self.advantage(self.trunk(self.features(obs)))
        return adv - adv.mean(1, keepdim=True)


__all__ = ["QNetwork"]
