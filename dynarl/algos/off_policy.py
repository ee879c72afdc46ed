"""The online off-policy loop: real env -> replay buffer -> any off-policy learner (SAC, TD3, DDPG).

    for each env step:
        a ~ uniform           while env_steps < learning_starts, else a = learner.act(s)
        s', r, terminated, truncated = env.step(a); store it; reset at the end of an episode
        every train_freq steps: updates_per_step x learner.update(buffer.sample(batch_size))

Evaluation, logging and checkpoints come from :class:`~dynarl.algos.base.Algorithm`. Learners act in
[-1, 1]^|A|; the loop rescales to the env's bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from dynarl.algos.base import Algorithm, require_box_actions, require_flat_obs
from dynarl.config import RunConfig, non_negative, param, positive
from dynarl.data.batch import Batch
from dynarl.data.replay import ReplayBuffer
from dynarl.learners.base import Learner


@dataclass
class OffPolicyConfig(RunConfig):
    torch_threads: int = param(1, non_negative, "CPU threads for torch (0: torch's default, one per core); one holds up when the cores are shared, where more slow every small op down many times")
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

    def _check_env(self, env) -> None:
        low, high = require_box_actions(env, self.name.upper())
        self.act_low, self.act_scale = low, (high - low) / 2
        self.obs_dim, self.act_dim = require_flat_obs(env, self.name.upper()), int(low.shape[0])

    def _setup(self) -> None:
        self.learner = self.learner_cls(self.cfg.learner, self.obs_dim, self.act_dim, self.device)
        self.buffer = ReplayBuffer(self.cfg.buffer_size, self.obs_dim, self.act_dim, self.device)
        self._last_metrics: dict[str, torch.Tensor] = {}

    def _to_env_action(self, act: np.ndarray) -> np.ndarray:
        return (self.act_low + (act + 1.0) * self.act_scale).astype(np.float32)

    def predict(self, obs, deterministic: bool = True) -> np.ndarray:
        """The env-scaled action for one observation (or a batch, leading dim = rows)."""
        obs_t = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)
        act = self.learner.act(obs_t.unsqueeze(0) if obs_t.dim() == 1 else obs_t, deterministic).cpu().numpy()
        return self._to_env_action(act[0] if obs_t.dim() == 1 else act)

    def train_step(self) -> None:
        self._collect()
        if self._learning() and self.env_steps % self.cfg.train_freq == 0:
            self._policy_updates()

    def _budget_notes(self, total: int) -> list[str]:
        if total <= self.cfg.learning_starts:
            return [f"{total} steps end before learning_starts={self.cfg.learning_starts}: {self.name.upper()} will only collect random steps and make no gradient updates; pass more steps or a smaller learning_starts"]
        return []

    def _learning(self) -> bool:
        return self.env_steps >= self.cfg.learning_starts

    def _collect(self) -> None:
        """One real env step: uniform actions before ``learning_starts``, then the learner's; stored in the buffer."""
        if self.env_steps < self.cfg.learning_starts:
            act = self.np_rng.uniform(-1.0, 1.0, self.act_dim).astype(np.float32)
        else:
            obs_t = torch.as_tensor(self._obs, dtype=torch.float32, device=self.device).unsqueeze(0)
            act = self.learner.act(obs_t, deterministic=False)[0].cpu().numpy()
        obs, next_obs, reward, terminated, truncated = self._env_step(self._to_env_action(act))
        self.buffer.add(obs, act, reward, next_obs, terminated, truncated)

    def _policy_updates(self) -> None:
        """``updates_per_step`` learner updates (G), each on a fresh minibatch."""
        for _ in range(self.cfg.updates_per_step):
            self._last_metrics = self.learner.update(self._sample_batch())

    def _sample_batch(self) -> Batch:
        return self.buffer.sample(self.cfg.batch_size)

    def _metrics(self) -> dict[str, float]:
        return {**{k: float(v) for k, v in self._last_metrics.items()}, "updates": self.learner.num_updates}

    def all_finite(self) -> bool:
        return self.learner.all_finite()

    def _state(self, include_buffer: bool) -> dict:
        return {"learner": self.learner.state_dict(), "buffer": self.buffer.state_dict() if include_buffer else None}

    def _load_state(self, state: dict) -> None:
        self.learner.load_state_dict(state["learner"])
        if state.get("buffer") is not None:
            self.buffer.load_state_dict(state["buffer"])

    def summary(self) -> dict:
        return {**super().summary(), "gradient_updates": self.learner.num_updates}
