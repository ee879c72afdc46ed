"""Fitted Q evaluation (Le, Voloshin & Yue 2019, "Batch Policy Learning under Constraints", Alg. 3).

FQE estimates Q^{pi_e} of a *fixed* target policy pi_e from off-policy transitions by repeated regression

    Q_phi(s, a) <- y = r + gamma (1 - terminated) V'(s'),   V'(s') = Q_phi'(s', a'),  a' ~ pi_e(.|s')

with Q_phi' a target copy refreshed every ``target_update_interval`` updates (d3rlpy's ``FQE``). Truncated
transitions bootstrap: a time limit is not a terminal state. Unlike DQN there is no max: the backup follows
pi_e, so the fixed point is Q^{pi_e}, not Q*. Discrete actions: Q(s, .) in one forward pass, and when the
policy gives probabilities pi_e(.|s') [B, |A|] the backup is the expectation sum_a pi_e(a|s') Q'(s', a)
(no sampling noise). Box actions: Q(s, a) is an MLP on the concatenation [s, a].

Actions are in the units of ``batch.act`` (whatever the dataset holds); the policy must return the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import torch
from torch import nn

from dynarl.config import param, positive, positive_sizes, unit_interval_open_closed
from dynarl.data.batch import Batch
from dynarl.errors import EnvError
from dynarl.learners.base import Learner, adam, target_copy
from dynarl.nn.mlp import mlp

Policy = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class FQEConfig:
    """FQE hyper-parameters; defaults are d3rlpy's ``FQEConfig`` (one critic, hard target copies)."""

    gamma: float = param(0.99, unit_interval_open_closed, "discount")
    lr: float = param(1e-4, positive, "Adam learning rate (d3rlpy default)")
    batch_size: int = param(100, positive, "transitions per update (d3rlpy default; used by the caller that samples batches)")
    hidden_sizes: tuple[int, ...] = param((256, 256), positive_sizes, "hidden layer widths of the Q network")
    target_update_interval: int = param(100, positive, "updates between hard copies phi' <- phi (d3rlpy default)")


class _Features(nn.Module):
    """Observations as flat float vectors: one-hot for Discrete spaces, flattened for Box spaces."""

    def __init__(self, space: gym.Space):
        super().__init__()
        self.n = int(space.n) if isinstance(space, gym.spaces.Discrete) else None
        self.start = int(space.start) if isinstance(space, gym.spaces.Discrete) else 0
        self.dim = self.n if self.n is not None else int(gym.spaces.flatdim(space))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.n is not None:
            return nn.functional.one_hot(x.reshape(-1).long() - self.start, self.n).float()
        return x.reshape(x.shape[0], -1).float()


class FQELearner(Learner):
    """Fitted Q evaluation of ``policy`` (a callable ``next_obs [B, ...] -> actions``).

    Box actions: ``policy`` returns actions [B, act_dim]. Discrete actions: indices [B] (or [B, 1]) for a
    sampled a', or float probabilities [B, |A|] for the exact expectation over a'. ``update(batch, next_act)``
    takes precomputed a' (same formats) instead of calling ``policy`` (e.g. samples drawn once per dataset).
    """

    name = "fqe"

    def __init__(self, cfg: FQEConfig, observation_space: gym.Space, action_space: gym.Space, device: torch.device | str, policy: Policy | None = None):
        device = torch.device(device)
        super().__init__(device)
        if not isinstance(observation_space, (gym.spaces.Box, gym.spaces.Discrete)):
            raise EnvError(f"FQE needs a Box or Discrete observation space; got {observation_space}: flatten it first")
        if not isinstance(action_space, (gym.spaces.Box, gym.spaces.Discrete)):
            raise EnvError(f"FQE needs a Box or Discrete action space; got {action_space}")
        self.cfg = cfg
        self.policy = policy
        self.features = _Features(observation_space)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.discrete:
            self.n_actions = int(action_space.n)
            self._act_start = int(action_space.start)
            self.q = mlp(self.features.dim, tuple(cfg.hidden_sizes), self.n_actions).to(device)
        else:
            self.act_dim = int(gym.spaces.flatdim(action_space))
            self.q = mlp(self.features.dim + self.act_dim, tuple(cfg.hidden_sizes), 1).to(device)
        self.q_target = target_copy(self.q)
        self.modules = {"q": self.q, "q_target": self.q_target}
        self.optimizers = {"q": adam(self.q.parameters(), cfg.lr)}

    # --- Q values ---------------------------------------------------------------------------------

    def _q(self, net: nn.Module, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Q(s, a) [B] through ``net``; a discrete ``act`` given as probabilities [B, |A|] gives sum_a p(a) Q(s, a)."""
        x = self.features(obs)
        if not self.discrete:
            return net(torch.cat([x, act.reshape(act.shape[0], -1).float()], dim=-1)).squeeze(-1)
        q_all = net(x)
        if act.is_floating_point() and act.dim() == 2 and act.shape[1] == self.n_actions and self.n_actions > 1:
            return (q_all * act).sum(-1)
        index = act.reshape(-1, 1).long() - self._act_start
        return q_all.gather(1, index).squeeze(1)

    @torch.no_grad()
    def value(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Q^{pi_e}(s, a) [B] of the online network (no gradient); discrete probabilities give E_{a~p} Q(s, a)."""
        return self._q(self.q, obs, act)

    @torch.no_grad()
    def q_values(self, obs: torch.Tensor) -> torch.Tensor:
        """Q(s, .) [B, |A|] for discrete actions."""
        if not self.discrete:
            raise ValueError("q_values() is for Discrete action spaces; use value(obs, act)")
        return self.q(self.features(obs))

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """The evaluated policy's action (FQE does not improve the policy)."""
        if self.policy is None:
            raise ValueError("FQELearner was built without a policy")
        return self.policy(obs)

    # --- update -----------------------------------------------------------------------------------

    @torch.no_grad()
    def td_target(self, batch: Batch, next_act: torch.Tensor | None = None) -> torch.Tensor:
        """y = r + gamma (1 - terminated) Q_phi'(s', a'), a' ~ pi_e(.|s') (or the expectation over a')."""
        if next_act is None:
            if self.policy is None:
                raise ValueError("FQELearner.update needs next_act when it was built without a policy")
            next_act = self.policy(batch.next_obs)
        discount = self.cfg.gamma if batch.discount is None else batch.discount.reshape(-1)
        v_next = self._q(self.q_target, batch.next_obs, next_act)
        return batch.reward.reshape(-1) + discount * (1.0 - batch.terminated.reshape(-1)) * v_next

    def update(self, batch: Batch, next_act: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One regression step on 1/2 (Q(s, a) - y)^2, then a hard target copy every ``target_update_interval``."""
        y = self.td_target(batch, next_act)
        q_sa = self._q(self.q, batch.obs, batch.act)
        loss = 0.5 * (q_sa - y).pow(2).mean()
        self._step("q", loss)
        self._watch(loss)
        self.num_updates += 1
        if self.num_updates % self.cfg.target_update_interval == 0:
            with torch.no_grad():
                torch._foreach_copy_(list(self.q_target.parameters()), list(self.q.parameters()))
        return {"fqe_loss": loss.detach(), "q": q_sa.detach().mean()}
