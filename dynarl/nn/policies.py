"""Actors and critics of the off-policy actor-critics. Actions live in [-1, 1]; the loop rescales."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dynarl.nn.mlp import EnsembleMLP, Linear, in_row_passes, mlp
from dynarl.nn.noise import normal_like

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class QEnsemble(nn.Module):
    """``members`` Q(s, a) critics in one module: forward returns [members, B] (twin Q = 2 members)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], members: int):
        super().__init__()
        self.net = EnsembleMLP(members, obs_dim + act_dim, hidden, 1)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, act], dim=-1)).squeeze(-1).float()


class DeterministicActor(nn.Module):
    """mu_theta(s) in [-1, 1] (DPG / DDPG / TD3)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = mlp(obs_dim, hidden, act_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs).float())


class TanhGaussianActor(nn.Module):
    """pi_theta(a|s): a = tanh(u), u ~ N(mean(s), std(s)), with the tanh change of variables in log pi."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.trunk = mlp(obs_dim, hidden[:-1], hidden[-1])
        self.head = Linear(hidden[-1], 2 * act_dim)
        self.width = max(hidden)

    def _net(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.trunk(obs)))

    def _mean_log_std(self, obs):
        # model rollouts act on tens of thousands of states at once, without a graph
        mean, log_std = in_row_passes(self._net, obs, self.width).float().chunk(2, dim=-1)
        # squash log_std smoothly into [LOG_STD_MIN, LOG_STD_MAX] (keeps gradients alive at the bounds)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        return mean, log_std

    def forward(self, obs: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample a ~ pi(.|s) and its log-probability (deterministic: tanh(mean))."""
        mean, log_std = self._mean_log_std(obs)
        if deterministic:
            return torch.tanh(mean), torch.zeros(mean.shape[:-1], device=mean.device)
        return self._sample(mean, log_std)

    def sample_n(self, obs: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n samples per state, [B, n, A], and their log-probabilities, [B, n]: what :meth:`forward` gives for
        ``obs.repeat_interleave(n, 0)`` (the same draws in the same order: equal up to float rounding), with one
        network pass per state, not n (CQL's importance samples)."""
        mean, log_std = self._mean_log_std(obs)
        shape = (mean.shape[0], n, mean.shape[1])
        return self._sample(mean.unsqueeze(1).expand(shape), log_std.unsqueeze(1).expand(shape))

    def _sample(self, mean: torch.Tensor, log_std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        eps = normal_like(mean)
        u = mean + log_std.exp() * eps
        # log N(u; mean, std) summed over dims, minus log|d tanh(u)/du| = 2(log 2 - u - softplus(-2u))
        log_prob = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
        return torch.tanh(u), log_prob

    def log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """log pi(a|s) of given actions a in [-1, 1] (dataset actions: AWAC, IQL, CQL's importance weights): [B].

        u = atanh(a), with a clamped to +-(1 - 1e-6) so boundary actions stay finite (|u| <= 7.25), then the
        change of variables of :meth:`forward`: log N(u; mean, std) - sum log(1 - tanh(u)^2).
        """
        mean, log_std = self._mean_log_std(obs)
        u = torch.atanh(act.float().clamp(-1.0 + 1e-6, 1.0 - 1e-6))
        eps = (u - mean) / log_std.exp()
        log_prob = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        return log_prob - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)


class GaussianActor(nn.Module):
    """pi_theta(a|s) = N(tanh(mean(s)), diag(exp(log_std))) with a state-independent log std, samples clipped to [-1, 1].

    The policy of IQL's and AWAC's reference implementations (Kostrikov et al.'s ``NormalTanhPolicy`` without the
    squashing bijector; CORL): weighted likelihood on dataset actions needs a density that stays finite at the
    bounds, where tanh-Gaussian log-likelihoods of actions at +-1 explode.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], log_std_bounds: tuple[float, float] = (LOG_STD_MIN, LOG_STD_MAX)):
        super().__init__()
        self.net = mlp(obs_dim, hidden, act_dim)
        self.log_std = nn.Parameter(torch.zeros(act_dim))
        self.log_std_bounds = log_std_bounds

    def _mean_std(self, obs):
        return torch.tanh(self.net(obs).float()), self.log_std.clamp(*self.log_std_bounds).exp()

    def forward(self, obs: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """A sample clipped to [-1, 1] (deterministic: the mean) and the log-density of the unclipped sample."""
        mean, std = self._mean_std(obs)
        if deterministic:
            return mean, torch.zeros(mean.shape[:-1], device=mean.device)
        dist = torch.distributions.Normal(mean, std)
        u = dist.rsample()
        return u.clamp(-1.0, 1.0), dist.log_prob(u).sum(-1)

    def log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """log N(a; tanh(mean(s)), std^2) summed over action dims."""
        mean, std = self._mean_std(obs)
        return torch.distributions.Normal(mean, std).log_prob(act).sum(-1)
