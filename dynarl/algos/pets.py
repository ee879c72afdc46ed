"""PETS: probabilistic ensembles with trajectory sampling (Chua et al. 2018; 003 Algorithm 1, 000 section 2.2).

    initialise D with a random controller for one trial                        (random_trials)
    for trial k = 1..K:
        train the probabilistic ensemble f on D                                 (after every trial; optionally every N steps)
        for t = 0..TaskHorizon:
            for i = 1..num_iterations: sample actions a_{t:t+H} ~ CEM(.), propagate P particles
                with TS (propagation) through f, evaluate sum_tau 1/P sum_p r(s^p_tau, a_tau), update CEM
            execute the first action a*_t only; D <- D u {(s_t, a*_t, s_{t+1})}

Rewards and terminations come from the task registry (exact, batched torch) on the ``model_obs``
observation, or from the model's learned heads for tasks dynarl has no functions for (``learned_reward=true``;
the termination head is then always learned, as in the Dyna loop, so imagined particles can terminate). Evaluation plans too: ``predict(obs)`` runs a separate planner (its own generator, reseeded and
cleared at every evaluation episode), so evaluating never disturbs the training planner.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import ClassVar

import gymnasium as gym
import numpy as np
import torch

from dynarl.algos.base import Algorithm, Attributes
from dynarl.algos.registry import register
from dynarl.config import RunConfig, non_negative, param, positive
from dynarl.data.replay import ReplayBuffer
from dynarl.envs import get_task
from dynarl.errors import ConfigError
from dynarl.learners.base import flat_dim
from dynarl.models import DynamicsModel, DynamicsModelConfig, ModelTrainer, ModelTrainerConfig
from dynarl.models.diagnostics import fit_summary, fresh_data_row
from dynarl.models.model_env import ModelEnv
from dynarl.planning.fast_model import PlanningModel
from dynarl.planning.mpc import MPCController, OpenLoopActions, PlannerConfig

CARTPOLE = "dynarl/ContinuousCartPole-v0"


def _pets_model() -> DynamicsModelConfig:
    # PETS / mbrl-lib: 7 Gaussian members of 4x200 SiLU, 5 elites (set in the trainer)
    return DynamicsModelConfig(members=7)


def _pets_trainer() -> ModelTrainerConfig:
    # trainer.recalibrate stays off (as in PETS): on the cart-pole preset, 3 seeds each, the members' 1/2-sigma
    # coverage of the next trial's real transitions was 0.58/0.71 without and 0.41/0.57 with it (Gaussian:
    # 0.68/0.95), returns 183.5 vs 177.8: fitted on the i.i.d. holdout, where the ensemble is too wide, it
    # narrows a model that is already too narrow on the states the new policy visits
    return ModelTrainerConfig(num_elites=5, max_epochs=50)


@dataclass
class PETSConfig(RunConfig):
    algo: str = "pets"
    env: str = param(CARTPOLE, help="Gymnasium id; rewards come from the task registry unless learned_reward=true")
    steps: int = param(2_000, positive, "total environment steps")
    eval_every: int = param(1_000, positive, "env steps between evaluations (each evaluation step plans)")
    eval_episodes: int = param(3, positive, "episodes per evaluation (planning is costly: keep small)")
    checkpoint_every: int = param(1_000, positive, "env steps between checkpoints (one is also written at the end)")
    log_every: int = param(200, positive, "env steps between metric rows / console lines")
    torch_threads: int = param(1, non_negative, "CPU threads for torch (0: torch's default); one suits the CPU-sized presets on a shared CPU, paper-sized ensembles gain from more")
    buffer_size: int = param(1_000_000, positive, "replay capacity (transitions); storage is committed as it fills")
    random_trials: int = param(1, positive, "episodes of uniform-random actions before planning starts (PETS: 1)")
    retrain_every: int = param(0, non_negative, "the model is retrained after every trial (PETS); N > 0: also every N env steps within a trial")
    learned_reward: bool = param(False, help="learn the reward with the model (for tasks without a registered reward function)")
    env_kwargs: dict | None = param(None, help="extra keyword arguments for gymnasium.make (JSON object)")
    model: DynamicsModelConfig = field(default_factory=_pets_model)
    trainer: ModelTrainerConfig = field(default_factory=_pets_trainer)
    planner: PlannerConfig = field(default_factory=PlannerConfig)

    def check(self) -> str | None:
        t = self.trainer
        if t.num_elites is not None and t.num_elites > self.model.members:
            return f"trainer.num_elites={t.num_elites} is invalid: must be <= model.members={self.model.members}"
        return None


class _ResetHook(gym.Wrapper):
    """Calls ``on_reset(seed)`` whenever the wrapped env is reset: a new episode clears the planner."""

    def __init__(self, env: gym.Env, on_reset):
        super().__init__(env)
        self._on_reset = on_reset

    def reset(self, *, seed=None, options=None):
        self._on_reset(seed)
        return self.env.reset(seed=seed, options=options)


@register
class PETS(Algorithm):
    """PETS: CEM planning through a probabilistic ensemble with trajectory sampling (decision-time MBRL)."""

    name = "pets"
    config_cls: ClassVar[type[PETSConfig]] = PETSConfig

    # --- setup ------------------------------------------------------------------------------------------

    run_parts = ("buffer",)

    def _env_options(self) -> dict:
        # the observation that the task's reward/termination functions read (e.g. x for locomotion)
        return {"model_obs": get_task(self.cfg.env) is not None}

    def _setup(self) -> None:
        cfg, label = self.cfg, self.name.upper()
        self.collector = self.env_collector(1)
        self.task = get_task(self.env_name)
        if self.task is None and not cfg.learned_reward:
            raise ConfigError(
                f"{label} needs the reward of {self.env_name!r} to plan, and dynarl has no reward function for it. "
                "Set learned_reward=true to learn the reward with the dynamics model "
                "(or pick a task with a known reward: `dynarl list`)."
            )
        self.obs_dim, self.act_dim = flat_dim(self.observation_space), flat_dim(self.action_space)
        dev = self.device
        space = self.action_space
        self.act_low, self.act_high = (torch.as_tensor(b, dtype=torch.float32, device=dev) for b in (space.low, space.high))

        # a task dynarl has no functions for: its reward (learned_reward=true) and its termination are learned
        # with the model, as the Dyna loop does; otherwise imagined particles would never terminate
        model_cfg = dataclasses.replace(cfg.model, learn_reward=cfg.learned_reward, learn_termination=cfg.model.learn_termination or self.task is None)
        self.model = DynamicsModel(model_cfg, self.obs_dim, self.act_dim, dev, generator=torch.Generator(device=dev).manual_seed(cfg.seed))
        self.trainer = ModelTrainer(self.model, cfg.trainer, seed=cfg.seed + 1)
        self.buffer = ReplayBuffer(cfg.buffer_size, self.obs_dim, self.act_dim, dev)
        p = cfg.planner
        self.plan_model = self.model if p.precision == "fp32" and not p.compile else PlanningModel(self.model, p.precision, p.compile)
        self._setup_policy()
        self.controller = self._make_controller(seed=cfg.seed + 2)
        self.eval_controller = self._make_controller(seed=cfg.seed + 3)
        self.model_fits = 0
        self._fit_step = 0  # env steps at the last fit: the transitions after it are fresh for diagnostics
        self._fit_metrics: dict[str, float] = {}
        self._plan_seconds = 0.0
        self._planned_steps = 0

    def _setup_policy(self) -> None:
        """Hook for policy-guided planners (POPLIN)."""

    def _proposal(self):
        return OpenLoopActions(self.act_low, self.act_high, self.cfg.planner.horizon)

    def _make_controller(self, seed: int) -> MPCController:
        g = torch.Generator(device=self.device).manual_seed(seed)
        p = self.cfg.planner
        task = self.task
        reward_fn = None if (self.cfg.learned_reward or task is None) else task.reward_fn
        termination_fn = None if task is None else task.termination_fn  # else the model's learned termination
        menv = ModelEnv(self.plan_model, reward_fn=reward_fn, termination_fn=termination_fn, propagation=p.propagation, generator=g)
        return MPCController(menv, self._proposal(), p, g)

    @property
    def eval_env(self) -> gym.Env:
        if self._eval_env is None:
            self._eval_env = _ResetHook(self.make_env(), self._on_eval_reset)
        return self._eval_env

    def _on_eval_reset(self, seed) -> None:
        # evaluation episodes are seeded by the evaluator: derive the planner's seed from the episode's
        self.eval_controller.reset(seed=None if seed is None else seed * 7919 + 17)

    def reset_planner(self) -> None:
        """Forget the warm start of the planner used by ``predict`` (call at the start of an episode)."""
        self.eval_controller.reset()

    # --- acting -------------------------------------------------------------------------------------------

    def _obs_tensor(self, obs) -> torch.Tensor:
        return torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)

    def policy_action(self, obs, deterministic: bool = True) -> np.ndarray:
        """The planner's action for one observation (or each row of a batch, planned one by one)."""
        obs = np.asarray(obs, dtype=np.float32)
        if obs.ndim == 2:
            return np.stack([self.policy_action(o, deterministic) for o in obs])
        return self.eval_controller.act(self._obs_tensor(obs)).cpu().numpy().astype(np.float32)

    def _random_phase(self) -> bool:
        return self.episodes < self.cfg.random_trials

    def train_step(self) -> None:
        cfg = self.cfg
        obs = self.collector.observe()[0]
        if self._random_phase():
            act = self.np_rng.uniform(self.act_low.cpu().numpy(), self.act_high.cpu().numpy()).astype(np.float32)
        else:
            t = time.perf_counter()
            act = self.controller.act(self._obs_tensor(obs)).cpu().numpy().astype(np.float32)
            self._plan_seconds += time.perf_counter() - t
            self._planned_steps += 1
            self._record_plan(obs, act)
        step = self.collector.step(act[None])
        self.buffer.add(step.obs, act[None], step.reward, step.next_obs, step.terminated, step.truncated)
        episode_end = bool(step.ended[0])
        if episode_end:
            self.controller.reset()
        if self._random_phase():
            return
        due = episode_end or (cfg.retrain_every > 0 and self.env_steps % cfg.retrain_every == 0)
        if self.model_fits == 0 or due:
            self._fit_model()

    def _record_plan(self, obs: np.ndarray, act: np.ndarray) -> None:
        """Hook: POPLIN keeps the planner's (s, a*) pairs for distillation."""

    def _fit_model(self) -> None:
        # diagnostics of the model the planner used, on the real transitions gathered with it (not yet trained on)
        fresh = min(self.env_steps - self._fit_step, len(self.buffer)) if self.model_fits > 0 else 0
        diagnostics = {}
        if fresh > 0:
            d = self.buffer.recent(fresh)
            done = (d["terminated"] > 0) | (d["truncated"] > 0)
            diagnostics = fresh_data_row(self.model, d["obs"], d["act"], d["next_obs"], done, max_k=min(10, self.cfg.planner.horizon))
        result = self.trainer.fit_replay(self.buffer)
        if isinstance(self.plan_model, PlanningModel):
            self.plan_model.refresh()
        self.model_fits += 1
        self._fit_step = self.env_steps
        self._fit_metrics = {k: float(v) for k, v in result.metrics.items() if isinstance(v, (int, float)) and not k.startswith("model_holdout_mse_m")}
        self.log_model_fit({"model_fit": self.model_fits, **fit_summary(result), **diagnostics})
        self._after_fit()

    def _after_fit(self) -> None:
        """Hook: POPLIN distils the planner into its policy here."""

    # --- reporting and state ------------------------------------------------------------------------------

    def metrics(self) -> dict[str, float]:
        out = {f"model/{k}": v for k, v in self._fit_metrics.items()}
        out.update({"rollout/trials": self.episodes, "model/model_fits": self.model_fits})
        if self._planned_steps:
            out["time/plan_seconds_per_step"] = round(self._plan_seconds / self._planned_steps, 4)
            out["train/plan_value"] = float(self.controller.optimizer.last_best_value)
        return out

    def all_finite(self) -> bool:
        return self.model.all_finite()

    def parts(self) -> dict:
        return {
            "model": self.model,
            "trainer": self.trainer,
            "buffer": self.buffer,
            "controller": self.controller,
            "eval_controller": self.eval_controller,
            "planning": Attributes(self, "model_fits", "_fit_step", "_fit_metrics", "_plan_seconds", "_planned_steps"),
        }

    def after_load(self) -> None:
        if isinstance(self.plan_model, PlanningModel):
            self.plan_model.refresh()

    def summary(self) -> dict:
        return {**super().summary(), "trials": self.episodes, "model_fits": self.model_fits}
