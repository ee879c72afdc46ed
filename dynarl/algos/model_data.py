"""What every Dyna-style algorithm shares, online (MBPO) or offline (MOPO, COMBO): model data.

    a dynamics ensemble p_theta fitted on real transitions (holdout, early stop, elites)
    branched rollouts of length k from real states through p_theta, actions from the current policy,
        rewards optionally transformed (MOPO: r~ = r^ - lambda u), written into a model buffer D_model
    learner batches of real_ratio real rows (first) + the rest from D_model

The schedule (when the model is fitted, when rollouts are made, which clock counts) is each loop's own:
:mod:`dynarl.algos.dyna` (env steps, the model refitted as data arrives) and :mod:`dynarl.algos.mopo` (gradient
steps on a fixed dataset, the model fitted once). This mix-in holds the parts, the rollouts, the mixed batch
and the diagnostics so that neither loop copies the other.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from dynarl.algos.base import Attributes, GeneratorState
from dynarl.config import one_of, param, positive, unit_interval
from dynarl.data.batch import Batch
from dynarl.data.replay import ReplayBuffer
from dynarl.envs import get_task
from dynarl.errors import ConfigError
from dynarl.learners.base import flat_dim
from dynarl.models import DynamicsModel, DynamicsModelConfig, ModelTrainer, ModelTrainerConfig
from dynarl.models.diagnostics import fit_summary
from dynarl.models.model_env import PROPAGATIONS, ModelEnv, Score
from dynarl.planning.fast_model import PlanningModel
from dynarl.seeding import EVAL_SEED_OFFSET
from dynarl.sources.model_rollouts import ROLLOUT_ACTIONS, ModelRollouts, RewardTransform

BATCH_FIELDS = ("obs", "act", "reward", "next_obs", "terminated", "truncated")


def mbpo_ensemble() -> DynamicsModelConfig:
    # MBPO and MOPO: 7 Gaussian members of 4x200 swish that predict (s' - s, r) jointly
    return DynamicsModelConfig(members=7, learn_reward=True)


def mbpo_trainer() -> ModelTrainerConfig:
    return ModelTrainerConfig(num_elites=5)


@dataclass
class ModelDataConfig:
    """The config keys of model data (a mix-in for a loop's config)."""

    rollout_batch_size: int = param(100_000, positive, "model rollouts started per round, from uniformly sampled real states (MBPO: 100k)")
    rollout_action: str = param("policy", one_of(*ROLLOUT_ACTIONS), "actions in rollouts: the current policy (MBPO), the stored action at the first step then the policy, or uniform random")
    retain_epochs: int = param(1, positive, "the model buffer keeps the rollouts of this many epochs (MBPO: 1; Humanoid 5)")
    real_ratio: float = param(0.05, unit_interval, "share of real transitions in each learner batch (MBPO: 0.05)")
    propagation: str = param("ts1", one_of(*PROPAGATIONS), "ensemble propagation in rollouts (MBPO: a random elite per row and step = ts1)")
    learned_termination: bool = param(False, help="learn a termination classifier with the model (for tasks with no known termination)")
    rollout_precision: str = param("fp32", one_of("fp32", "bf16"), "bf16: rollouts (ensemble, MOPO's penalty, policy matmuls) in bfloat16, as PETS's planner can (2-3x on CPUs with AVX512-BF16 or AMX); fits and updates stay fp32")
    model: DynamicsModelConfig = field(default_factory=mbpo_ensemble)
    trainer: ModelTrainerConfig = field(default_factory=mbpo_trainer)

    def model_data_check(self) -> str | None:
        if not self.model.learn_reward:
            return "model.learn_reward=false is invalid here: the model env's rewards come from the model"
        if self.trainer.num_elites is not None and self.trainer.num_elites > self.model.members:
            return f"trainer.num_elites={self.trainer.num_elites} is invalid: must be <= model.members={self.model.members}"
        if self.rollout_precision == "bf16" and self.model.activation not in ("silu", "swish"):
            return f"rollout_precision=bf16 needs a SiLU (swish) ensemble, not model.activation={self.model.activation!r}; use rollout_precision=fp32"
        return None


class ModelData:
    """The mix-in: call :meth:`_setup_model_data` from ``_setup`` once the learner exists and ``self.rollout_length``
    is set; the loop provides the schedule."""

    cfg: ModelDataConfig

    def _setup_model_data(self, real, rollouts_per_epoch: float, reward_transform: RewardTransform | None = None, score: Score | None = None) -> None:
        """``real``: the real transitions (a replay buffer, or a dataset source) that rollouts start from;
        ``rollouts_per_epoch``: rounds of rollouts per retain epoch (sizes the model buffer); ``score``: a
        per-row function of every member's prediction that the rollouts compute on the way (the model env's)."""
        cfg, dev = self.cfg, self.device
        self.real, self.rollouts_per_epoch = real, rollouts_per_epoch
        task = get_task(self.env_name)
        self.termination_fn = task.standard_termination() if task is not None else None
        if self.termination_fn is None and not cfg.learned_termination:
            what = "has no termination function on the standard observation" if task else "is not a task dynarl knows the termination of"
            raise ConfigError(f"{self.name.upper()} needs to know when imagined rollouts terminate, and {self.env_name!r} {what}. Set learned_termination=true to learn it with the model (`dynarl list` shows the known tasks).")
        self.obs_dim, self.act_dim = flat_dim(self.observation_space), flat_dim(self.action_space)
        model_cfg = dataclasses.replace(cfg.model, learn_termination=cfg.model.learn_termination or (self.termination_fn is None))
        self.model = DynamicsModel(model_cfg, self.obs_dim, self.act_dim, dev, generator=torch.Generator(device=dev).manual_seed(cfg.seed + 11))
        self.trainer = ModelTrainer(self.model, cfg.trainer, seed=cfg.seed + 12)
        self.rollout_generator = torch.Generator(device=dev).manual_seed(cfg.seed + 13)
        # what rollouts (and MOPO's penalty) predict with: the model itself, or its bf16 copy (re-cast after each fit)
        self.rollout_model = self.model if cfg.rollout_precision == "fp32" else PlanningModel(self.model, "bf16")
        model_env = ModelEnv(self.rollout_model, reward_fn=None, termination_fn=self.termination_fn, propagation=cfg.propagation, generator=self.rollout_generator, score=score)
        self.rollouts = ModelRollouts(model_env, real, self.rollout_generator, cfg.rollout_action, reward_transform)
        self.model_buffer = ReplayBuffer(self._model_capacity(), self.obs_dim, self.act_dim, dev)
        self.model_fits = 0
        self._diagnostics: dict[str, float] = {}
        self.phase_seconds = {"model_train": 0.0, "rollout": 0.0, "policy_update": 0.0}

    def model_data_parts(self) -> dict:
        return {
            "model": self.model,
            "trainer": self.trainer,
            "model_buffer": ModelBufferPart(self),
            "rollout_generator": GeneratorState(self.rollout_generator),
            "rollouts": Attributes(self.rollouts, "added"),
        }

    def _model_capacity(self) -> int:
        """retain_epochs x (rollouts per epoch x rollout length), as MBPO and MOPO size their model pools."""
        cfg = self.cfg
        return max(int(cfg.retain_epochs * cfg.rollout_batch_size * self.rollouts_per_epoch * self.rollout_length), 1)

    # --- the steps a loop schedules ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _timed(self, phase: str):
        """Accumulate the wall-clock of one phase (model_train, rollout, policy_update) for the speed split."""
        start = time.perf_counter()
        yield
        self.phase_seconds[phase] += time.perf_counter() - start

    def _record_fit(self, result, extra: dict | None = None) -> None:
        self.model_fits += 1
        self._diagnostics.update(model_holdout_mse=result.metrics["model_holdout_mse"], model_epochs=result.metrics["model_epochs"], model_fits=self.model_fits)
        self.log_model_fit({"model_fit": self.model_fits, **fit_summary(result), **(extra or {})})  # the run's model_diagnostics.csv

    def _generate_rollouts(self) -> None:
        """One round of branched rollouts of the current length, with the current (stochastic) policy."""
        with self._timed("rollout"):
            out = self.rollouts.generate(self.cfg.rollout_batch_size, self.rollout_length, self._rollout_policy, self.model_buffer)
        self._diagnostics.update(rollout_length=self.rollout_length, **out)

    def _rollout_policy(self, obs: torch.Tensor) -> torch.Tensor:
        """The current stochastic policy's actions for rollout states; with ``rollout_precision=bf16`` its
        matmuls run in bfloat16 too (autocast; the sampling and the squashing stay float32)."""
        if self.cfg.rollout_precision == "fp32":
            return self.learner.act(obs, deterministic=False)
        with torch.autocast(obs.device.type, dtype=torch.bfloat16):
            return self.learner.act(obs, deterministic=False).float()

    def sample_batch(self) -> Batch:
        """real_ratio of the batch from the real data (first rows), the rest from D_model (all real until rollouts exist)."""
        cfg = self.cfg
        if len(self.model_buffer) == 0:
            return self.real.sample(cfg.batch_size)
        n_real = self.real_rows()
        real, imagined = self.real.sample(n_real), self.model_buffer.sample(cfg.batch_size - n_real)
        return Batch(**{k: torch.cat([getattr(real, k), getattr(imagined, k)]) for k in BATCH_FIELDS})

    def real_rows(self) -> int:
        """How many rows of a mixed batch are real: round(batch_size x real_ratio)."""
        return int(round(self.cfg.batch_size * self.cfg.real_ratio))

    # --- diagnostics --------------------------------------------------------------------------------------------

    def on_evaluation(self, mean: float, std: float) -> None:
        """Beside the real return, the same policy's return predicted in the model from the same starts."""
        super().on_evaluation(mean, std)
        if self.model_fits > 0:
            self._diagnostics.update(self._model_return())
            self._diagnostics["model_return_gap"] = self._diagnostics["model_return"] - mean

    @torch.no_grad()
    def _model_return(self) -> dict[str, float]:
        """The deterministic policy's undiscounted return in the model from the evaluation episodes' starts."""
        starts = [self.eval_env.reset(seed=self.cfg.seed + EVAL_SEED_OFFSET + i)[0] for i in range(self.cfg.eval_episodes)]
        horizon = (self.eval_env.spec.max_episode_steps if self.eval_env.spec else None) or 1000
        g = torch.Generator(device=self.device).manual_seed(self.cfg.seed + self.steps())  # stateless: resume-safe
        menv = ModelEnv(self.model, termination_fn=self.termination_fn, propagation=self.cfg.propagation, generator=g)
        start = torch.as_tensor(np.stack(starts), dtype=torch.float32, device=self.device)
        out = menv.rollout(start, policy=lambda o: self.learner.act(o, deterministic=True), rollout_length=horizon)
        return {"model_return": float(out["return"].mean()), **self._model_return_extras(out)}

    def _model_return_extras(self, rollout: dict) -> dict[str, float]:
        """Further statistics of the evaluation rollouts in the model (MOPO: the penalty and the lower bound)."""
        return {}

    def model_data_metrics(self) -> dict[str, float]:
        seconds = {f"time/seconds_{k}": round(v, 3) for k, v in self.phase_seconds.items()}
        model = {f"model/{k}": v for k, v in self._diagnostics.items()}
        counts = {"model/real_transitions": len(self.real), "model/model_transitions": len(self.model_buffer), "model/model_rollout_steps": self.rollouts.added}
        return {**model, **seconds, **counts}

    def metrics(self) -> dict[str, float]:
        return {**super().metrics(), **self.model_data_metrics()}

    def all_finite(self) -> bool:
        return super().all_finite() and self.model.all_finite()

    def summary(self) -> dict:
        return {**super().summary(), "model_fits": self.model_fits, "model_rollout_steps": self.rollouts.added, "rollout_length": self.rollout_length}


class ModelBufferPart:
    """The model buffer as a checkpoint part: rebuilt at the saved capacity (it follows the rollout length, which
    may have grown since the buffer was first made)."""

    def __init__(self, algo: ModelData):
        self.algo = algo

    def state_dict(self) -> dict:
        return self.algo.model_buffer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        a = self.algo
        a.model_buffer = ReplayBuffer(int(state["capacity"]), a.obs_dim, a.act_dim, a.device)
        a.model_buffer.load_state_dict(state)
