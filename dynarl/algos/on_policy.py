"""The on-policy loop: N Gymnasium vector envs -> T-step rollout -> one policy-gradient update.

    repeat:
        for t = 1..n_steps:                              (all n_envs sub-envs in lock-step)
            a ~ pi(.|s), log pi(a|s), V(s)
            s', r, terminated, truncated = envs.step(a)   (autoreset handled: s' is the true next state)
            V(s') where a time limit truncated the episode (bootstrap); 0 where it terminated
            store (s, a, log pi, r, terminated, ended, V(s), V(s'))
        V(s_T) closes the rollout; learner.update(rollout)   (REINFORCE / A2C / PPO / TRPO)

Each ``train_step`` is one iteration and advances ``env_steps`` by ``n_envs * n_steps``. Observation and
reward normalisation follow Stable-Baselines3's ``VecNormalize`` with Gymnasium's ``RunningMeanStd``
(one set of statistics shared by all sub-envs, applied to ``final_obs`` too, frozen for evaluation, saved
in checkpoints). Gymnasium's own vector ``NormalizeObservation`` does not fit: it refuses ``same_step``
autoreset, leaves ``final_obs`` unnormalised, and would re-count the statistics when sub-envs are rebuilt
by replay on resume.

Discrete actions go to the env as integers; Gaussian actions are clipped to [-1, 1] and rescaled to the
env's bounds (the rollout keeps the unclipped sample, whose log-probability the update needs).

Checkpoints are written between iterations, so no rollout is ever half-collected: a checkpoint holds the
learner, the normalisers, the per-env running discounted returns and episode counters, and every
sub-env's replay record (:mod:`dynarl.envs.vector`); with the base's RNG states this makes resume
exact. ``save()`` without ``include_buffer`` leaves out the env records: a loaded agent starts fresh
episodes (seeded by ``seed``) when it trains again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.wrappers.utils import RunningMeanStd

from dynarl.algos.base import Algorithm, require_flat_obs
from dynarl.config import RunConfig, non_negative, one_of, param, positive
from dynarl.data.rollout import RolloutBuffer
from dynarl.envs.vector import make_vector_env, replay_vector_env, step_vector_env, vector_env_records
from dynarl.errors import EnvError
from dynarl.learners.a2c import A2CLearner, A2CLearnerConfig
from dynarl.learners.policy_gradient import PolicyGradientLearner
from dynarl.learners.ppo import PPOLearner, PPOLearnerConfig
from dynarl.learners.reinforce import REINFORCELearner, REINFORCELearnerConfig
from dynarl.learners.trpo import TRPOLearner, TRPOLearnerConfig


@dataclass
class OnPolicyConfig(RunConfig):
    torch_threads: int = param(1, non_negative, "CPU threads for torch (0: torch's default); one is fastest for these small networks, and several threads on a busy CPU slow every small op down")
    n_envs: int = param(8, positive, "parallel environments (synchronous workers)")
    n_steps: int = param(256, positive, "steps per env per rollout; one update per rollout of n_envs * n_steps")
    vec_env: str = param("sync", one_of("sync", "async"), "Gymnasium SyncVectorEnv (one process) or AsyncVectorEnv (a process per env)")
    autoreset_mode: str = param("next_step", one_of("next_step", "same_step", "disabled"), "the vector env's Gymnasium autoreset mode (all are handled)")
    normalize_obs: bool = param(False, help="standardise observations with running statistics (VecNormalize)")
    normalize_reward: bool = param(False, help="divide rewards by the running std of the discounted return (VecNormalize)")
    clip_obs: float = param(10.0, positive, "clip normalised observations to +- this")
    clip_reward: float = param(10.0, positive, "clip normalised rewards to +- this")
    env_kwargs: dict | None = param(None, help="extra keyword arguments for gymnasium.make (JSON object)")

    def check(self) -> str | None:
        rollout = self.n_envs * self.n_steps
        for key in ("batch_size", "vf_batch_size"):
            size = getattr(self.learner, key, None)
            if size is not None and size > rollout:
                return f"learner.{key}={size} is invalid: larger than the rollout of n_envs * n_steps = {self.n_envs} * {self.n_steps} = {rollout}; lower it or raise n_steps"
        return None


class OnPolicyAlgorithm(Algorithm):
    """``learn(total_steps)``, ``predict(obs)``, ``save(path)``; see the module docstring for the loop."""

    config_cls: ClassVar[type[OnPolicyConfig]]
    learner_cls: ClassVar[type[PolicyGradientLearner]]

    def _check_env(self, env) -> None:
        self.obs_dim = require_flat_obs(env, self.name.upper())
        space = env.action_space
        if isinstance(space, spaces.Discrete):
            self.act_low = self.act_scale = None
        elif isinstance(space, spaces.Box) and len(space.shape) == 1:
            if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
                raise EnvError(f"{self.cfg.env} has unbounded actions {space}; {self.name.upper()} needs finite action bounds")
            self.act_low, self.act_scale = space.low.astype(np.float32), ((space.high - space.low) / 2).astype(np.float32)
        else:
            raise EnvError(f"{self.name.upper()} takes Discrete or 1-D Box actions, but {self.cfg.env} has {space}")

    def _setup(self) -> None:
        cfg = self.cfg
        space = self.env.action_space
        self.learner = self.learner_cls(cfg.learner, self.obs_dim, space, self.device)
        self.envs = make_vector_env(cfg.env, cfg.n_envs, cfg.vec_env, cfg.autoreset_mode, cfg.env_kwargs)
        self.rollout = RolloutBuffer(cfg.n_steps, cfg.n_envs, self.obs_dim, space.shape, self.device, self.learner.discrete)
        self.obs_rms = RunningMeanStd(shape=(self.obs_dim,))
        self.ret_rms = RunningMeanStd(shape=())
        self._discounted_return = np.zeros(cfg.n_envs)
        self._ep_return = np.zeros(cfg.n_envs)
        self._ep_length = np.zeros(cfg.n_envs, dtype=np.int64)
        self._last_metrics: dict[str, torch.Tensor] = {}

    def close(self) -> None:
        self.envs.close()

    # --- observations, actions, rewards -----------------------------------------------------------------

    def _normalize_obs(self, obs: np.ndarray) -> np.ndarray:
        if not self.cfg.normalize_obs:
            return obs
        c = self.cfg.clip_obs
        return np.clip((obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + 1e-8), -c, c)

    def _obs_tensor(self, obs: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(self._normalize_obs(obs), dtype=torch.float32, device=self.device)

    def _to_env_action(self, act: np.ndarray) -> np.ndarray:
        if self.act_low is None:
            return act.astype(np.int64)
        return (self.act_low + (np.clip(act, -1.0, 1.0) + 1.0) * self.act_scale).astype(np.float32)

    def _scale_reward(self, reward: np.ndarray, ended: np.ndarray) -> np.ndarray:
        """VecNormalize: r / std(discounted return), the return accumulated per env and reset at episode ends."""
        if not self.cfg.normalize_reward:
            return reward
        self._discounted_return = self._discounted_return * self.cfg.learner.gamma + reward
        self.ret_rms.update(self._discounted_return)
        self._discounted_return[ended] = 0.0
        c = self.cfg.clip_reward
        return np.clip(reward / np.sqrt(self.ret_rms.var + 1e-8), -c, c)

    def predict(self, obs, deterministic: bool = True) -> np.ndarray:
        """The env action for one observation (or a batch), with the training statistics frozen."""
        obs = np.asarray(obs, dtype=np.float32)
        single = obs.ndim == 1
        act = self.learner.act(self._obs_tensor(obs[None] if single else obs), deterministic).cpu().numpy()
        env_act = self._to_env_action(act)
        return env_act[0] if single else env_act

    # --- the loop ---------------------------------------------------------------------------------------

    def _reset_env(self) -> None:
        """Start every sub-env's first episode (seeds seed, seed + 1, ...)."""
        self._obs, _ = self.envs.reset(seed=self.cfg.seed)
        if self.cfg.normalize_obs:
            self.obs_rms.update(self._obs)

    def _budget_notes(self, total: int) -> list[str]:
        cfg = self.cfg
        rollout = cfg.n_envs * cfg.n_steps
        left = total - self.env_steps
        if left % rollout:
            iterations = -(-left // rollout)
            return [f"{self.name.upper()} collects n_envs * n_steps = {rollout} steps per update, so {total} steps round up to {self.env_steps + iterations * rollout} ({iterations} updates)"]
        return []

    def collect(self) -> None:
        """Fill the rollout buffer with n_steps vector steps (the first half of an iteration)."""
        cfg, learner, buf = self.cfg, self.learner, self.rollout
        for _ in range(cfg.n_steps):
            obs_t = self._obs_tensor(self._obs)
            act, log_prob, value = learner.step(obs_t)
            act_np = act.cpu().numpy()
            next_obs, reward, terminated, truncated, final_obs = step_vector_env(self.envs, self._to_env_action(act_np))
            self._require_finite_env_output(next_obs, reward)
            if final_obs is not None:  # the true last observations of the episodes that ended
                self._require_finite_env_output(final_obs, reward)
            ended = terminated | truncated
            final_value = torch.zeros(cfg.n_envs, device=self.device)
            if final_obs is not None and truncated.any() and learner.value is not None:
                # a time limit is not a terminal state: bootstrap from V(s') of the true last observation
                final_value = learner.value_of(self._obs_tensor(final_obs))
            self._track_episodes(reward, ended)
            buf.add(
                obs_t,
                act,
                log_prob,
                value,
                torch.as_tensor(self._scale_reward(reward, ended), dtype=torch.float32, device=self.device),
                torch.as_tensor(terminated, dtype=torch.float32, device=self.device),
                torch.as_tensor(ended, dtype=torch.float32, device=self.device),
                final_value,
            )
            self._obs = next_obs
            if cfg.normalize_obs:
                self.obs_rms.update(next_obs)  # what the policy sees next (new episodes' first observations included)
            self.env_steps += cfg.n_envs

    def _track_episodes(self, reward: np.ndarray, ended: np.ndarray) -> None:
        self._ep_return += reward
        self._ep_length += 1
        for i in np.flatnonzero(ended):
            self.recent_returns.append(float(self._ep_return[i]))
            self.episodes += 1
        self._ep_return[ended] = 0.0
        self._ep_length[ended] = 0

    def train_step(self) -> None:
        self.collect()
        rollout = self.rollout.finish(self.learner.value_of(self._obs_tensor(self._obs)))
        self._last_metrics = self.learner.update(rollout)

    def _metrics(self) -> dict[str, float]:
        return {**{k: float(v) for k, v in self._last_metrics.items()}, "updates": self.learner.num_updates}

    def all_finite(self) -> bool:
        return self.learner.all_finite()

    # --- state ------------------------------------------------------------------------------------------

    @staticmethod
    def _rms_state(rms: RunningMeanStd) -> dict:
        return {"mean": torch.as_tensor(np.asarray(rms.mean, dtype=np.float64)), "var": torch.as_tensor(np.asarray(rms.var, dtype=np.float64)), "count": float(rms.count)}

    @staticmethod
    def _load_rms(rms: RunningMeanStd, state: dict) -> None:
        rms.mean = state["mean"].numpy().astype(np.float64).reshape(np.shape(rms.mean))
        rms.var = state["var"].numpy().astype(np.float64).reshape(np.shape(rms.var))
        rms.count = float(state["count"])

    def _state(self, include_buffer: bool) -> dict:
        vector = None
        if include_buffer and self._obs is not None:
            records = vector_env_records(self.envs)
            vector = {
                "obs": torch.as_tensor(np.asarray(self._obs)),
                "records": [{"reset": r["reset"], "actions": torch.as_tensor(np.asarray(r["actions"]))} for r in records],
                "discounted_return": torch.as_tensor(self._discounted_return),
                "episode_return": torch.as_tensor(self._ep_return),
                "episode_length": torch.as_tensor(self._ep_length),
            }
        return {
            "learner": self.learner.state_dict(),
            "obs_rms": self._rms_state(self.obs_rms),
            "ret_rms": self._rms_state(self.ret_rms),
            "vector_env": vector,
            "episode": None,  # the base's single-env episode is unused: the vector env is replayed instead
        }

    def _load_state(self, state: dict) -> None:
        self.learner.load_state_dict(state["learner"])
        self._load_rms(self.obs_rms, state["obs_rms"])
        self._load_rms(self.ret_rms, state["ret_rms"])
        vector = state.get("vector_env")
        if vector is not None:
            records = [{"reset": r["reset"], "actions": r["actions"].numpy()} for r in vector["records"]]
            obs = replay_vector_env(self.envs, records)
            if not np.array_equal(obs.astype(np.float32), vector["obs"].numpy().astype(np.float32)):
                raise ValueError("replaying the saved episodes did not reproduce the saved observations (is the env deterministic?)")
            self._obs = vector["obs"].numpy()
            self._discounted_return = vector["discounted_return"].numpy().copy()
            self._ep_return = vector["episode_return"].numpy().copy()
            self._ep_length = vector["episode_length"].numpy().copy()

    def summary(self) -> dict:
        return {**super().summary(), "gradient_updates": self.learner.num_updates}


# --- the four algorithms -------------------------------------------------------------------------------


@dataclass
class PPOConfig(OnPolicyConfig):
    algo: str = "ppo"
    env: str = "CartPole-v1"
    steps: int = 100_000
    n_steps: int = 2048
    learner: PPOLearnerConfig = field(default_factory=PPOLearnerConfig)


@dataclass
class A2CConfig(OnPolicyConfig):
    algo: str = "a2c"
    env: str = "CartPole-v1"
    steps: int = 200_000
    n_steps: int = 5
    learner: A2CLearnerConfig = field(default_factory=A2CLearnerConfig)


@dataclass
class TRPOConfig(OnPolicyConfig):
    algo: str = "trpo"
    env: str = "CartPole-v1"
    steps: int = 100_000
    n_steps: int = 256
    learner: TRPOLearnerConfig = field(default_factory=TRPOLearnerConfig)


@dataclass
class REINFORCEConfig(OnPolicyConfig):
    algo: str = "reinforce"
    env: str = "CartPole-v1"
    steps: int = 200_000
    n_steps: int = 1000
    learner: REINFORCELearnerConfig = field(default_factory=REINFORCELearnerConfig)


class PPO(OnPolicyAlgorithm):
    """PPO (clipped surrogate) on Gymnasium vector envs; discrete or continuous actions."""

    name = "ppo"
    config_cls = PPOConfig
    learner_cls = PPOLearner


class A2C(OnPolicyAlgorithm):
    """A2C: synchronous batch actor-critic with a bootstrapped critic."""

    name = "a2c"
    config_cls = A2CConfig
    learner_cls = A2CLearner


class TRPO(OnPolicyAlgorithm):
    """TRPO: natural-gradient step with a KL trust region and a backtracking line search."""

    name = "trpo"
    config_cls = TRPOConfig
    learner_cls = TRPOLearner


class REINFORCE(OnPolicyAlgorithm):
    """REINFORCE: Monte-Carlo policy gradient with reward-to-go and an optional baseline."""

    name = "reinforce"
    config_cls = REINFORCEConfig
    learner_cls = REINFORCELearner
