"""A2C: 001's batch actor-critic with a bootstrapped critic, on synchronous parallel workers (E3, E6).

    1. sample {s_i, a_i} from pi_theta on N envs in lock-step (the synchronous workers)
    2. fit V_phi to bootstrapped targets y_i (n-step / GAE returns ending in gamma^k V_phi(s_{t+k}))
    3. A(s_i, a_i) = y_i - V_phi(s_i)   (lambda = 0: r + gamma V(s') - V(s))
    4. grad J = sum_i grad log pi_theta(a_i|s_i) A(s_i, a_i)
    5. one gradient step on -J + c1 L(phi) - c2 H, aggregated over all workers

Defaults are Stable-Baselines3's A2C (5 steps per worker, RMSprop lr 7e-4 with eps 1e-5, GAE lambda 1,
i.e. A3C's per-segment return ``R <- r_i + gamma R`` bootstrapped from V(s_t), no advantage
normalisation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dynarl.config import one_of, param, positive, unit_interval
from dynarl.data.rollout import Rollout, normalize
from dynarl.learners.base import adam
from dynarl.learners.policy_gradient import PGLearnerConfig, PolicyGradientLearner


@dataclass
class A2CLearnerConfig(PGLearnerConfig):
    gae_lambda: float = param(1.0, unit_interval, "GAE lambda; 1 = A3C's per-segment bootstrapped return")
    normalize_advantage: bool = param(False, help="standardise advantages over the rollout")
    lr: float = param(7e-4, positive, "learning rate")
    optimizer: str = param("rmsprop", one_of("rmsprop", "adam"), "RMSprop (A3C/A2C) or Adam")
    rms_eps: float = param(1e-5, positive, "RMSprop epsilon")


class A2CLearner(PolicyGradientLearner):
    name = "a2c"
    per_seed = ("step", "value_of", "act", "loss", "targets")

    def __init__(self, cfg: A2CLearnerConfig, obs_space, action_space, device: torch.device):
        super().__init__(cfg, obs_space, action_space, device)
        if cfg.optimizer == "rmsprop":
            opt = torch.optim.RMSprop(self._params, lr=cfg.lr, alpha=0.99, eps=cfg.rms_eps, foreach=True)
        else:
            opt = adam(self._params, cfg.lr)
        self.optimizers = {"ac": opt}

    def loss(self, obs, act, adv, ret) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.cfg
        params = self.policy(obs)
        if cfg.normalize_advantage:
            adv = normalize(adv)
        policy_loss = -(self.policy.log_prob(params, act) * adv).mean()
        value_loss = (self.value(obs) - ret).square().mean()
        entropy = self.policy.entropy(params).mean()
        loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
        return loss, {"policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(), "entropy": entropy.detach()}

    def targets(self, rollout: Rollout) -> tuple[torch.Tensor, ...]:
        """The rollout's rows flattened over [T, N] with their advantages and value targets: ``(obs, act, A, V_target)``."""
        adv, ret = self.advantages(rollout)
        return rollout.flat("obs"), rollout.flat("act"), adv.reshape(-1), ret.reshape(-1)

    def update(self, rollout: Rollout) -> dict[str, torch.Tensor]:
        loss, parts = self.loss(*self.targets(rollout))
        self._clipped_step("ac", loss)
        self._watch(loss)
        self.num_updates += 1
        return parts
