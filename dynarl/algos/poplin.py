"""POPLIN: model-based policy planning (Wang & Ba 2019; 000 section 2.3, A6). PETS's loop with a policy.

    PETS's loop (random trial, model retrained after every trial, MPC through the ensemble), except that
    the planner searches around the policy's proposal instead of around a blind action sequence:
        POPLIN-A: a_t = pi(s_t) + delta_t, CEM over delta [H, A]       (noise in action space)
        POPLIN-P: a_t = pi_{theta + omega}(s_t), CEM over omega [D]    (noise in parameter space)
    after each model fit, distil the planner into the policy by behaviour cloning on its (s, a*) pairs:
        min_theta E_(s, a*) ||pi_theta(s) - a*||^2                       (000's distillation, the BC learner)

Only the planner's actions are distilled (the random trial's are not expert data). The policy is the same
BC learner that imitation algorithms use; the model, trainer and model env are PETS's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from dynarl.algos.base import Attributes, GeneratorState
from dynarl.algos.pets import PETS, PETSConfig
from dynarl.algos.registry import register
from dynarl.config import param, positive
from dynarl.data.batch import Batch
from dynarl.data.replay import ReplayBuffer
from dynarl.learners.bc import BCLearner, BCLearnerConfig
from dynarl.planning.mpc import PlannerConfig
from dynarl.planning.poplin import PolicyActionNoise, PolicyParamNoise


@dataclass
class POPLINConfig(PETSConfig):
    bc: BCLearnerConfig = field(default_factory=BCLearnerConfig)
    bc_epochs: int = param(20, positive, "passes over the planner's (s, a*) pairs after every model fit")
    noise_bound: float = param(1.0, positive, "POPLIN-A: |delta| <= noise_bound x half the action range; POPLIN-P: |omega| <= noise_bound")


@dataclass
class POPLINAConfig(POPLINConfig):
    algo: str = "poplin_a"


def _param_planner() -> PlannerConfig:
    # omega's spread: init_std x 2 x noise_bound = 0.1 per parameter
    return PlannerConfig(init_std=0.05)


@dataclass
class POPLINPConfig(POPLINConfig):
    algo: str = "poplin_p"
    planner: PlannerConfig = field(default_factory=_param_planner)


class POPLINLoop:
    """What POPLIN-A and POPLIN-P add to :class:`PETS` (a mix-in): the BC policy distilled from the planner's
    actions after every model fit; each variant chooses the proposal."""

    cfg: POPLINConfig
    run_parts = ("buffer", "expert")

    def _setup_policy(self) -> None:
        cfg = self.cfg
        self.learner = BCLearner(cfg.bc, self.observation_space, self.action_space, self.device)
        # the planner's (s, a*) pairs, actions in [-1, 1]; only obs and act are used
        self.expert = ReplayBuffer(cfg.buffer_size, self.obs_dim, self.act_dim, self.device)
        self.bc_generator = torch.Generator(device=self.device).manual_seed(cfg.seed + 4)
        self._bc_loss = math.nan

    def _record_plan(self, obs: np.ndarray, act: np.ndarray) -> None:
        self.expert.add(obs, self.actions.from_env(act), 0.0, obs, 0.0, 0.0)

    def _after_fit(self) -> None:
        n = len(self.expert)
        if n == 0:
            return
        data = {k: v[:n] for k, v in self.expert.storage.items()}
        self.learner.fit_normalizer(data["obs"])
        bs = self.cfg.bc.batch_size
        losses = []
        for _ in range(self.cfg.bc_epochs):
            perm = torch.randperm(n, generator=self.bc_generator, device=self.device)
            for i in range(0, n, bs):
                idx = perm[i : i + bs]
                batch = Batch(obs=data["obs"][idx], act=data["act"][idx], reward=data["reward"][idx], next_obs=data["next_obs"][idx], terminated=data["terminated"][idx], truncated=data["truncated"][idx])
                losses.append(self.learner.update(batch)["bc_loss"])
        self._bc_loss = float(torch.stack(losses[-max(1, math.ceil(n / bs)) :]).mean())

    def metrics(self) -> dict[str, float]:
        return {**super().metrics(), "train/bc_loss": self._bc_loss, "train/bc_updates": self.learner.num_updates}

    def all_finite(self) -> bool:
        return super().all_finite() and self.learner.all_finite()

    def parts(self) -> dict:
        return {**super().parts(), "learner": self.learner, "expert": self.expert, "bc_generator": GeneratorState(self.bc_generator), "bc": Attributes(self, "_bc_loss")}


@register
class POPLINA(POPLINLoop, PETS):
    """POPLIN-A: CEM over action noise around a BC-distilled policy's proposals (action space)."""

    name = "poplin_a"
    config_cls = POPLINAConfig

    def _proposal(self):
        policy = self.learner.policy
        return PolicyActionNoise(policy, self.act_low, self.act_high, self.cfg.planner.horizon, self.cfg.noise_bound)


@register
class POPLINP(POPLINLoop, PETS):
    """POPLIN-P: CEM over perturbations of a BC-distilled policy's parameters (parameter space)."""

    name = "poplin_p"
    config_cls = POPLINPConfig

    def _proposal(self):
        return PolicyParamNoise(self.learner.policy, self.act_low, self.act_high, self.cfg.noise_bound)
