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
from gymnasium.wrappers.utils import RunningMeanStd

from dynarl.algos.base import Algorithm, Attributes
from dynarl.algos.registry import register
from dynarl.config import RunConfig, non_negative, one_of, param, positive
from dynarl.data.rollout import RolloutBuffer
from dynarl.envs.spaces import BOX, DISCRETE
from dynarl.learners.a2c import A2CLearner, A2CLearnerConfig
from dynarl.learners.base import flat_dim
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
    action_spaces = (BOX, DISCRETE)
    run_parts = ("discounted_return",)

    def _setup(self) -> None:
        cfg = self.cfg
        self.collector = self.env_collector(cfg.n_envs, vec_env=cfg.vec_env, autoreset_mode=cfg.autoreset_mode)
        self.actions.clip = True  # Gaussian samples leave [-1, 1]; the rollout keeps the unclipped one
        self.learner = self.learner_cls(cfg.learner, self.observation_space, self.action_space, self.device)
        obs_dim = flat_dim(self.observation_space)
        self.rollout = RolloutBuffer(cfg.n_steps, cfg.n_envs, obs_dim, self.action_space.shape, self.device, self.learner.discrete)
        self.obs_rms = RunningMeanStd(shape=(obs_dim,))
        self.ret_rms = RunningMeanStd(shape=())
        self.discounted_return = Attributes(self, "_discounted_return")
        self._discounted_return = np.zeros(cfg.n_envs).tolist()
        self._last_metrics: dict[str, torch.Tensor] = {}

    def parts(self) -> dict:
        return {"learner": self.learner, "obs_rms": RMSState(self.obs_rms), "ret_rms": RMSState(self.ret_rms), "discounted_return": self.discounted_return}

    # --- observations, actions, rewards -----------------------------------------------------------------

    def _normalize_obs(self, obs: np.ndarray) -> np.ndarray:
        if not self.cfg.normalize_obs:
            return obs
        c = self.cfg.clip_obs
        return np.clip((obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + 1e-8), -c, c)

    def _obs_tensor(self, obs: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(self._normalize_obs(obs), dtype=torch.float32, device=self.device)

    def _scale_reward(self, reward: np.ndarray, ended: np.ndarray) -> np.ndarray:
        """VecNormalize: r / std(discounted return), the return accumulated per env and reset at episode ends."""
        if not self.cfg.normalize_reward:
            return reward
        discounted = np.asarray(self._discounted_return) * self.cfg.learner.gamma + reward
        self.ret_rms.update(discounted)
        discounted[ended] = 0.0
        self._discounted_return = discounted.tolist()
        c = self.cfg.clip_reward
        return np.clip(reward / np.sqrt(self.ret_rms.var + 1e-8), -c, c)

    def policy_action(self, obs, deterministic: bool = True) -> np.ndarray:
        """The env action for one observation (or a batch), with the training statistics frozen."""
        obs = np.asarray(obs, dtype=np.float32)
        single = obs.ndim == 1
        act = self.learner.act(self._obs_tensor(obs[None] if single else obs), deterministic).cpu().numpy()
        env_act = self.actions.to_env(act)
        return env_act[0] if single else env_act

    # --- the loop ---------------------------------------------------------------------------------------

    def budget_notes(self, total: int) -> list[str]:
        cfg = self.cfg
        rollout = cfg.n_envs * cfg.n_steps
        left = total - self.env_steps
        if left % rollout:
            iterations = -(-left // rollout)
            return [f"{self.name.upper()} collects n_envs * n_steps = {rollout} steps per update, so {total} steps round up to {self.env_steps + iterations * rollout} ({iterations} updates)"]
        return []

    def collect(self) -> None:
        """Fill the rollout buffer with n_steps vector steps (the first half of an iteration)."""
        self.start_collection()
        for _ in range(self.cfg.n_steps):
            self.collect_step()

    def start_collection(self) -> None:
        """The first episodes' observations (seeds seed, seed + 1, ...), once."""
        envs = self.collector
        if envs.obs is None:
            envs.reset()
            if self.cfg.normalize_obs:
                self.obs_rms.update(envs.obs)

    def observation(self) -> torch.Tensor:
        """The (normalised) observations the policy acts on next."""
        return self._obs_tensor(self.collector.obs)

    def collect_step(self, given: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> None:
        """One vector step into the rollout buffer; ``given``: the learner's ``step`` on ``observation()``
        when already computed (a vectorised run computes every seed's at once)."""
        cfg, learner, envs = self.cfg, self.learner, self.collector
        obs_t = self.observation()
        act, log_prob, value = learner.step(obs_t) if given is None else given
        t = envs.step(self.actions.to_env(act.cpu().numpy()))
        final_value = torch.zeros(cfg.n_envs, device=self.device)
        if t.final_obs is not None and t.truncated.any() and learner.value is not None:
            # a time limit is not a terminal state: bootstrap from V(s') of the true last observation
            final_value = learner.value_of(self._obs_tensor(t.final_obs))
        self.rollout.add(
            obs_t,
            act,
            log_prob,
            value,
            torch.as_tensor(self._scale_reward(t.reward, t.ended), dtype=torch.float32, device=self.device),
            torch.as_tensor(t.terminated, dtype=torch.float32, device=self.device),
            torch.as_tensor(t.ended, dtype=torch.float32, device=self.device),
            final_value,
        )
        if cfg.normalize_obs:
            self.obs_rms.update(envs.obs)  # what the policy sees next (new episodes' first observations included)

    def train_step(self) -> None:
        self.collect()
        rollout = self.rollout.finish(self.learner.value_of(self.observation()))
        self._last_metrics = self.learner.update(rollout)


class RMSState:
    """Gymnasium's ``RunningMeanStd`` (VecNormalize's statistics) as a checkpoint part."""

    def __init__(self, rms: RunningMeanStd):
        self.rms = rms

    def state_dict(self) -> dict:
        rms = self.rms
        return {"mean": torch.as_tensor(np.asarray(rms.mean, dtype=np.float64)), "var": torch.as_tensor(np.asarray(rms.var, dtype=np.float64)), "count": float(rms.count)}

    def load_state_dict(self, state: dict) -> None:
        rms = self.rms
        rms.mean = state["mean"].numpy().astype(np.float64).reshape(np.shape(rms.mean))
        rms.var = state["var"].numpy().astype(np.float64).reshape(np.shape(rms.var))
        rms.count = float(state["count"])


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


@register
class PPO(OnPolicyAlgorithm):
    """PPO (clipped surrogate) on Gymnasium vector envs; discrete or continuous actions."""

    name = "ppo"
    config_cls = PPOConfig
    learner_cls = PPOLearner


@register
class A2C(OnPolicyAlgorithm):
    """A2C: synchronous batch actor-critic with a bootstrapped critic."""

    name = "a2c"
    config_cls = A2CConfig
    learner_cls = A2CLearner


@register
class TRPO(OnPolicyAlgorithm):
    """TRPO: natural-gradient step with a KL trust region and a backtracking line search."""

    name = "trpo"
    config_cls = TRPOConfig
    learner_cls = TRPOLearner


@register
class REINFORCE(OnPolicyAlgorithm):
    """REINFORCE: Monte-Carlo policy gradient with reward-to-go and an optional baseline."""

    name = "reinforce"
    config_cls = REINFORCEConfig
    learner_cls = REINFORCELearner
