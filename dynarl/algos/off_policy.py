"""The online off-policy loop: env collector -> replay buffer -> an off-policy learner (SAC, TD3, DDPG, DQN).

    for each vector step (n_envs env steps):
        a = explore(s)               uniform random while env_steps < learning_starts, else the learner's
        s', r, terminated, truncated = envs.step(a); store every sub-env's row
        for every train_freq env steps crossed: updates_per_step x learner.update(buffer.sample(batch_size))

Evaluation, logging and checkpoints come from the runner. Continuous learners act in [-1, 1]^|A| and the
algorithm's :class:`~dynarl.envs.spaces.ActionAdapter` scales to the env's bounds; the buffer keeps the
learner's actions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from dynarl.algos.base import Algorithm
from dynarl.algos.registry import register
from dynarl.config import RunConfig, non_negative, one_of, param, positive
from dynarl.data.batch import Batch
from dynarl.data.replay import ReplayBuffer
from dynarl.learners.base import Learner, flat_dim
from dynarl.learners.ddpg import DDPGLearner, DDPGLearnerConfig
from dynarl.learners.sac import SACLearner, SACLearnerConfig
from dynarl.learners.td3 import TD3Learner, TD3LearnerConfig


@dataclass
class OffPolicyConfig(RunConfig):
    torch_threads: int = param(1, non_negative, "CPU threads for torch (0: torch's default, one per core); one holds up when the cores are shared, where more slow every small op down many times")
    n_envs: int = param(1, positive, "environments stepped in lock-step (a Gymnasium vector env); each vector step adds n_envs env steps")
    vec_env: str = param("sync", one_of("sync", "async"), "Gymnasium SyncVectorEnv (one process) or AsyncVectorEnv (a process per env)")
    buffer_size: int = param(1_000_000, positive, "replay capacity (transitions)")
    batch_size: int = param(256, positive, "minibatch size")
    learning_starts: int = param(5_000, positive, "uniform-random steps before learning starts")
    train_freq: int = param(1, positive, "env steps between update rounds")
    updates_per_step: int = param(1, positive, "gradient updates per update round (G)")
    env_kwargs: dict | None = param(None, help="extra keyword arguments for gymnasium.make (JSON object)")

    def check(self) -> str | None:
        if self.batch_size > self.buffer_size:
            return f"batch_size={self.batch_size} is larger than buffer_size={self.buffer_size}"
        return None


class OffPolicyAlgorithm(Algorithm):
    """``learn(total_steps)``, ``predict(obs)``, ``save(path)``; see the module docstring for the loop."""

    config_cls: ClassVar[type[OffPolicyConfig]]
    learner_cls: ClassVar[type[Learner]]
    run_parts = ("buffer",)

    def _setup(self) -> None:
        cfg = self.cfg
        self.collector = self.env_collector(cfg.n_envs, vec_env=cfg.vec_env)
        self.learner = self.learner_cls(cfg.learner, self.observation_space, self.action_space, self.device)
        self.buffer = self._make_buffer()
        self._last_metrics: dict[str, torch.Tensor] = {}

    def _make_buffer(self):
        return ReplayBuffer(self.cfg.buffer_size, flat_dim(self.observation_space), flat_dim(self.action_space), self.device)

    def parts(self) -> dict:
        return {"learner": self.learner, "buffer": self.buffer}

    def policy_action(self, obs, deterministic: bool = True) -> np.ndarray:
        """The env-scaled action for one observation (or a batch, leading dim = rows)."""
        obs = np.asarray(obs)
        single = obs.shape == self.observation_space.shape
        act = self.learner.act(self._obs_tensor(obs[None] if single else obs), deterministic).cpu().numpy()
        env_act = self.actions.to_env(act)
        return env_act[0] if single else env_act

    def _obs_tensor(self, obs: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)

    def explore(self, obs: np.ndarray, policy_act: torch.Tensor | None = None) -> np.ndarray:
        """Policy actions for the training envs: uniform random before ``learning_starts``, then the learner's
        (``policy_act``: the learner's actions for ``obs`` when already computed, as a vectorised run does for
        every seed at once)."""
        if not self.acting():
            return self.actions.sample_uniform(self.np_rng, self.cfg.n_envs)
        return self.policy_act(obs, policy_act)

    def policy_act(self, obs: np.ndarray, given: torch.Tensor | None = None) -> np.ndarray:
        """The learner's (sampled) actions for the training envs' observations, unless ``given``."""
        act = self.learner.act(self._obs_tensor(obs), deterministic=False) if given is None else given
        return act.cpu().numpy()

    def acting(self) -> bool:
        """Whether exploration asks the learner this step (not while the buffer is filled with random steps)."""
        return self.env_steps >= self.cfg.learning_starts

    def train_step(self) -> None:
        before = self.env_steps
        self.collect()
        self.prepare_updates(before)
        self.policy_updates(self.updates_due(before))

    def prepare_updates(self, before: int) -> None:
        """Hook between a vector step and its updates (``before``: the env clock before the step); the Dyna loop
        fits its model and generates rollouts here. Nothing for a plain off-policy algorithm."""

    def updates_due(self, before: int) -> int:
        """Learner updates owed after the env clock moved from ``before``: updates_per_step per train_freq crossed."""
        rounds = self.env_steps // self.cfg.train_freq - before // self.cfg.train_freq
        return rounds * self.cfg.updates_per_step if self.learning() else 0

    def learning(self) -> bool:
        return self.env_steps >= self.cfg.learning_starts

    def collect(self, policy_act: torch.Tensor | None = None) -> None:
        """One vector step with the exploration policy; every sub-env's transition goes to the buffer."""
        act = self.explore(self.collector.observe(), policy_act)
        t = self.collector.step(self.actions.to_env(act))
        self.buffer.add(t.obs, act, t.reward, t.next_obs, t.terminated, t.truncated)

    def policy_updates(self, n: int) -> None:
        """``n`` learner updates, each on a fresh minibatch."""
        if not n:
            return  # most steps of a loop with train_freq > 1
        for batch in self.round_batches(n):
            self._last_metrics = self.learner.update(batch)

    def round_batches(self, n: int):
        """The minibatches of ``n`` updates in a row, drawn lazily: each as its update asks for it, so random
        draws interleave with the learner's own (a loop whose updates draw nothing may draw them all at once)."""
        for _ in range(n):
            yield self.sample_batch()

    def sample_batch(self) -> Batch:
        return self.buffer.sample(self.cfg.batch_size)

    def budget_notes(self, total: int) -> list[str]:
        if total <= self.cfg.learning_starts:
            return [f"{total} steps end before learning_starts={self.cfg.learning_starts}: {self.name.upper()} will only collect random steps and make no gradient updates; pass more steps or a smaller learning_starts"]
        return []


