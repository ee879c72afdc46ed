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

from dynarl.algos.off_policy import OffPolicyAlgorithm, OffPolicyConfig
from dynarl.config import non_negative, one_of, param, positive, unit_interval
from dynarl.data.batch import Batch
from dynarl.data.replay import ReplayBuffer
from dynarl.envs import get_task
from dynarl.errors import ConfigError
from dynarl.learners.value_expansion import MVE_TARGETS, ValueExpansion
from dynarl.models import DynamicsModel, DynamicsModelConfig, ModelTrainer, ModelTrainerConfig
from dynarl.models.diagnostics import fit_summary, fresh_data_row, model_error
from dynarl.models.model_env import PROPAGATIONS, ModelEnv
from dynarl.nn.policies import TanhGaussianActor
from dynarl.run.evaluate import EVAL_SEED_OFFSET

ROLLOUT_ACTIONS = ("policy", "buffer", "random")


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


class DynaAlgorithm(OffPolicyAlgorithm):
    """The Dyna-style loop; see the module docstring. Subclasses pick the learner (``learner_cls``)."""

    config_cls: type[DynaConfig]

    # --- setup ------------------------------------------------------------------------------------------

    def _check_env(self, env) -> None:
        super()._check_env(env)
        task = get_task(self.cfg.env)
        self.termination_fn = task.standard_termination() if task is not None else None
        if self.termination_fn is None and not self.cfg.learned_termination:
            what = "has no termination function on the standard observation" if task else "is not a task dynarl knows the termination of"
            raise ConfigError(
                f"{self.name.upper()} needs to know when imagined rollouts terminate, and {self.cfg.env!r} {what}. "
                "Set learned_termination=true to learn it with the model (`dynarl list` shows the known tasks)."
            )

    def _setup(self) -> None:
        super()._setup()
        cfg, dev = self.cfg, self.device
        model_cfg = dataclasses.replace(cfg.model, learn_termination=cfg.model.learn_termination or (self.termination_fn is None))
        self.model = DynamicsModel(model_cfg, self.obs_dim, self.act_dim, dev, generator=torch.Generator(device=dev).manual_seed(cfg.seed + 11))
        self.trainer = ModelTrainer(self.model, cfg.trainer, seed=cfg.seed + 12)
        self.rollout_generator = torch.Generator(device=dev).manual_seed(cfg.seed + 13)
        self.model_env = ModelEnv(self.model, reward_fn=None, termination_fn=self.termination_fn, propagation=cfg.propagation, generator=self.rollout_generator)
        self.rollout_length = rollout_length(0, cfg.rollout_schedule)
        self.model_buffer = ReplayBuffer(self._model_capacity(), self.obs_dim, self.act_dim, dev)
        if cfg.mve_horizon > 1:
            # a separate env (its own generator) so targets never move the rollouts' random stream
            mve_env = ModelEnv(self.model, termination_fn=self.termination_fn, propagation=cfg.propagation, generator=torch.Generator(device=dev).manual_seed(cfg.seed + 14))
            ValueExpansion(self.learner, mve_env, cfg.mve_horizon, cfg.mve_target)  # sets learner.value_expansion
        self.model_fits = 0
        self.rollouts_added = 0
        self._fit_end = 0  # real-buffer size at the last fit: rows past it are fresh for eps_m
        self._epoch_actor = copy.deepcopy(self.learner.actor)  # the policy at the start of the epoch, for eps_pi
        self._epoch_actor.requires_grad_(False)
        self._diagnostics: dict[str, float] = {}
        self.phase_seconds = {"model_train": 0.0, "rollout": 0.0, "policy_update": 0.0}

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
        self._collect()
        if not self._learning():
            return
        if self.model_fits == 0 or self.env_steps % cfg.model_train_freq == 0:
            with self._timed("model_train"):
                self._train_model()
            self._set_rollout_length()
            with self._timed("rollout"):
                self._rollout()
        if (self.env_steps - cfg.learning_starts) % cfg.epoch_length == 0:
            self._epoch_policy_change()
        if self.env_steps % cfg.train_freq == 0:
            with self._timed("policy_update"):
                self._policy_updates()

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

    def _rollout_policy(self, first_act: torch.Tensor | None):
        """The action source of the rollouts: ``policy(obs)`` for the model env, per ``rollout_action``."""
        source, steps_taken = self.cfg.rollout_action, 0

        def policy(obs: torch.Tensor) -> torch.Tensor:
            nonlocal steps_taken
            steps_taken += 1
            if source == "random":
                return torch.rand(obs.shape[0], self.act_dim, generator=self.rollout_generator, device=obs.device) * 2 - 1
            if source == "buffer" and steps_taken == 1:
                return first_act
            return self.learner.act(obs, deterministic=False)

        return policy

    @torch.no_grad()
    def _rollout(self) -> None:
        """Branched rollouts: k model steps from rollout_batch_size uniformly sampled real states."""
        cfg = self.cfg
        idx = torch.randint(0, len(self.buffer), (cfg.rollout_batch_size,), generator=self.rollout_generator, device=self.device)
        start, first_act = self.buffer.storage["obs"][idx], self.buffer.storage["act"][idx]
        out = self.model_env.rollout(start, policy=self._rollout_policy(first_act), rollout_length=self.rollout_length)
        alive = out["alive"][:, 0].reshape(-1)  # [N * k]: steps that started from a live state
        n_k = alive.shape[0]
        rows = {
            "obs": out["obs"][:, 0, :-1].reshape(n_k, -1),
            "act": out["act"][:, 0].reshape(n_k, -1),
            "reward": out["reward"][:, 0].reshape(n_k),
            "next_obs": out["obs"][:, 0, 1:].reshape(n_k, -1),
            "terminated": out["terminated"][:, 0].reshape(n_k).float(),
            "truncated": torch.zeros(n_k, device=self.device),
        }
        # time-major order, so the FIFO drops the oldest steps first; steps after a termination are dropped
        order = torch.arange(n_k, device=self.device).view(cfg.rollout_batch_size, self.rollout_length).t().reshape(-1)
        keep = order[alive[order]]
        self.model_buffer.add_batch({k: v[keep] for k, v in rows.items()})
        self.rollouts_added += int(keep.numel())
        self._diagnostics.update(rollout_length=self.rollout_length, model_rollout_reward=float(rows["reward"][keep].mean()))

    def _sample_batch(self) -> Batch:
        """real_ratio of the batch from D_env, the rest from D_model (all real until rollouts exist)."""
        cfg = self.cfg
        if len(self.model_buffer) == 0:
            return self.buffer.sample(cfg.batch_size)
        n_real = int(round(cfg.batch_size * cfg.real_ratio))
        real, imagined = self.buffer.sample(n_real), self.model_buffer.sample(cfg.batch_size - n_real)
        return Batch(**{f.name: torch.cat([getattr(real, f.name), getattr(imagined, f.name)]) for f in dataclasses.fields(Batch)})

    @torch.no_grad()
    def _epoch_policy_change(self, states: int = 1_000) -> None:
        """eps_pi proxy: RMS change of the deterministic action on real states since the previous epoch."""
        obs = self.buffer.sample(min(states, len(self.buffer))).obs
        now, before = _mean_action(self.learner.actor, obs), _mean_action(self._epoch_actor, obs)
        self._diagnostics["eps_pi"] = float((now - before).pow(2).mean().sqrt())
        self._diagnostics["epoch"] = self.epoch()
        self._epoch_actor.load_state_dict(self.learner.actor.state_dict())

    # --- diagnostics, evaluation, state ------------------------------------------------------------------------

    def _evaluate(self) -> tuple[float, float]:
        """The real return, and beside it the same policy's return predicted in the model from the same starts."""
        mean, std = super()._evaluate()
        if self.model_fits > 0:
            self._diagnostics["model_return"] = self._model_return()
            self._diagnostics["model_return_gap"] = self._diagnostics["model_return"] - mean
        return mean, std

    @torch.no_grad()
    def _model_return(self) -> float:
        starts = [self.eval_env.reset(seed=self.cfg.seed + EVAL_SEED_OFFSET + i)[0] for i in range(self.cfg.eval_episodes)]
        horizon = (self.eval_env.spec.max_episode_steps if self.eval_env.spec else None) or 1000
        g = torch.Generator(device=self.device).manual_seed(self.cfg.seed + self.env_steps)  # stateless: resume-safe
        menv = ModelEnv(self.model, termination_fn=self.termination_fn, propagation=self.cfg.propagation, generator=g)
        start = torch.as_tensor(np.stack(starts), dtype=torch.float32, device=self.device)
        out = menv.rollout(start, policy=lambda o: self.learner.act(o, deterministic=True), rollout_length=horizon)
        return float(out["return"].mean())

    def _metrics(self) -> dict[str, float]:
        seconds = {f"seconds_{k}": round(v, 3) for k, v in self.phase_seconds.items()}
        return {**super()._metrics(), **self._diagnostics, **seconds, "real_transitions": len(self.buffer), "model_transitions": len(self.model_buffer), "model_rollout_steps": self.rollouts_added}

    def all_finite(self) -> bool:
        return super().all_finite() and self.model.all_finite()

    def _state(self, include_buffer: bool) -> dict:
        return {
            **super()._state(include_buffer),
            "model": self.model.state_dict(),
            "trainer": self.trainer.state_dict(),
            "model_buffer": self.model_buffer.state_dict() if include_buffer else None,
            "epoch_actor": self._epoch_actor.state_dict(),
            "dyna": {
                "rollout_generator": self.rollout_generator.get_state(),
                "mve_generator": self.learner.value_expansion.model_env.generator.get_state() if self.learner.value_expansion else None,
                "rollout_length": self.rollout_length,
                "model_fits": self.model_fits,
                "rollouts_added": self.rollouts_added,
                "fit_end": self._fit_end,
                "diagnostics": self._diagnostics,
                "phase_seconds": self.phase_seconds,
            },
        }

    def _load_state(self, state: dict) -> None:
        super()._load_state(state)
        self.model.load_state_dict(state["model"])
        self.trainer.load_state_dict(state["trainer"])
        self._epoch_actor.load_state_dict(state["epoch_actor"])
        d = state["dyna"]
        self.rollout_generator.set_state(d["rollout_generator"])
        if self.learner.value_expansion is not None:
            self.learner.value_expansion.model_env.generator.set_state(d["mve_generator"])
        self.rollout_length = int(d["rollout_length"])
        self.model_fits, self.rollouts_added, self._fit_end = int(d["model_fits"]), int(d["rollouts_added"]), int(d["fit_end"])
        self._diagnostics = dict(d["diagnostics"])
        self.phase_seconds = {k: float(v) for k, v in d["phase_seconds"].items()}
        self.model_buffer = ReplayBuffer(self._model_capacity(), self.obs_dim, self.act_dim, self.device)
        if state.get("model_buffer") is not None:
            self.model_buffer.load_state_dict(state["model_buffer"])

    def summary(self) -> dict:
        return {**super().summary(), "model_fits": self.model_fits, "model_rollout_steps": self.rollouts_added, "rollout_length": self.rollout_length}
