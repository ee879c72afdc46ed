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

import contextlib
import copy
import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from dynarl.algos.base import Attributes, GeneratorState
from dynarl.algos.off_policy import OffPolicyConfig
from dynarl.config import non_negative, one_of, param, positive, unit_interval
from dynarl.data.batch import Batch
from dynarl.data.replay import ReplayBuffer
from dynarl.envs import get_task
from dynarl.errors import ConfigError
from dynarl.learners.base import flat_dim
from dynarl.learners.value_expansion import MVE_TARGETS, ValueExpansion
from dynarl.models import DynamicsModel, DynamicsModelConfig, ModelTrainer, ModelTrainerConfig
from dynarl.models.diagnostics import fit_summary, fresh_data_row, model_error
from dynarl.models.model_env import PROPAGATIONS, ModelEnv
from dynarl.nn.policies import TanhGaussianActor
from dynarl.seeding import EVAL_SEED_OFFSET
from dynarl.sources.model_rollouts import ROLLOUT_ACTIONS, ModelRollouts


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


def _mbpo_model() -> DynamicsModelConfig:
    # MBPO: 7 Gaussian members of 4x200 swish that predict (s' - s, r) jointly
    return DynamicsModelConfig(members=7, learn_reward=True)


def _mbpo_trainer() -> ModelTrainerConfig:
    return ModelTrainerConfig(num_elites=5)


@dataclass
class DynaConfig(OffPolicyConfig):
    learning_starts: int = param(5_000, positive, "uniform-random real steps before the model and the learner train (MBPO: 5000)")
    updates_per_step: int = param(20, positive, "G: learner updates per env step (MBPO: 20)")
    epoch_length: int = param(1_000, positive, "env steps per epoch: the unit of the rollout schedule and of retain_epochs (MBPO: 1000)")
    model_train_freq: int = param(250, positive, "env steps between model fits, each followed by a round of rollouts (MBPO: 250)")
    rollout_batch_size: int = param(100_000, positive, "model rollouts started per model fit, from uniformly sampled real states (MBPO: 100k)")
    rollout_schedule: tuple[int, ...] = param((1, 1, 1, 1), _schedule_check, "rollout length k on a linear schedule [min_epoch, max_epoch, min_k, max_k]")
    rollout_action: str = param("policy", one_of(*ROLLOUT_ACTIONS), "actions in rollouts: the current policy (MBPO), the stored action at the first step then the policy, or uniform random")
    retain_epochs: int = param(1, positive, "the model buffer keeps the rollouts of this many epochs (MBPO: 1; Humanoid 5)")
    real_ratio: float = param(0.05, unit_interval, "share of real transitions in each learner batch (MBPO: 0.05)")
    propagation: str = param("ts1", one_of(*PROPAGATIONS), "ensemble propagation in rollouts (MBPO: a random elite per row and step = ts1)")
    learned_termination: bool = param(False, help="learn a termination classifier with the model (for tasks with no known termination)")
    mve_horizon: int = param(0, non_negative, "H > 1: critic targets by model-based value expansion over H steps (MVE, Feinberg et al. 2018; 0 or 1: the one-step target)")
    mve_target: str = param("td_k", one_of(*MVE_TARGETS), "with mve_horizon > 1: td_k trains the critic on all H states of the imagined path (MVE's TD-k trick); real_state only at the sampled state (003)")
    model: DynamicsModelConfig = field(default_factory=_mbpo_model)
    trainer: ModelTrainerConfig = field(default_factory=_mbpo_trainer)

    def check(self) -> str | None:
        base = super().check()
        if base:
            return base
        if not self.model.learn_reward:
            return "model.learn_reward=false is invalid here: the model env's rewards come from the model"
        if self.trainer.num_elites is not None and self.trainer.num_elites > self.model.members:
            return f"trainer.num_elites={self.trainer.num_elites} is invalid: must be <= model.members={self.model.members}"
        return None


