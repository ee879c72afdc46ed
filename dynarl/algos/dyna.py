"""The Dyna-style loop with a learned ensemble (001 "general Dyna-style recipe"), of which MBPO is one setting.

MBPO (Janner et al. 2019; 000 section 3.3 and Algorithm 2, 003), as run here:

    collect learning_starts real steps with uniform actions into D_env
    for each env step:
        act with pi_phi in the real env, add the transition to D_env
        every model_train_freq steps:
            train the ensemble p_theta on D_env by maximum likelihood          (holdout, early stop, elites)
            k <- linear schedule [min_epoch, max_epoch, min_k, max_k] at the current epoch
            sample rollout_batch_size states s uniformly from D_env; roll p_theta forward k steps from them
                with actions from the current policy (or the buffer, or random), a random elite per step;
                add every step until termination to D_model                   (it keeps retain_epochs epochs)
        G = updates_per_step times: update the learner on a batch of real_ratio D_env + rest D_model

Rewards come from the model (``model.learn_reward``); terminations from the task's known function on the
standard observation (:meth:`TaskSpec.standard_termination`), or a learned termination head with
``learned_termination=true``. The learner is any off-policy actor-critic: MBPO uses SAC; ``dyna_td3`` and
``dyna_ddpg`` run the same loop with TD3 and DDPG. ``mve_horizon=H > 1`` adds model-based value expansion
(Feinberg et al. 2018, :mod:`dynarl.learners.value_expansion`): by default MVE's TD-k form, which trains
the critic on every state of an H-step imagined path from each batch row, each with its own (H - k)-step
target; ``mve_target=real_state`` keeps 003's form (the H-step target at the sampled state only).

Diagnostics, refreshed at every model fit and every evaluation, go to the metric rows: the model's holdout
MSE, ``eps_m`` on the real transitions gathered since the previous fit (not yet trained on), ``eps_pi`` (the
policy's change on real states since the previous epoch), the policy's return predicted in the model
beside the one measured in the real env, the rollout length, and the real/model data counts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from dynarl.algos.base import Attributes, GeneratorState
from dynarl.algos.model_data import ModelData, ModelDataConfig
from dynarl.algos.off_policy import OffPolicyConfig
from dynarl.config import non_negative, one_of, param, positive
from dynarl.learners.value_expansion import MVE_TARGETS, ValueExpansion
from dynarl.models.diagnostics import fresh_data_row, model_error
from dynarl.models.model_env import ModelEnv
from dynarl.nn.policies import TanhGaussianActor


def rollout_length(epoch: int, schedule: tuple[int, int, int, int]) -> int:
    """MBPO's linear schedule: k = min_k up to min_epoch, then linear in the epoch up to max_k at max_epoch."""
    min_epoch, max_epoch, min_k, max_k = schedule
    if epoch <= min_epoch:
        return int(min_k)
    frac = min((epoch - min_epoch) / max(max_epoch - min_epoch, 1), 1.0)
    return int(min_k + frac * (max_k - min_k))


