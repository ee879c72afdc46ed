"""Soft actor-critic with twin Q and automatic temperature (seed 002; inventory F9, F10).

Standard details not in the seed (Haarnoja et al. 2018b): no V network, twin Q with the min in the
target, reparameterised tanh-Gaussian policy, temperature optimised through log alpha with target
entropy H_0 = -|A|.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dynarl.learners.base import ActorCriticConfig, Batch, Learner, adam, soft_update, target_copy
from dynarl.nn.policies import QEnsemble, TanhGaussianActor
from dynarl.run.config import param, positive


@dataclass
class SACLearnerConfig(ActorCriticConfig):
    alpha_lr: float = param(3e-4, positive, "temperature Adam learning rate")
    init_alpha: float = param(1.0, positive, "initial temperature alpha")
    autotune_alpha: bool = param(True, help="learn alpha so that E[-log pi] tracks the target entropy")
    target_entropy: float | None = param(None, help="H_0; default -|A|")


class SACLearner(Learner):
    name = "sac"

    def __init__(self, cfg: SACLearnerConfig, obs_dim: int, act_dim: int, device: torch.device):
        super().__init__(device)
        self.cfg = cfg
        self.actor = TanhGaussianActor(obs_dim, act_dim, cfg.hidden_sizes).to(device)
        self.critic = QEnsemble(obs_dim, act_dim, cfg.hidden_sizes, members=2).to(device)
        self.critic_target = target_copy(self.critic)
        self.log_alpha = torch.nn.Parameter(torch.tensor(float(cfg.init_alpha), device=device).log())
        self.target_entropy = -float(act_dim) if cfg.target_entropy is None else cfg.target_entropy
        temperature = torch.nn.ParameterDict({"log_alpha": self.log_alpha})
        self.modules = {"actor": self.actor, "critic": self.critic, "critic_target": self.critic_target, "temperature": temperature}
        self.optimizers = {"actor": adam(self.actor.parameters(), cfg.actor_lr), "critic": adam(self.critic.parameters(), cfg.critic_lr)}
        if cfg.autotune_alpha:
            self.optimizers["alpha"] = adam([self.log_alpha], cfg.alpha_lr)
        self._actor_params = list(self.actor.parameters())

    @torch.no_grad()
    def td_target(self, batch: Batch) -> torch.Tensor:
        """Soft Bellman target y = r + gamma (1 - terminated) [min_i Q'_i(s', a') - alpha log pi(a'|s')], a' ~ pi(.|s').

        Truncated transitions bootstrap: a time limit is not a terminal state.
        """
        next_act, next_log_prob = self.actor(batch.next_obs)
        next_v = self.critic_target(batch.next_obs, next_act).min(0).values - self.log_alpha.exp() * next_log_prob
        return batch.reward + self.cfg.gamma * (1.0 - batch.terminated) * next_v

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        alpha = self.log_alpha.exp().detach()
        y = self.td_target(batch)

        # J_Q(w) = E[1/2 (Q_w(s, a) - y)^2], for both critics
        q = self.critic(batch.obs, batch.act)
        critic_loss = 0.5 * (q - y).pow(2).mean(1).sum()
        self.optimizers["critic"].zero_grad(set_to_none=True)
        critic_loss.backward()
        self.optimizers["critic"].step()

        # J_pi(theta) = E[alpha log pi(a|s) - min_i Q_i(s, a)], a ~ pi reparameterised
        act, log_prob = self.actor(batch.obs)
        q_pi = self.critic(batch.obs, act).min(0).values
        actor_loss = (alpha * log_prob - q_pi).mean()
        self.optimizers["actor"].zero_grad(set_to_none=True)
        actor_loss.backward(inputs=self._actor_params)  # critic weights need no gradient here
        self.optimizers["actor"].step()

        metrics = {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(), "q": q.detach().mean(), "alpha": alpha, "entropy": -log_prob.detach().mean()}
        # J(alpha) = E[-alpha log pi(a|s) - alpha H_0]
        if cfg.autotune_alpha:
            alpha_loss = -(self.log_alpha.exp() * (log_prob.detach() + self.target_entropy)).mean()
            self.optimizers["alpha"].zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.optimizers["alpha"].step()
            metrics["alpha_loss"] = alpha_loss.detach()

        soft_update(self.critic_target, self.critic, cfg.tau)
        self._watch(critic_loss, actor_loss)
        self.num_updates += 1
        return metrics

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        return self.actor(obs, deterministic)[0]