class DynaLoop:
    """The Dyna-style loop as a mix-in for :class:`OffPolicyAlgorithm`; see the module docstring.
    ``MBPO(DynaLoop, OffPolicyAlgorithm)`` picks the learner with ``learner_cls``."""

    cfg: DynaConfig
    run_parts = ("buffer", "model_buffer")

    # --- setup ------------------------------------------------------------------------------------------

    def _setup(self) -> None:
        super()._setup()
        cfg, dev = self.cfg, self.device
        task = get_task(self.env_name)
        self.termination_fn = task.standard_termination() if task is not None else None
        if self.termination_fn is None and not cfg.learned_termination:
            what = "has no termination function on the standard observation" if task else "is not a task dynarl knows the termination of"
            raise ConfigError(
                f"{self.name.upper()} needs to know when imagined rollouts terminate, and {self.env_name!r} {what}. "
                "Set learned_termination=true to learn it with the model (`dynarl list` shows the known tasks)."
            )
        self.obs_dim, self.act_dim = flat_dim(self.observation_space), flat_dim(self.action_space)
        model_cfg = dataclasses.replace(cfg.model, learn_termination=cfg.model.learn_termination or (self.termination_fn is None))
        self.model = DynamicsModel(model_cfg, self.obs_dim, self.act_dim, dev, generator=torch.Generator(device=dev).manual_seed(cfg.seed + 11))
        self.trainer = ModelTrainer(self.model, cfg.trainer, seed=cfg.seed + 12)
        self.rollout_generator = torch.Generator(device=dev).manual_seed(cfg.seed + 13)
        model_env = ModelEnv(self.model, reward_fn=None, termination_fn=self.termination_fn, propagation=cfg.propagation, generator=self.rollout_generator)
        self.rollouts = ModelRollouts(model_env, self.buffer, self.rollout_generator, cfg.rollout_action)
        self.rollout_length = rollout_length(0, cfg.rollout_schedule)
        self.model_buffer = ReplayBuffer(self._model_capacity(), self.obs_dim, self.act_dim, dev)
        self.mve_generator = None
        if cfg.mve_horizon > 1:
            # a separate env (its own generator) so targets never move the rollouts' random stream
            self.mve_generator = torch.Generator(device=dev).manual_seed(cfg.seed + 14)
            mve_env = ModelEnv(self.model, termination_fn=self.termination_fn, propagation=cfg.propagation, generator=self.mve_generator)
            ValueExpansion(self.learner, mve_env, cfg.mve_horizon, cfg.mve_target)  # sets learner.value_expansion
        self.model_fits = 0
        self._fit_end = 0  # real-buffer size at the last fit: rows past it are fresh for eps_m
        self._epoch_actor = copy.deepcopy(self.learner.actor)  # the policy at the start of the epoch, for eps_pi
        self._epoch_actor.requires_grad_(False)
        self._diagnostics: dict[str, float] = {}
        self.phase_seconds = {"model_train": 0.0, "rollout": 0.0, "policy_update": 0.0}

    def parts(self) -> dict:
        return {
            **super().parts(),
            "model": self.model,
            "trainer": self.trainer,
            "model_buffer": ModelBufferPart(self),
            "epoch_actor": self._epoch_actor,
            "rollout_generator": GeneratorState(self.rollout_generator),
            **({"mve_generator": GeneratorState(self.mve_generator)} if self.mve_generator is not None else {}),
            "dyna": Attributes(self, "rollout_length", "model_fits", "_fit_end", "_diagnostics", "phase_seconds"),
            "rollouts": Attributes(self.rollouts, "added"),
        }

    def _model_capacity(self) -> int:
        """retain_epochs x (rollouts per epoch x rollout length), as MBPO sizes its model pool."""
        cfg = self.cfg
        rollouts_per_epoch = cfg.rollout_batch_size * cfg.epoch_length / cfg.model_train_freq
        return max(int(cfg.retain_epochs * rollouts_per_epoch * self.rollout_length), 1)

    # --- the loop -----------------------------------------------------------------------------------------

    def epoch(self) -> int:
        """Epochs completed since learning started (the rollout schedule's clock)."""
        return max(self.env_steps - self.cfg.learning_starts, 0) // self.cfg.epoch_length

    def train_step(self) -> None:
        cfg = self.cfg
        before = self.env_steps
        self.collect()
        if not self.learning():
            return
        if self.model_fits == 0 or self.env_steps // cfg.model_train_freq > before // cfg.model_train_freq:
            with self._timed("model_train"):
                self._train_model()
            self._set_rollout_length()
            with self._timed("rollout"):
                self._diagnostics.update(rollout_length=self.rollout_length, **self.rollouts.generate(cfg.rollout_batch_size, self.rollout_length, lambda o: self.learner.act(o, deterministic=False), self.model_buffer))
        epochs_before = (before - cfg.learning_starts) // cfg.epoch_length if before >= cfg.learning_starts else -1
        if self.epoch() > epochs_before:  # learning started, or an epoch ended
            self._epoch_policy_change()
        rounds = self.env_steps // cfg.train_freq - before // cfg.train_freq
        if rounds > 0:
            with self._timed("policy_update"):
                self.policy_updates(rounds * cfg.updates_per_step)

    @contextlib.contextmanager
    def _timed(self, phase: str):
        """Accumulate the wall-clock of one phase (model_train, rollout, policy_update) for the speed split."""
        start = time.perf_counter()
        yield
        self.phase_seconds[phase] += time.perf_counter() - start

    def _train_model(self) -> None:
        fresh = len(self.buffer) - self._fit_end
        fit_row = {}
        if self.model_fits > 0 and fresh > 0:  # eps_m on real data the model has not been trained on
            rows = self.buffer.recent(fresh)
            eps_m = model_error(self.model, rows["obs"], rows["act"], rows["next_obs"])  # on all fresh rows
            self._diagnostics.update(eps_m)
            fit_row = {**fresh_data_row(self.model, rows["obs"], rows["act"], rows["next_obs"], (rows["terminated"] > 0) | (rows["truncated"] > 0)), **eps_m}
        result = self.trainer.fit_replay(self.buffer)
        self.model_fits += 1
        self._fit_end = len(self.buffer)
        self._diagnostics.update(model_holdout_mse=result.metrics["model_holdout_mse"], model_epochs=result.metrics["model_epochs"], model_fits=self.model_fits)
        self.log_model_fit({"model_fit": self.model_fits, **fit_summary(result), **fit_row})  # the run's model_diagnostics.csv

    def _set_rollout_length(self) -> None:
        k = rollout_length(self.epoch(), self.cfg.rollout_schedule)
        if k != self.rollout_length:
            self.rollout_length = k
            self.model_buffer = self.model_buffer.resized(self._model_capacity())

    def sample_batch(self) -> Batch:
        """real_ratio of the batch from D_env, the rest from D_model (all real until rollouts exist)."""
        cfg = self.cfg
        if len(self.model_buffer) == 0:
            return self.buffer.sample(cfg.batch_size)
        n_real = int(round(cfg.batch_size * cfg.real_ratio))
        real, imagined = self.buffer.sample(n_real), self.model_buffer.sample(cfg.batch_size - n_real)
        return Batch(**{k: torch.cat([getattr(real, k), getattr(imagined, k)]) for k in ("obs", "act", "reward", "next_obs", "terminated", "truncated")})

    @torch.no_grad()
    def _epoch_policy_change(self, states: int = 1_000) -> None:
        """eps_pi proxy: RMS change of the deterministic action on real states since the previous epoch."""
        obs = self.buffer.sample(min(states, len(self.buffer))).obs
        now, before = _mean_action(self.learner.actor, obs), _mean_action(self._epoch_actor, obs)
        self._diagnostics["eps_pi"] = float((now - before).pow(2).mean().sqrt())
        self._diagnostics["epoch"] = self.epoch()
        self._epoch_actor.load_state_dict(self.learner.actor.state_dict())

    # --- diagnostics --------------------------------------------------------------------------------------------

    def on_evaluation(self, mean: float, std: float) -> None:
        """Beside the real return, the same policy's return predicted in the model from the same starts."""
        if self.model_fits > 0:
            self._diagnostics["model_return"] = self._model_return()
            self._diagnostics["model_return_gap"] = self._diagnostics["model_return"] - mean

    @torch.no_grad()
    def _model_return(self) -> float:
        starts = [self.eval_env.reset(seed=self.cfg.seed + EVAL_SEED_OFFSET + i)[0] for i in range(self.cfg.eval_episodes)]
        horizon = (self.eval_env.spec.max_episode_steps if self.eval_env.spec else None) or 1000
        g = torch.Generator(device=self.device).manual_seed(self.cfg.seed + self.env_steps)  # stateless: resume-safe
        menv = ModelEnv(self.model, termination_fn=self.termination_fn, propagation=self.cfg.propagation, generator=g)
        start = torch.as_tensor(np.stack(starts), dtype=torch.float32, device=self.device)
        out = menv.rollout(start, policy=lambda o: self.learner.act(o, deterministic=True), rollout_length=horizon)
        return float(out["return"].mean())

    def metrics(self) -> dict[str, float]:
        seconds = {f"time/seconds_{k}": round(v, 3) for k, v in self.phase_seconds.items()}
        model = {f"model/{k}": v for k, v in self._diagnostics.items()}
        counts = {"model/real_transitions": len(self.buffer), "model/model_transitions": len(self.model_buffer), "model/model_rollout_steps": self.rollouts.added}
        return {**super().metrics(), **model, **seconds, **counts}

    def all_finite(self) -> bool:
        return super().all_finite() and self.model.all_finite()

    def summary(self) -> dict:
        return {**super().summary(), "model_fits": self.model_fits, "model_rollout_steps": self.rollouts.added, "rollout_length": self.rollout_length}


class ModelBufferPart:
    """The model buffer as a checkpoint part: its capacity follows the restored rollout length."""

    def __init__(self, algo: DynaLoop):
        self.algo = algo

    def state_dict(self) -> dict:
        return self.algo.model_buffer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        a = self.algo
        a.model_buffer = ReplayBuffer(a._model_capacity(), a.obs_dim, a.act_dim, a.device)
        a.model_buffer.load_state_dict(state)