# --- the three continuous-action actor-critics --------------------------------------------------------------


@dataclass
class SACConfig(OffPolicyConfig):
    algo: str = "sac"
    learner: SACLearnerConfig = field(default_factory=SACLearnerConfig)


@dataclass
class TD3Config(OffPolicyConfig):
    algo: str = "td3"
    learner: TD3LearnerConfig = field(default_factory=TD3LearnerConfig)


@dataclass
class DDPGConfig(OffPolicyConfig):
    algo: str = "ddpg"
    learner: DDPGLearnerConfig = field(default_factory=DDPGLearnerConfig)


@register
class SAC(OffPolicyAlgorithm):
    """SAC: off-policy maximum-entropy actor-critic for continuous actions (Haarnoja et al. 2018; dynarl.learners.sac)."""

    name, config_cls, learner_cls = "sac", SACConfig, SACLearner


@register
class TD3(OffPolicyAlgorithm):
    """TD3: DDPG with clipped double Q, delayed actor updates and target smoothing (Fujimoto et al. 2018)."""

    name, config_cls, learner_cls = "td3", TD3Config, TD3Learner


@register
class DDPG(OffPolicyAlgorithm):
    """DDPG: deterministic policy gradient with a learned Q and target networks (Lillicrap et al. 2016)."""

    name, config_cls, learner_cls = "ddpg", DDPGConfig, DDPGLearner
