"""DDPG: deterministic actor-critic, "approximate Q-learning" (seed 001 and 002; inventory F5, F6).

The update is written once here with the hooks TD3 changes (critic count, target action, actor delay).
Exploration adds Gaussian noise N(0, exploration_noise) to mu(s) (002's mu'(s) = mu(s) + N).
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch

from dynarl.config import non_negative, param
from dynarl.data.batch import Batch
from dynarl.learners.base import ActorCriticConfig, ActorCriticLearner, adam, flat_dim, soft_update, target_copy
from dynarl.nn.noise import normal_like
from dynarl.nn.policies import DeterministicActor, QEnsemble


@dataclass
class DDPGLearnerConfig(ActorCriticConfig):
    exploration_noise: float = param(0.1, non_negative, "std of Gaussian action noise while collecting (actions in [-1, 1])")


class DDPGLearner(ActorCriticLearner):
    name = "ddpg"
    per_seed = ("critic_loss", "actor_loss", "act")
    n_critics = 1

    def __init__(self, cfg: DDPGLearnerConfig, obs_space: gym.Space, action_space: gym.Space, device: torch.device):
        super().__init__(device)
        obs_dim, act_dim = flat_dim(obs_space), flat_dim(action_space)
        self.cfg = cfg
        self.actor = DeterministicActor(obs_dim, act_dim, cfg.hidden_sizes).to(device)
        self.actor_target = target_copy(self.actor)
        self.critic = QEnsemble(obs_dim, act_dim, cfg.hidden_sizes, members=self.n_critics).to(device)
        self.critic_target = target_copy(self.critic)
        self.modules = {"actor": self.actor, "actor_target": self.actor_target, "critic": self.critic, "critic_target": self.critic_target}
        self.optimizers = {"actor": adam(self.actor.parameters(), cfg.actor_lr), "critic": adam(self.critic.parameters(), cfg.critic_lr)}
        self._actor_params = list(self.actor.parameters())
        self._wrap_losses("critic_loss", "actor_loss")

    def target_action(self, next_obs: torch.Tensor) -> torch.Tensor:
        """a' = mu_theta'(s')."""
        return self.actor_target(next_obs)

    def actor_due(self) -> bool:
        return True

    @torch.no_grad()
    def target_policy(self, obs: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(a', 0): y = r + gamma (1 - terminated) min_i Q_phi'_i(s', a'), a' = target_action(s')."""
        return self.target_action(obs), 0.0

    def actor_loss(self, obs: torch.Tensor) -> torch.Tensor:
        """-Q_phi(s, mu_theta(s)) with the first critic: its gradient is grad_a Q grad_theta mu (DPG)."""
        return -self.critic(obs, self.actor(obs))[0].mean()

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        critic_loss, critic_metrics = self._minimise("critic", "critic_loss", batch)
        metrics = {"critic_loss": critic_loss.detach(), **critic_metrics}
        self._watch(critic_loss)
        if self.actor_due():
            actor_loss = self._minimise("actor", "actor_loss", batch.obs, inputs=self._actor_params)
            soft_update(self.actor_target, self.actor, self.cfg.tau)
            soft_update(self.critic_target, self.critic, self.cfg.tau)
            metrics["actor_loss"] = actor_loss.detach()
            self._watch(actor_loss)
        self.num_updates += 1
        return metrics

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        act = self.actor(obs)
        if deterministic or self.cfg.exploration_noise == 0:
            return act
        return (act + self.cfg.exploration_noise * normal_like(act)).clamp(-1.0, 1.0)
