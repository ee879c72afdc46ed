"""AWAC, advantage-weighted actor-critic (Nair et al. 2020; seed 001; inventory C2).

Critic (seed's L_C): the shared off-policy Bellman loss of :class:`ActorCriticLearner` with the target

    y = r + gamma (1 - terminated) min_i Q'_i(s', a'),  a' ~ pi_theta(.|s')   (no entropy bonus: target_policy's bonus is 0)

Actor (seed's L_A): weighted maximum likelihood of the dataset's actions under the closed-form KL-constrained
improvement pi* ~ pi_beta exp(A / lambda),

    L_A(theta) = -E_{(s,a)~D}[log pi_theta(a|s) min(exp(A(s, a) / lambda), 100)],
    A(s, a) = min_i Q_i(s, a) - V(s),  V(s) = min_i Q_i(s, a~pi(.|s))   (one sample, the current critic, no gradient)

Z(s) is dropped and the weights are clamped at 100 (CORL's ``exp_adv_max``). Order: critic step, actor step
(against the just-updated critic, as CORL), then the Polyak target.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch

from dynarl.config import param, positive
from dynarl.data.batch import Batch
from dynarl.errors import EnvError
from dynarl.learners.base import ActorCriticConfig, ActorCriticLearner, StochasticActor, adam, flat_dim, soft_update, target_copy
from dynarl.nn.policies import GaussianActor, QEnsemble


@dataclass
class AWACLearnerConfig(ActorCriticConfig):
    awac_lambda: float = param(1.0, positive, "lambda, the temperature of the advantage weights exp(A / lambda) (CORL default 1.0)")
    exp_adv_max: float = param(100.0, positive, "the advantage weights are clamped at this value (CORL)")


class AWACLearner(StochasticActor, ActorCriticLearner):
    name = "awac"

    def __init__(self, cfg: AWACLearnerConfig, obs_space: gym.Space, action_space: gym.Space, device: torch.device):
        if not isinstance(action_space, gym.spaces.Box):
            raise EnvError(f"AWAC needs a Box action space; this env has {action_space}")
        super().__init__(device)
        obs_dim, act_dim = flat_dim(obs_space), flat_dim(action_space)
        self.cfg = cfg
        self.actor = GaussianActor(obs_dim, act_dim, cfg.hidden_sizes).to(device)
        self.critic = QEnsemble(obs_dim, act_dim, cfg.hidden_sizes, members=2).to(device)
        self.critic_target = target_copy(self.critic)
        self.modules = {"actor": self.actor, "critic": self.critic, "critic_target": self.critic_target}
        self.optimizers = {"actor": adam(self.actor.parameters(), cfg.actor_lr), "critic": adam(self.critic.parameters(), cfg.critic_lr)}
        self._wrap_losses("critic_loss", "actor_loss")

    @torch.no_grad()
    def target_policy(self, obs: torch.Tensor) -> tuple[torch.Tensor, float]:
        """a' ~ pi(.|s') and no bonus: AWAC's critic evaluates the current policy without entropy."""
        return self.actor(obs)[0], 0.0

    @torch.no_grad()
    def advantage_weights(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """min(exp(A / lambda), exp_adv_max) with A = min_i Q_i(s, a) - min_i Q_i(s, a~pi(.|s)): (weights, A), each [B]."""
        v = self.critic(obs, self.actor(obs)[0]).min(0).values
        adv = self.critic(obs, act).min(0).values - v
        return torch.exp(adv / self.cfg.awac_lambda).clamp(max=self.cfg.exp_adv_max), adv

    def actor_loss(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """L_A = -E[log pi(a|s) w(s, a)]; also the mean weight and the mean advantage."""
        weights, adv = self.advantage_weights(obs, act)
        return -(self.actor.log_prob(obs, act) * weights).mean(), weights.mean(), adv.mean()

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        critic_loss, critic_metrics = self._minimise("critic", "critic_loss", batch)
        actor_loss, weight, adv = self._minimise("actor", "actor_loss", batch.obs, batch.act)
        soft_update(self.critic_target, self.critic, self.cfg.tau)
        self._watch(critic_loss, actor_loss)
        self.num_updates += 1
        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(), **critic_metrics, "adv": adv, "adv_weight": weight}
