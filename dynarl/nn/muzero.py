"""MuZero's three functions for vector observations (Schrittwieser et al. 2020, inventory A8):

    s^0        = h(o_t)                 representation
    r^k, s^k   = g(s^{k-1}, a^k)        dynamics: reward and next latent
    p^k, v^k   = f(s^k)                 prediction: policy logits and value

Every latent is min-max scaled to [0, 1] per row (the paper's appendix G: "we scale the hidden state to the
same range as the action input"): s <- (s - min s) / (max s - min s).

Value and reward heads are scalars, or categorical over the integer support {-S, ..., S} (appendix F) after
the invertible transform

    h(x)      = sign(x) (sqrt(|x| + 1) - 1) + eps x                       (Pohlen et al. 2018, eps = 1e-3)
    h^{-1}(y) = sign(y) (((sqrt(1 + 4 eps (|y| + 1 + eps)) - 1) / (2 eps))^2 - 1)

A scalar target becomes a two-hot vector on the support (h(x) = 3.7 -> 0.3 on 3 and 0.7 on 4) and a
categorical prediction becomes a scalar as h^{-1}(sum_i p_i i).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from dynarl.nn.mlp import mlp

EPS = 1e-3  # the transform's eps (Pohlen et al. 2018; MuZero appendix F)


def h_transform(x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """h(x) = sign(x) (sqrt(|x| + 1) - 1) + eps x."""
    return torch.sign(x) * (torch.sqrt(x.abs() + 1.0) - 1.0) + eps * x


def h_inverse(y: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """h^{-1}(y) = sign(y) (((sqrt(1 + 4 eps (|y| + 1 + eps)) - 1) / (2 eps))^2 - 1), the exact inverse of h."""
    return torch.sign(y) * (((torch.sqrt(1.0 + 4.0 * eps * (y.abs() + 1.0 + eps)) - 1.0) / (2.0 * eps)) ** 2 - 1.0)


def scalar_to_support(x: torch.Tensor, support_size: int) -> torch.Tensor:
    """Two-hot target [..., 2S+1] of h(x) clipped to [-S, S]: mass (1 - frac) on floor(h(x)), frac on the next integer."""
    y = h_transform(x).clamp(-support_size, support_size)
    low = y.floor()
    frac = y - low
    low_idx = (low + support_size).long()
    high_idx = (low_idx + 1).clamp(max=2 * support_size)  # y = S exactly: frac is 0, the clamp keeps the index in range
    out = torch.zeros(*x.shape, 2 * support_size + 1, dtype=x.dtype, device=x.device)
    out.scatter_add_(-1, low_idx.unsqueeze(-1), (1.0 - frac).unsqueeze(-1))
    out.scatter_add_(-1, high_idx.unsqueeze(-1), frac.unsqueeze(-1))
    return out


def support_to_scalar(logits: torch.Tensor, support_size: int) -> torch.Tensor:
    """h^{-1}(E_{softmax(logits)}[i]) over the support {-S, ..., S}: [..., 2S+1] -> [...]."""
    support = torch.arange(-support_size, support_size + 1, dtype=logits.dtype, device=logits.device)
    return h_inverse((F.softmax(logits, -1) * support).sum(-1))


def min_max_scale(s: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each row scaled to [0, 1]: (s - min) / (max - min), the range floored at ``eps`` for a constant row."""
    lo = s.min(-1, keepdim=True).values
    hi = s.max(-1, keepdim=True).values
    return (s - lo) / (hi - lo).clamp_min(eps)


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """The value of ``x`` with its gradient multiplied by ``scale`` (the paper's ``scale_gradient``)."""
    return x * scale + x.detach() * (1.0 - scale)


REWARD_FROM = ("transition", "next_state")


