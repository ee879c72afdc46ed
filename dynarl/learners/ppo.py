"""PPO with the clipped surrogate (seed 002; inventory E8).

    r(theta) = pi_theta(a|s) / pi_theta_old(a|s)
    J^CLIP(theta) = E[min(r(theta) A, clip(r(theta), 1 - eps, 1 + eps) A)]
    maximise J^CLIP - c1 (V(s) - V_target)^2 + c2 H(pi(.|s))

Standard details not in the seed (Schulman et al. 2017; Stable-Baselines3 defaults): GAE(0.95) advantages,
``n_epochs`` passes of minibatch Adam over each rollout, advantages standardised per minibatch, global
gradient-norm clipping, separate policy and value networks, and optional value clipping in the form of
OpenAI Baselines' PPO2 (the larger of the clipped and unclipped squared errors).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dynarl.config import param, positive
from dynarl.data.rollout import Rollout, normalize
from dynarl.learners.base import adam
from dynarl.learners.policy_gradient import PGLearnerConfig, PolicyGradientLearner


def _positive_or_none(x) -> str | None:
    return None if x > 0 else "must be > 0 (or null: no value clipping)"


@dataclass
class PPOLearnerConfig(PGLearnerConfig):
    clip_range: float = param(0.2, positive, "epsilon of the clipped surrogate")
    clip_range_vf: float | None = param(None, _positive_or_none, "clip V(s) to V_old(s) +- this (null: no value clipping)")
    n_epochs: int = param(10, positive, "passes over each rollout")
    batch_size: int = param(64, positive, "minibatch size")


def clipped_surrogate(ratio: torch.Tensor, adv: torch.Tensor, clip_range: float) -> torch.Tensor:
    """Per-sample ``min(r A, clip(r, 1 - eps, 1 + eps) A)`` (002's J^CLIP before the expectation)."""
    return torch.min(ratio * adv, ratio.clamp(1.0 - clip_range, 1.0 + clip_range) * adv)


class PPOLearner(PolicyGradientLearner):
    name = "ppo"
    per_seed = ("step", "value_of", "act", "loss", "targets", "diagnostics")

    def __init__(self, cfg: PPOLearnerConfig, obs_space, action_space, device: torch.device):
        super().__init__(cfg, obs_space, action_space, device)
        self.optimizers = {"ac": adam(self._params, cfg.lr)}

    def loss(self, obs, act, old_log_prob, adv, ret, old_value) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(-J^CLIP + c1 (V - V_target)^2 - c2 H, policy loss, value loss)`` on one minibatch."""
        cfg = self.cfg
        params = self.policy(obs)
        ratio = torch.exp(self.policy.log_prob(params, act) - old_log_prob)
        if cfg.normalize_advantage and adv.numel() > 1:
            adv = normalize(adv)
        policy_loss = -clipped_surrogate(ratio, adv, cfg.clip_range).mean()
        value = self.value(obs)
        value_loss = (value - ret).square()
        if cfg.clip_range_vf is not None:
            clipped = old_value + (value - old_value).clamp(-cfg.clip_range_vf, cfg.clip_range_vf)
            value_loss = torch.max(value_loss, (clipped - ret).square())
        value_loss = value_loss.mean()
        loss = policy_loss + cfg.vf_coef * value_loss
        if cfg.ent_coef > 0:  # skipped when unused: the minibatch step is overhead-bound
            loss = loss - cfg.ent_coef * self.policy.entropy(params).mean()
        return loss, policy_loss, value_loss

    def targets(self, rollout: Rollout) -> tuple[torch.Tensor, ...]:
        """The rollout's rows flattened over [T, N] with their advantages and value targets:
        ``(obs, act, log pi_old, V_old, A, V_target)``."""
        adv, ret = self.advantages(rollout)
        obs, act, old_log_prob, old_value = (rollout.flat(k) for k in ("obs", "act", "log_prob", "value"))
        return obs, act, old_log_prob, old_value, adv.reshape(-1), ret.reshape(-1)

    def update(self, rollout: Rollout) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        obs, act, old_log_prob, old_value, adv, ret = self.targets(rollout)
        n = adv.shape[-1]
        for _ in range(cfg.n_epochs):
            # one gather per epoch; minibatches are then free slices (the step is overhead-bound)
            perm = self._permutation(n)
            epoch = [self._rows(x, perm) for x in (obs, act, old_log_prob, adv, ret, old_value)]
            for s in range(0, n, cfg.batch_size):
                mb = slice(s, s + cfg.batch_size)
                loss, policy_loss, value_loss = self.loss(*(self._rows(x, mb) for x in epoch))
                self._clipped_step("ac", loss)
            self._watch(loss)  # a NaN earlier in the epoch also leaves NaN parameters, which all_finite checks
        self.num_updates += 1
        return {"policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(), **self.diagnostics(obs, act, old_log_prob, old_value, ret)}

    @torch.no_grad()
    def diagnostics(self, obs, act, old_log_prob, old_value, ret) -> dict[str, torch.Tensor]:
        """Entropy, approximate KL, clip fraction and explained variance of the final policy on the whole rollout."""
        params = self.policy(obs)
        log_ratio = self.policy.log_prob(params, act) - old_log_prob
        return {
            "entropy": self.policy.entropy(params).mean(),
            "approx_kl": (log_ratio.exp() - 1 - log_ratio).mean(),
            "clip_fraction": ((log_ratio.exp() - 1.0).abs() > self.cfg.clip_range).float().mean(),
            "explained_variance": 1.0 - (ret - old_value).var() / ret.var().clamp_min(1e-8),
        }
