"""Stochastic policies and value networks of the policy-gradient family (REINFORCE, A2C, PPO, TRPO).

A policy maps observations to *distribution parameters*, one tensor per row, so a rollout can keep them
and TRPO can take the KL between the old and the new policy in closed form:

- :class:`CategoricalPolicy` (discrete actions): normalised logits ``log pi(.|s)``, shape [B, n];
- :class:`GaussianPolicy` (continuous actions): ``[mean, log_std]``, shape [B, 2 |A|], with a
  state-independent ``log_std`` as in the TRPO/PPO papers. Actions are unbounded samples in normalised
  units; the loop clips them to [-1, 1] and rescales to the env's bounds (the stored action, and so its
  log-probability, stays the unclipped sample).

Each exposes ``log_prob(params, act)``, ``entropy(params)``, ``sample(params)``, ``mode(params)`` and
``kl(old, new)`` (``D_KL(pi_old || pi_new)`` per row). They are written as plain tensor maths rather than
``torch.distributions`` objects: the update calls them thousands of times per rollout on small batches,
where the objects' construction and checks cost more than the maths.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dynarl.nn.mlp import mlp
from dynarl.nn.noise import normal_like, uniform_like

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "silu": nn.SiLU, "elu": nn.ELU}
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def orthogonal_init(net: nn.Sequential, output_gain: float) -> None:
    """Orthogonal weights, zero biases: gain sqrt(2) on hidden layers, ``output_gain`` on the last (PPO/SB3 practice)."""
    linears = [m for m in net if isinstance(m, nn.Linear)]
    for i, layer in enumerate(linears):
        nn.init.orthogonal_(layer.weight, gain=output_gain if i == len(linears) - 1 else math.sqrt(2))
        nn.init.zeros_(layer.bias)


class CategoricalPolicy(nn.Module):
    """pi_theta(a|s) = softmax(logits_theta(s)); parameters are the normalised logits [B, n]."""

    discrete = True

    def __init__(self, obs_dim: int, n_actions: int, hidden: tuple[int, ...], activation: str = "tanh", ortho_init: bool = True):
        super().__init__()
        self.net = mlp(obs_dim, hidden, n_actions, ACTIVATIONS[activation])
        if ortho_init:
            orthogonal_init(self.net, 0.01)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.net(obs), dim=-1)

    @staticmethod
    def log_prob(params: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return params.gather(-1, act.long().unsqueeze(-1)).squeeze(-1)

    @staticmethod
    def entropy(params: torch.Tensor) -> torch.Tensor:
        return -(params.exp() * params).sum(-1)

    @staticmethod
    def sample(params: torch.Tensor) -> torch.Tensor:
        # Gumbel-max: argmax(log p + G) ~ Categorical(p), one fused pass without a CDF search
        u = uniform_like(params)
        return (params - torch.log(-torch.log(u.clamp_min(1e-20)))).argmax(-1)

    @staticmethod
    def mode(params: torch.Tensor) -> torch.Tensor:
        return params.argmax(-1)

    @staticmethod
    def kl(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        return (old.exp() * (old - new)).sum(-1)


class GaussianPolicy(nn.Module):
    """pi_theta(a|s) = N(mu_theta(s), diag(exp(log_std))^2); parameters are ``[mean, log_std]`` [B, 2|A|]."""

    discrete = False

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], activation: str = "tanh", ortho_init: bool = True, log_std_init: float = 0.0):
        super().__init__()
        self.act_dim = act_dim
        self.net = mlp(obs_dim, hidden, act_dim, ACTIVATIONS[activation])
        if ortho_init:
            orthogonal_init(self.net, 0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        mean = self.net(obs)
        return torch.cat([mean, self.log_std.expand_as(mean)], dim=-1)

    @staticmethod
    def log_prob(params: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        mean, log_std = params.chunk(2, dim=-1)
        z = (act - mean) * torch.exp(-log_std)
        return (-0.5 * z.square() - log_std - _HALF_LOG_2PI).sum(-1)

    @staticmethod
    def entropy(params: torch.Tensor) -> torch.Tensor:
        _, log_std = params.chunk(2, dim=-1)
        return (log_std + 0.5 + _HALF_LOG_2PI).sum(-1)

    @staticmethod
    def sample(params: torch.Tensor) -> torch.Tensor:
        mean, log_std = params.chunk(2, dim=-1)
        return mean + log_std.exp() * normal_like(mean)

    @staticmethod
    def mode(params: torch.Tensor) -> torch.Tensor:
        return params.chunk(2, dim=-1)[0]

    @staticmethod
    def kl(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """KL(N(m0, s0^2) || N(m1, s1^2)) = log s1/s0 + (s0^2 + (m0 - m1)^2) / (2 s1^2) - 1/2, summed over dims."""
        m0, ls0 = old.chunk(2, dim=-1)
        m1, ls1 = new.chunk(2, dim=-1)
        return (ls1 - ls0 + (torch.exp(2 * ls0) + (m0 - m1).square()) / (2 * torch.exp(2 * ls1)) - 0.5).sum(-1)


class ValueNet(nn.Module):
    """V_phi(s): an MLP with one output, returned as [B]."""

    def __init__(self, obs_dim: int, hidden: tuple[int, ...], activation: str = "tanh", ortho_init: bool = True):
        super().__init__()
        self.net = mlp(obs_dim, hidden, 1, ACTIVATIONS[activation])
        if ortho_init:
            orthogonal_init(self.net, 1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


def make_policy(obs_dim: int, action_space, hidden: tuple[int, ...], activation: str, ortho_init: bool, log_std_init: float = 0.0) -> nn.Module:
    """A categorical policy for a Discrete space, a Gaussian one for a Box space."""
    from gymnasium import spaces

    if isinstance(action_space, spaces.Discrete):
        return CategoricalPolicy(obs_dim, int(action_space.n), hidden, activation, ortho_init)
    return GaussianPolicy(obs_dim, int(math.prod(action_space.shape)), hidden, activation, ortho_init, log_std_init)


__all__ = ["CategoricalPolicy", "GaussianPolicy", "ValueNet", "make_policy", "orthogonal_init"]
