"""Model-based value expansion: the H-step model Q-target of 003 (Feinberg et al. 2018, MVE).

003 writes the critic target as ``y = sum_{k=t}^{H-1} gamma^{k-t} r^_k + gamma^H Q(s^_H, a^_H)``: the first
step is the real (or replayed) transition ``(s_0, a_0, r_0, s_1)``, the next H - 1 steps are imagined by
the model from ``s_1`` with the learner's target policy, and the tail is the learner's own bootstrap:

    y = r_0 + gamma d_0 [b_1 + r^_1 + gamma d_1 [b_2 + r^_2 + ... + gamma d_{H-1} V'(s^_H)]]

``d_k = 1 - terminated_k`` (a particle that terminates in the model stops earning and stops bootstrapping),
``b_k`` is the target policy's per-step bonus (SAC's ``-alpha log pi(a_k|s_k)``, which makes the expansion
of the *soft* Q-value; 0 for DDPG/TD3), and ``V'`` is :meth:`ActorCriticLearner.next_value`. With H = 1 it
is the learner's one-step target exactly.
"""

from __future__ import annotations

import torch

from dynarl.errors import ConfigError
from dynarl.learners.base import ActorCriticLearner, Batch
from dynarl.models.model_env import ModelEnv


class ValueExpansion:
    """``learner.value_expansion = ValueExpansion(model_env, horizon)``: H-step targets for its critic."""

    def __init__(self, model_env: ModelEnv, horizon: int):
        if horizon < 1:
            raise ConfigError(f"value-expansion horizon={horizon} is invalid: must be >= 1 (1 = the one-step target)")
        self.model_env = model_env
        self.horizon = horizon

    @torch.no_grad()
    def __call__(self, learner: ActorCriticLearner, batch: Batch) -> torch.Tensor:
        gamma = learner.cfg.gamma
        target = batch.reward.clone()
        discount = gamma * (1.0 - batch.terminated)
        obs = batch.next_obs
        if self.horizon > 1:
            self.model_env.reset(obs)
        for _ in range(1, self.horizon):  # the imagined steps k = 1 .. H-1
            act, bonus = learner.target_policy(obs)
            obs, reward, terminated, _ = self.model_env.step(act)
            target += discount * (bonus + reward)
            discount = discount * gamma * (~terminated).to(discount.dtype)
        return target + discount * learner.next_value(obs)
