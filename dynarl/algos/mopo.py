"""Offline model-based RL: MOPO (Yu et al. 2020) and COMBO (Yu et al. 2021), the Dyna loop on a fixed dataset.

    load the dataset D (env units: the model and the task's termination function read raw observations)
    fit the ensemble p_theta on D once (holdout, early stop, elites)
    for each gradient step:
        every rollout_freq steps: from rollout_batch_size states of D, roll p_theta h steps with the current
            policy; MOPO: r~ = r^ - lambda u(s, a); add them to D_model (it keeps retain_epochs rounds)
        learner.update(batch of real_ratio D + the rest D_model)

The model data (ensemble, rollouts, mixed batches, diagnostics) is :class:`~dynarl.algos.model_data.ModelData`,
the same as MBPO's; the dataset source replaces the env collector and the gradient step is the clock. MOPO
learns with SAC on the penalised rewards (``penalty``: ``aleatoric``, ``disagreement`` or ``tv_bound``, see
:mod:`dynarl.models.penalties`; ``penalty_coef`` = lambda). COMBO leaves the rewards alone and learns with
CQL's critic pushed down on the model data (:mod:`dynarl.learners.combo`).

Diagnostics at every evaluation: the penalty's mean and quantiles over the last rollouts, the model's holdout
error on D, and for the deterministic policy from the evaluation starts the model's return, the summed
penalty along the same model paths and their difference, MOPO's lower bound eta_M^(pi) - lambda eps_u(pi)
(004; Yu et al. 2020 Theorem 4.4, undiscounted as the returns are), beside the return measured in the env.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from dynarl.algos.base import Attributes
from dynarl.algos.model_data import ModelData, ModelDataConfig
from dynarl.algos.offline import OfflineAlgorithm, OfflineConfig
from dynarl.algos.registry import register
from dynarl.config import non_negative, one_of, param, positive
from dynarl.data.datasets import DatasetError
from dynarl.learners.combo import COMBOLearner, COMBOLearnerConfig
from dynarl.learners.sac import SACLearner, SACLearnerConfig
from dynarl.models.penalties import INCLUDES_REWARD, PENALTIES, aleatoric, ensemble_outputs, penalized_reward, tv_bound

PENALTY_CHUNK = 16_384  # rows per ensemble pass when scoring rollouts (bounds the [members, rows, hidden] activations)


@dataclass
class OfflineModelConfig(OfflineConfig, ModelDataConfig):
    normalize_observations: bool = param(False, help="must stay false: the model standardises its own inputs, and the rollouts and the task's termination function work in the env's units")
    rollout_batch_size: int = param(50_000, positive, "model rollouts started per round, from uniformly sampled dataset states (OfflineRL-Kit: 50k)")
    rollout_length: int = param(5, positive, "h: steps per model rollout (OfflineRL-Kit: 1-5 by task)")
    rollout_freq: int = param(1_000, positive, "gradient steps between rounds of rollouts (OfflineRL-Kit: 1000)")
    epoch_length: int = param(1_000, positive, "gradient steps per epoch: the unit of retain_epochs (OfflineRL-Kit: 1000)")
    retain_epochs: int = param(5, positive, "the model buffer keeps the rollouts of this many epochs (OfflineRL-Kit: 5)")

    def check(self) -> str | None:
        if self.normalize_observations:
            return f"normalize_observations=true is invalid for {self.algo}: the model standardises its own inputs and the rollouts stay in the env's units; drop it"
        return super().check() or self.model_data_check()


class OfflineModelLoop(ModelData):
    """The loop above as a mix-in for :class:`OfflineAlgorithm`."""

    cfg: OfflineModelConfig
    run_parts = ("model_buffer",)

    def _setup(self) -> None:
        super()._setup()  # the dataset source and the learner
        if self.policy_only:  # acting needs the policy alone, not the model or its data
            return
        self.rollout_length = self.cfg.rollout_length
        self._check_holdout()
        self._setup_model_data(self.dataset, self.cfg.epoch_length / self.cfg.rollout_freq, self._reward_transform(), self._rollout_score())

    def _check_holdout(self) -> None:
        t, n = self.cfg.trainer, len(self.dataset)
        if min(int(n * t.holdout_ratio), t.max_holdout) < 1 or n - int(n * t.holdout_ratio) < 2:
            need = math.ceil(1 / t.holdout_ratio) if t.holdout_ratio > 0 else "a positive holdout_ratio and more"
            raise DatasetError(
                f"dataset {self.cfg.dataset!r} has {n} transitions: too few to hold out trainer.holdout_ratio={t.holdout_ratio} of them "
                f"for the model's early stopping and elite choice; use a dataset of at least {need} transitions (or set trainer.holdout_ratio)"
            )

    def _reward_transform(self):
        return None

    def _rollout_score(self):
        return None

    def parts(self) -> dict:
        if self.policy_only:
            return super().parts()
        return {**super().parts(), **self.model_data_parts(), "model_loop": Attributes(self, "model_fits", "_diagnostics", "phase_seconds")}

    def train_step(self) -> None:
        if self.model_fits == 0:
            with self._timed("model_train"):
                self._record_fit(self.trainer.fit(**self._model_data()))
        if self.gradient_steps % self.cfg.rollout_freq == 0:
            self._generate_rollouts()
        with self._timed("policy_update"):
            self._last_metrics = self.learner.update(self.sample_batch())

    def _model_data(self) -> dict[str, torch.Tensor]:
        d = self.dataset.transitions()
        return {
            "obs": d["obs"],
            "act": d["act"],
            "next_obs": d["next_obs"],
            "reward": d["reward"],
            "terminated": d["terminated"] if self.model.cfg.learn_termination else None,
        }


# --- MOPO ---------------------------------------------------------------------------------------------------


@dataclass
class MOPOConfig(OfflineModelConfig):
    algo: str = "mopo"
    penalty: str = param("aleatoric", one_of(*PENALTIES), "u(s, a): aleatoric (the paper's max_i ||Sigma_i||_F), disagreement (max_i ||mu_i - mu_bar||) or tv_bound (the total-variation estimate max_i (mu_i - mu_bar)^2 / sigma_i^2)")
    penalty_coef: float = param(1.0, non_negative, "lambda in r~ = r^ - lambda u (OfflineRL-Kit: 0.5-5 by task; 0: MBPO on the dataset)")
    aleatoric_norm: str = param("std", one_of("std", "covariance"), "aleatoric only: ||sigma_i||_2 (MOPO's code and OfflineRL-Kit, whose lambdas assume it) or ||Sigma_i||_F (the paper's formula)")
    tv_reduce: str = param("max", one_of("max", "mean"), "tv_bound only: reduce over members by max (the conservative bound) or mean")
    learner: SACLearnerConfig = field(default_factory=lambda: SACLearnerConfig(actor_lr=1e-4, critic_lr=3e-4, alpha_lr=1e-4))


@register
class MOPO(OfflineModelLoop, OfflineAlgorithm):
    """Model-based offline policy optimisation (Yu et al. 2020): SAC on model rollouts whose reward is penalised
    by the ensemble's uncertainty, r~ = r^ - lambda u(s, a), a lower bound on the true return (seed 004)."""

    name, config_cls, learner_cls = "mopo", MOPOConfig, SACLearner
    cfg: MOPOConfig

    def uncertainty(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """u(s, a) [B] from every member's prediction for the same rows (in chunks)."""
        out = [self.penalty(self.rollout_model.predict(obs[i : i + PENALTY_CHUNK], act[i : i + PENALTY_CHUNK])) for i in range(0, obs.shape[0], PENALTY_CHUNK)]
        return torch.cat(out) if out else obs.new_zeros(0)

    def penalty(self, pred: dict[str, torch.Tensor]) -> torch.Tensor:
        """u [B] from every member's prediction ``model.predict(obs, act)`` for the same B rows."""
        cfg = self.cfg
        mean, var = ensemble_outputs(pred, INCLUDES_REWARD[cfg.penalty])
        if cfg.penalty == "aleatoric":
            return aleatoric(mean, var, norm=cfg.aleatoric_norm)
        if cfg.penalty == "tv_bound":
            return tv_bound(mean, var, reduce=cfg.tv_reduce)
        return PENALTIES[cfg.penalty](mean, var)

    def _rollout_score(self):
        """u computed by the rollouts' model env on its way: one pass of every member per step then serves both
        the TS1 step and the penalty, as in OfflineRL-Kit's model env. With lambda = 0 the rollouts stay MBPO's
        own passes (so they are MBPO's rollouts by construction) and u, a diagnostic only, is computed apart."""
        fused = self.cfg.penalty_coef > 0 and self.cfg.propagation != "expectation"
        return self.penalty if fused else None

    def _reward_transform(self):
        def penalise(obs, act, reward, next_obs, u):
            if u is None:
                u = self.uncertainty(obs, act)
            q = torch.quantile(u, torch.tensor([0.5, 0.9, 0.99], device=u.device)) if u.numel() else u.new_full((3,), math.nan)
            self._diagnostics.update(penalty_mean=float(u.mean()), penalty_p50=float(q[0]), penalty_p90=float(q[1]), penalty_p99=float(q[2]), penalty_max=float(u.max()) if u.numel() else math.nan)
            return penalized_reward(reward, u, self.cfg.penalty_coef)

        return penalise

    def _model_return_extras(self, rollout: dict) -> dict[str, float]:
        """004's lower bound on the deterministic policy's model paths: sum_t u and model return - lambda sum_t u."""
        obs, act, alive = rollout["obs"][:, :, :-1], rollout["act"], rollout["alive"]
        u = self.uncertainty(obs.reshape(-1, obs.shape[-1]), act.reshape(-1, act.shape[-1])).view(alive.shape) * alive
        penalty_sum = float(u.sum(-1).mean())
        return {"model_penalty_sum": penalty_sum, "model_lower_bound": float(rollout["return"].mean()) - self.cfg.penalty_coef * penalty_sum}


# --- COMBO --------------------------------------------------------------------------------------------------


@dataclass
class COMBOConfig(OfflineModelConfig):
    algo: str = "combo"
    real_ratio: float = param(0.5, help="f: share of dataset rows in each batch, the rest from model rollouts (OfflineRL-Kit: 0.5)")
    learner: COMBOLearnerConfig = field(default_factory=lambda: COMBOLearnerConfig(hidden_sizes=(256, 256, 256), actor_lr=1e-4, critic_lr=3e-4, alpha_lr=1e-4))

    def check(self) -> str | None:
        if not 0 < self.real_ratio <= 1:
            return f"real_ratio={self.real_ratio} is invalid for combo: Q is pushed up on the batch's dataset rows, so it must be in (0, 1] (OfflineRL-Kit: 0.5)"
        return super().check()


@register
class COMBO(OfflineModelLoop, OfflineAlgorithm):
    """Conservative offline model-based policy optimisation (Yu et al. 2021): CQL's critic on a mix of dataset
    rows and model rollouts, Q pushed down on the model data and up on the dataset's pairs; no reward penalty."""

    name, config_cls, learner_cls = "combo", COMBOConfig, COMBOLearner

    def _setup(self) -> None:
        super()._setup()
        if not self.policy_only:
            self.learner.real_rows = self.real_rows()
