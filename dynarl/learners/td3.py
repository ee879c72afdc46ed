"""TD3 (seed 002; inventory F8): DDPG plus clipped double Q, target policy smoothing and delayed updates.

The seed keeps the clipped double-Q target and the smoothing noise; the delayed actor/target updates
(d = 2) and noise defaults (sigma 0.2, clip 0.5, exploration 0.1) are Fujimoto et al.'s standard.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dynarl.config import non_negative, param, positive
from dynarl.learners.ddpg import DDPGLearner, DDPGLearnerConfig
from dynarl.nn.noise import normal_like


@dataclass
class TD3LearnerConfig(DDPGLearnerConfig):
    policy_delay: int = param(2, positive, "critic updates per actor and target update")
    target_noise: float = param(0.2, non_negative, "sigma of the target policy smoothing noise")
    noise_clip: float = param(0.5, non_negative, "c: the smoothing noise is clipped to [-c, c]")


class TD3Learner(DDPGLearner):
    name = "td3"
    n_critics = 2  # clipped double Q: the min over both target critics

    def target_action(self, next_obs: torch.Tensor) -> torch.Tensor:
        """a' = clip(mu_theta'(s') + clip(N(0, sigma), -c, c), -1, 1)."""
        act = self.actor_target(next_obs)
        noise = (self.cfg.target_noise * normal_like(act)).clamp(-self.cfg.noise_clip, self.cfg.noise_clip)
        return (act + noise).clamp(-1.0, 1.0)

    def actor_due(self) -> bool:
        return self.num_updates % self.cfg.policy_delay == 0
