"""REINFORCE: the Monte-Carlo policy gradient with reward-to-go and an optional baseline (001/002; E1, E2).

    grad J ~ 1/N sum_i sum_t grad log pi_theta(a_it|s_it) (Q^_it - b)
    Q^_it = sum_{t'>=t} gamma^(t'-t) r_it'            (reward_to_go; else the whole return of episode i)
    b = 0 | 1/N sum_i Q^_i (batch mean) | V_phi(s_it) fitted to Q^ by 1/2 (V - Q^)^2 (learned)

The autodiff surrogate is 001's ``loss = mean(-log pi(a|s) * Q^)``. Returns are pure Monte-Carlo sums over
what the rollout saw: steps whose episode is still running at the end of a rollout (or, without
reward-to-go, began before it) have no complete sum and are left out of the gradient, so a rollout
should hold several whole episodes per env. A time limit ends the sum like a termination (the
finite-horizon objective of the seed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dynarl.config import non_negative, one_of, param, positive
from dynarl.data.rollout import Rollout, complete_episode_mask, discounted_reward_to_go
from dynarl.learners.base import adam
from dynarl.learners.policy_gradient import PGLearnerConfig, PolicyGradientLearner


@dataclass
class REINFORCELearnerConfig(PGLearnerConfig):
    reward_to_go: bool = param(True, help="weight log pi(a_t|s_t) by the rewards from t on (causality) rather than the whole return")
    baseline: str = param("value", one_of("none", "mean", "value"), "b: none, the batch mean of the returns, or a learned V(s)")
    normalize_advantage: bool = param(True, help="standardise Q^ - b over the complete steps")
    lr: float = param(1e-3, positive, "Adam learning rate (policy and value)")
    max_grad_norm: float = param(0.0, non_negative, "clip the gradient's global norm (0: no clipping, as in the seed)")
    vf_coef: float = param(0.5, non_negative, "weight of the value-fitting loss (baseline=value)")


def _started_inside(ended: torch.Tensor) -> torch.Tensor:
    """1 where the step's episode began inside the rollout (after an earlier episode end of that env)."""
    seen = torch.zeros_like(ended)
    seen[1:] = ended[:-1].cummax(0).values
    return seen


class REINFORCELearner(PolicyGradientLearner):
    name = "reinforce"
    per_seed = ("step", "value_of", "act", "loss")

    def __init__(self, cfg: REINFORCELearnerConfig, obs_space, action_space, device: torch.device):
        self.uses_value = cfg.baseline == "value"
        super().__init__(cfg, obs_space, action_space, device)
        self.optimizers = {"pg": adam(self._params, cfg.lr)}

    @torch.no_grad()
    def returns(self, rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Q^, complete)`` [T, N]: the Monte-Carlo weights and the 0/1 mask of steps that have them."""
        rtg = discounted_reward_to_go(rollout.reward, rollout.ended, self.cfg.gamma)
        complete = complete_episode_mask(rollout.ended)
        if self.cfg.reward_to_go:
            return rtg, complete
        # the whole (discounted) return of the episode: the reward-to-go at its first step, carried forward
        total = torch.empty_like(rtg)
        total[0] = rtg[0]
        for t in range(1, rtg.shape[0]):
            total[t] = torch.where(rollout.ended[t - 1] > 0, rtg[t], total[t - 1])
        return total, complete * _started_inside(rollout.ended)

    def update(self, rollout: Rollout) -> dict[str, torch.Tensor]:
        loss, metrics = self.loss(rollout)
        self._clipped_step("pg", loss)
        self._watch(loss)
        self.num_updates += 1
        return metrics

    def loss(self, rollout: Rollout) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The policy-gradient loss over the steps with Monte-Carlo weights (plus the value loss with a learned
        baseline, minus the entropy bonus), and the metrics of the update."""
        cfg = self.cfg
        q, mask = (x.reshape(-1) for x in self.returns(rollout))
        obs, act = rollout.flat("obs"), rollout.flat("act")
        count = mask.sum().clamp_min(1.0)
        params = self.policy(obs)
        log_prob = self.policy.log_prob(params, act)
        metrics = {}
        if cfg.baseline == "value":
            value = self.value(obs)
            baseline = value.detach()
            value_loss = 0.5 * ((value - q).square() * mask).sum() / count
            metrics["value_loss"] = value_loss.detach()
        elif cfg.baseline == "mean":
            baseline = (q * mask).sum() / count
            value_loss = 0.0
        else:
            baseline, value_loss = 0.0, 0.0
        adv = q - baseline
        if cfg.normalize_advantage:
            mean = (adv * mask).sum() / count
            std = (((adv - mean).square() * mask).sum() / count).sqrt()
            adv = (adv - mean) / (std + 1e-8)
        policy_loss = -(log_prob * adv * mask).sum() / count
        entropy = (self.policy.entropy(params) * mask).sum() / count
        loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
        return loss, {**metrics, "policy_loss": policy_loss.detach(), "entropy": entropy.detach(), "complete_fraction": mask.mean()}
