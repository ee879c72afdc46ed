"""DDPG: deterministic actor-critic, "approximate Q-learning" (seed 001 and 002; inventory F5, F6).

The update is written once here with the hooks TD3 changes (critic count, target action, actor delay).
Exploration adds Gaussian noise N(0, exploration_noise) to mu(s) (002's mu'(s) = mu(s) + N).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dynarl.learners.base import ActorCriticConfig, Batch, Learner, adam, soft_update, target_copy
from dynarl.nn.policies import DeterministicActor, QEnsemble
from dynarl.run.config import non_negative, param


@dataclass
class DDPGLearnerConfig(ActorCriticConfig):
    exploration_noise: float = param(0.1, non_negative, "std of Gaussian action noise while collecting (actions in [-1, 1])")


class DDPGLearner(Learner):
    name = "ddpg"
    n_critics = 1

    def __init__(self, cfg: DDPGLearnerConfig, obs_dim: int, act_dim: int, device: torch.device):
        super().__init__(device)
        self.cfg = cfg
        self.actor = DeterministicActor(obs_dim, act_dim, cfg.hidden_sizes).to(device)
        self.actor_target = target_copy(self.actor)
        self.critic = QEnsemble(obs_dim, act_dim, cfg.hidden_sizes, members=self.n_critics).to(device)
        self.critic_target = target_copy(self.critic)
        self.modules = {"actor": self.actor, "actor_target": self.actor_target, "critic": self.critic, "critic_target": self.critic_target}
        self.optimizers = {"actor": adam(self.actor.parameters(), cfg.actor_lr), "critic": adam(self.critic.parameters(), cfg.critic_lr)}
        self._actor_params = list(self.actor.parameters())

    def target_action(self, next_obs: torch.Tensor) -> torch.Tensor:
        """a' = mu_theta'(s')."""
        return self.actor_target(next_obs)

    def actor_due(self) -> bool:
        return True

    @torch.no_grad()
    def td_target(self, batch: Batch) -> torch.Tensor:
        """y = r + gamma (1 - terminated) min_i Q_phi'_i(s', a'); one critic gives DDPG's target, two TD3's."""
        next_q = self.critic_target(batch.next_obs, self.target_action(batch.next_obs)).min(0).values
        return batch.reward + self.cfg.gamma * (1.0 - batch.terminated) * next_q

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        y = self.td_target(batch)
        q = self.critic(batch.obs, batch.act)
        critic_loss = 0.5 * (q - y).pow(2).mean(1).sum()
        self.optimizers["critic"].zero_grad(set_to_none=True)
        critic_loss.backward()
        self.optimizers["critic"].step()
        metrics = {"critic_loss": critic_loss.detach(), "q": q.detach().mean()}
        self._watch(critic_loss)

        if self.actor_due():
            # theta <- theta + beta grad_theta Q_phi(s, mu_theta(s)): maximise the first critic
            actor_loss = -self.critic(batch.obs, self.actor(batch.obs))[0].mean()
            self.optimizers["actor"].zero_grad(set_to_none=True)
            actor_loss.backward(inputs=self._actor_params)
            self.optimizers["actor"].step()
            soft_update(self.actor_target, self.actor, cfg.tau)
            soft_update(self.critic_target, self.critic, cfg.tau)
            metrics["actor_loss"] = actor_loss.detach()
            self._watch(actor_loss)

        self.num_updates += 1
        return metrics

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        act = self.actor(obs)
        if deterministic or self.cfg.exploration_noise == 0:
            return act
        return (act + self.cfg.exploration_noise * torch.randn_like(act)).clamp(-1.0, 1.0)