def _mean_action(actor: torch.nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """The deterministic action of a deterministic actor (DDPG/TD3) or of a stochastic one (SAC's tanh(mean))."""
    return actor(obs, True)[0] if isinstance(actor, TanhGaussianActor) else actor(obs)


def _schedule_check(x) -> str | None:
    if len(x) != 4 or not all(int(v) == v for v in x):
        return "must be four integers [min_epoch, max_epoch, min_length, max_length]"
    min_epoch, max_epoch, min_k, max_k = x
    if not (0 <= min_epoch <= max_epoch and 1 <= min_k and 1 <= max_k):
        return "needs 0 <= min_epoch <= max_epoch and rollout lengths >= 1"
    return None


@dataclass
class DynaConfig(OffPolicyConfig, ModelDataConfig):
    learning_starts: int = param(5_000, positive, "uniform-random real steps before the model and the learner train (MBPO: 5000)")
    updates_per_step: int = param(20, positive, "G: learner updates per env step (MBPO: 20)")
    epoch_length: int = param(1_000, positive, "env steps per epoch: the unit of the rollout schedule and of retain_epochs (MBPO: 1000)")
    model_train_freq: int = param(250, positive, "env steps between model fits, each followed by a round of rollouts (MBPO: 250)")
    rollout_schedule: tuple[int, ...] = param((1, 1, 1, 1), _schedule_check, "rollout length k on a linear schedule [min_epoch, max_epoch, min_k, max_k]")
    mve_horizon: int = param(0, non_negative, "H > 1: critic targets by model-based value expansion over H steps (MVE, Feinberg et al. 2018; 0 or 1: the one-step target)")
    mve_target: str = param("td_k", one_of(*MVE_TARGETS), "with mve_horizon > 1: td_k trains the critic on all H states of the imagined path (MVE's TD-k trick); real_state only at the sampled state (one H-step target per batch row)")

    def check(self) -> str | None:
        return super().check() or self.model_data_check()


class DynaLoop(ModelData):
    """The Dyna-style loop as a mix-in for :class:`OffPolicyAlgorithm`; see the module docstring.
    ``MBPO(DynaLoop, OffPolicyAlgorithm)`` picks the learner with ``learner_cls``."""

    cfg: DynaConfig
    run_parts = ("buffer", "model_buffer")

    # --- setup ------------------------------------------------------------------------------------------

    def _setup(self) -> None:
        super()._setup()
        cfg, dev = self.cfg, self.device
        self.rollout_length = rollout_length(0, cfg.rollout_schedule)
        self._setup_model_data(self.buffer, cfg.epoch_length / cfg.model_train_freq)
        self.mve_generator = None
        if cfg.mve_horizon > 1:
            # a separate env (its own generator) so targets never move the rollouts' random stream
            self.mve_generator = torch.Generator(device=dev).manual_seed(cfg.seed + 14)
            mve_env = ModelEnv(self.model, termination_fn=self.termination_fn, propagation=cfg.propagation, generator=self.mve_generator)
            ValueExpansion(self.learner, mve_env, cfg.mve_horizon, cfg.mve_target)  # sets learner.value_expansion
        self._fit_end = 0  # real-buffer size at the last fit: rows past it are fresh for eps_m
        self._epoch_actor = copy.deepcopy(self.learner.actor)  # the policy at the start of the epoch, for eps_pi
        self._epoch_actor.requires_grad_(False)

    def parts(self) -> dict:
        return {
            **super().parts(),
            **self.model_data_parts(),
            "epoch_actor": self._epoch_actor,
            **({"mve_generator": GeneratorState(self.mve_generator)} if self.mve_generator is not None else {}),
            "dyna": Attributes(self, "rollout_length", "model_fits", "_fit_end", "_diagnostics", "phase_seconds"),
        }

    # --- the loop -----------------------------------------------------------------------------------------

    def epoch(self) -> int:
        """Epochs completed since learning started (the rollout schedule's clock)."""
        return max(self.env_steps - self.cfg.learning_starts, 0) // self.cfg.epoch_length

    def prepare_updates(self, before: int) -> None:
        """After each vector step (once learning has started): fit the model every model_train_freq env steps and
        refill D_model with rollouts of the new length; at each epoch's end, the eps_pi diagnostic."""
        cfg = self.cfg
        if not self.learning():
            return
        if self.model_fits == 0 or self.env_steps // cfg.model_train_freq > before // cfg.model_train_freq:
            with self._timed("model_train"):
                self._train_model()
            self._set_rollout_length()
            self._generate_rollouts()
        epochs_before = (before - cfg.learning_starts) // cfg.epoch_length if before >= cfg.learning_starts else -1
        if self.epoch() > epochs_before:  # learning started, or an epoch ended
            self._epoch_policy_change()

    def policy_updates(self, n: int) -> None:
        if n:
            with self._timed("policy_update"):
                super().policy_updates(n)

    def _train_model(self) -> None:
        fresh = len(self.buffer) - self._fit_end
        fit_row = {}
        if self.model_fits > 0 and fresh > 0:  # eps_m on real data the model has not been trained on
            rows = self.buffer.recent(fresh)
            eps_m = model_error(self.model, rows["obs"], rows["act"], rows["next_obs"])  # on all fresh rows
            self._diagnostics.update(eps_m)
            fit_row = {**fresh_data_row(self.model, rows["obs"], rows["act"], rows["next_obs"], (rows["terminated"] > 0) | (rows["truncated"] > 0)), **eps_m}
        result = self.trainer.fit_replay(self.buffer)
        self._fit_end = len(self.buffer)
        self._record_fit(result, fit_row)

    def _set_rollout_length(self) -> None:
        k = rollout_length(self.epoch(), self.cfg.rollout_schedule)
        if k != self.rollout_length:
            self.rollout_length = k
            self.model_buffer = self.model_buffer.resized(self._model_capacity())

    @torch.no_grad()
    def _epoch_policy_change(self, states: int = 1_000) -> None:
        """eps_pi proxy: RMS change of the deterministic action on real states since the previous epoch."""
        obs = self.buffer.sample(min(states, len(self.buffer))).obs
        now, before = _mean_action(self.learner.actor, obs), _mean_action(self._epoch_actor, obs)
        self._diagnostics["eps_pi"] = float((now - before).pow(2).mean().sqrt())
        self._diagnostics["epoch"] = self.epoch()
        self._epoch_actor.load_state_dict(self.learner.actor.state_dict())
