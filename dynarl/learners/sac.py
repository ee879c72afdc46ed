"""Soft actor-critic with twin Q and automatic temperature (seed 002; inventory F9, F10).

Standard details not in the seed (Haarnoja et al. 2018b): no V network, twin Q with the min in the
target, reparameterised tanh-Gaussian policy, temperature optimised through log alpha with target
entropy H_0 = -|A|.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch

from dynarl.config import param, positive
from dynarl.data.batch import Batch
from dynarl.learners.base import ActorCriticConfig, ActorCriticLearner, StochasticActor, adam, flat_dim, soft_update, target_copy
from dynarl.nn.policies import QEnsemble, TanhGaussianActor


@dataclass
class SACLearnerConfig(ActorCriticConfig):
    alpha_lr: float = param(3e-4, positive, "temperature Adam learning rate")
    init_alpha: float = param(1.0, positive, "initial temperature alpha")
    autotune_alpha: bool = param(True, help="learn alpha so that E[-log pi] tracks the target entropy")
    target_entropy: float | None = param(None, help="H_0; default -|A|")


class SACLearner(StochasticActor, ActorCriticLearner):
    name = "sac"
    per_seed = ("critic_loss", "actor_loss", "alpha_loss", "act")

    def __init__(self, cfg: SACLearnerConfig, obs_space: gym.Space, action_space: gym.Space, device: torch.device):
        super().__init__(device)
        obs_dim, act_dim = flat_dim(obs_space), flat_dim(action_space)
        self.cfg = cfg
        self.actor = TanhGaussianActor(obs_dim, act_dim, cfg.hidden_sizes).to(device)
        self.critic = QEnsemble(obs_dim, act_dim, cfg.hidden_sizes, members=2).to(device)
        self.critic_target = target_copy(self.critic)
        self.temperature = torch.nn.ParameterDict({"log_alpha": torch.tensor(float(cfg.init_alpha), device=device).log()})
        self.target_entropy = -float(act_dim) if cfg.target_entropy is None else cfg.target_entropy
        self.modules = {"actor": self.actor, "critic": self.critic, "critic_target": self.critic_target, "temperature": self.temperature}
        self.optimizers = {"actor": adam(self.actor.parameters(), cfg.actor_lr), "critic": adam(self.critic.parameters(), cfg.critic_lr)}
        if cfg.autotune_alpha:
            self.optimizers["alpha"] = adam([self.log_alpha], cfg.alpha_lr)
        self._actor_params = list(self.actor.parameters())
        self._wrap_losses("critic_loss", "actor_loss")

    @property
    def log_alpha(self) -> torch.Tensor:
        """log alpha, read through its module so that a vectorised learner's per-seed parameters take its place."""
        return self.temperature["log_alpha"]

    @torch.no_grad()
    def target_policy(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """a' ~ pi(.|s') with the soft bonus -alpha log pi(a'|s'): the soft target of seed 002,
        y = r + gamma (1 - terminated) [min_i Q'_i(s', a') - alpha log pi(a'|s')]."""
        act, log_prob = self.actor(obs)
        return act, -self.log_alpha.exp() * log_prob

    def actor_loss(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """J_pi(theta) = E[alpha log pi(a|s) - min_i Q_i(s, a)], a ~ pi reparameterised; also log pi(a|s)."""
        act, log_prob = self.actor(obs)
        q_pi = self.critic(obs, act).min(0).values
        return (self.log_alpha.exp().detach() * log_prob - q_pi).mean(), log_prob.detach()

    def alpha_loss(self, log_prob: torch.Tensor) -> torch.Tensor:
        """J(alpha) = E[-alpha log pi(a|s) - alpha H_0]."""
        return -(self.log_alpha.exp() * (log_prob + self.target_entropy)).mean()

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        critic_loss, critic_metrics = self._minimise("critic", "critic_loss", batch)
        actor_loss, log_prob = self._minimise("actor", "actor_loss", batch.obs, inputs=self._actor_params)  # critic weights need no gradient here
        metrics = {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(), **critic_metrics, "alpha": self.log_alpha.exp().detach(), "entropy": -log_prob.mean(-1)}
        if self.cfg.autotune_alpha:
            alpha_loss = self.alpha_loss(log_prob)
            self._step("alpha", alpha_loss)
            metrics["alpha_loss"] = alpha_loss.detach()
        soft_update(self.critic_target, self.critic, self.cfg.tau)
        self._watch(critic_loss, actor_loss)
        self.num_updates += 1
        return metrics