class MuZeroNetwork(nn.Module):
    """h, g and f as MLPs for flat observations and ``n_actions`` discrete actions.

    ``value_support`` / ``reward_support``: S of the categorical heads (output 2S+1 logits), 0 for a scalar
    head (one output). The dynamics takes (s, one_hot(a)) and gives both r^k and s^k, as g(s^{k-1}, a^k); the
    prediction gives both p^k and v^k from s^k. Each is one MLP whose hidden layers the two outputs share. The
    value and reward rows of the last layers start at zero, so the first predictions are 0 (uniform logits on a
    symmetric support also mean 0).

    ``reward_from="next_state"``: r^k comes from a reward MLP on the new state s^k instead (as LightZero's
    dynamics network, whose reward head reads the next latent): a reward that depends on the position reached,
    like a completed line, is then a function of s^k alone, not of an interaction between s^{k-1} and the action.
    """

    def __init__(self, obs_dim: int, n_actions: int, latent_dim: int = 64, hidden_sizes: tuple[int, ...] = (64,), value_support: int = 10, reward_support: int = 10,
                 reward_from: str = "transition"):
        super().__init__()
        self.obs_dim, self.n_actions, self.latent_dim = int(obs_dim), int(n_actions), int(latent_dim)
        self.value_support, self.reward_support = int(value_support), int(reward_support)
        hidden = tuple(hidden_sizes)
        value_dim = 2 * self.value_support + 1 if self.value_support else 1
        reward_dim = 2 * self.reward_support + 1 if self.reward_support else 1
        self.value_dim, self.reward_dim = value_dim, reward_dim
        if reward_from not in REWARD_FROM:
            raise ValueError(f"reward_from must be one of {REWARD_FROM}, got {reward_from!r}")
        self.reward_from = reward_from
        self.representation = mlp(self.obs_dim, hidden, self.latent_dim)
        # g and f each as one MLP whose last layer holds both outputs: (s^k, r^k) and (p^k, v^k) (half the small ops of four nets)
        joint = reward_from == "transition"
        self.dynamics_net = mlp(self.latent_dim + self.n_actions, hidden, self.latent_dim + (reward_dim if joint else 0))
        self.reward_net = None if joint else mlp(self.latent_dim, hidden, reward_dim)
        self.prediction_net = mlp(self.latent_dim, hidden, self.n_actions + value_dim)
        with torch.no_grad():
            reward_layer = self.dynamics_net[-1] if joint else self.reward_net[-1]
            reward_layer.weight[-reward_dim:].zero_()
            reward_layer.bias[-reward_dim:].zero_()
            self.prediction_net[-1].weight[self.n_actions :].zero_()
            self.prediction_net[-1].bias[self.n_actions :].zero_()

    # --- the three functions ----------------------------------------------------------------------------------

    def represent(self, obs: torch.Tensor) -> torch.Tensor:
        """s^0 = h(o), scaled to [0, 1]: [B, obs_dim] -> [B, latent]."""
        return min_max_scale(self.representation(obs.reshape(obs.shape[0], -1).float()))

    def dynamics(self, state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reward output [B, reward_dim], s^k [B, latent]) = g(s^{k-1}, a^k); ``action`` holds indices [B]."""
        x = torch.cat([state, F.one_hot(action.reshape(-1).long(), self.n_actions).to(state.dtype)], -1)
        out = self.dynamics_net(x)
        next_state = min_max_scale(out[:, : self.latent_dim])
        if self.reward_net is not None:
            return self.reward_net(next_state), next_state
        return out[:, self.latent_dim :], next_state

    def predict(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(policy logits [B, A], value output [B, value_dim]) = f(s)."""
        out = self.prediction_net(state)
        return out[:, : self.n_actions], out[:, self.n_actions :]

    # --- outputs as scalars -----------------------------------------------------------------------------------

    def value_scalar(self, value_out: torch.Tensor) -> torch.Tensor:
        return support_to_scalar(value_out, self.value_support) if self.value_support else value_out.squeeze(-1)

    def reward_scalar(self, reward_out: torch.Tensor) -> torch.Tensor:
        return support_to_scalar(reward_out, self.reward_support) if self.reward_support else reward_out.squeeze(-1)

    @torch.no_grad()
    def initial_inference(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(s^0, policy logits, scalar value) for the root of a search."""
        state = self.represent(obs)
        logits, value = self.predict(state)
        return state, logits, self.value_scalar(value)

    @torch.no_grad()
    def recurrent_inference(self, state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(scalar reward, s^k, policy logits, scalar value) for a leaf of a search."""
        reward, next_state = self.dynamics(state, action)
        logits, value = self.predict(next_state)
        return self.reward_scalar(reward), next_state, logits, self.value_scalar(value)


def support_size_for(max_abs_value: float) -> int:
    """The smallest S whose support holds h(max_abs_value) (muzero-general's rule of thumb: S >= sqrt(max |value|))."""
    return max(1, math.ceil(float(h_transform(torch.tensor(float(max_abs_value))))))
