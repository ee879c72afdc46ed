"""The env collector: real experience from one env or a Gymnasium vector env, resumable exactly.

    obs = envs.reset(seed)                       (sub-env i gets seed + i)
    each step(actions):
        next_obs, r, terminated, truncated = envs.step(actions)     (autoreset handled, any mode)
        return (obs, a, r, true s', terminated, truncated); obs <- next_obs (a new episode's first where one ended)

Every sub-env records how its episode was reset and the actions since (:mod:`dynarl.envs.vector`), so
a checkpoint rebuilds each sub-env's state by replay instead of pickling it. Episode returns and lengths
come from Gymnasium's ``RecordEpisodeStatistics``. Observations and rewards are checked: a NaN or inf from
the env stops the run before it reaches a buffer.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import numpy as np
import torch

from dynarl.envs.vector import make_vector_env, replay_vector_env, step_vector_env, vector_env_records
from dynarl.errors import TrainingDivergedError


@dataclass
class Transitions:
    """One vector step: rows per sub-env (numpy), with the true ``next_obs`` of episodes that ended."""

    obs: np.ndarray
    act: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_obs: np.ndarray | None  # None when no episode ended; else next_obs rows of the ended sub-envs

    @property
    def ended(self) -> np.ndarray:
        return self.terminated | self.truncated


class EnvCollector:
    """``n_envs`` copies of an env stepped in lock-step; counts env steps and episodes.

    ``make`` builds one env (see :func:`dynarl.envs.env_source`). ``step(env_actions)`` takes the env-scaled
    actions (one row per sub-env) and returns :class:`Transitions`.
    """

    def __init__(self, make: Callable[[], gym.Env], name: str, n_envs: int = 1, seed: int = 0, vec_env: str = "sync", autoreset_mode: str = "next_step", history: int = 10):
        self.name, self.n_envs, self.seed = name, int(n_envs), int(seed)
        self.envs = make_vector_env(make, self.n_envs, vec_env, autoreset_mode)
        self.observation_space = self.envs.single_observation_space
        self.action_space = self.envs.single_action_space
        self.obs: np.ndarray | None = None
        self.episode_lengths = np.zeros(self.n_envs, dtype=np.int64)  # steps since each sub-env's reset
        self.env_steps = 0
        self.episodes = 0
        self.recent_returns: deque[float] = deque(maxlen=history)
        self.recent_lengths: deque[int] = deque(maxlen=history)

    def reset(self) -> np.ndarray:
        """Start every sub-env's first episode (seeds seed, seed + 1, ...)."""
        self.obs, _ = self.envs.reset(seed=self.seed)
        self.episode_lengths[:] = 0
        return self.obs

    def observe(self) -> np.ndarray:
        """The current observations, starting the first episodes (or fresh ones after a load without them) if none."""
        return self.obs if self.obs is not None else self.reset()

    def step(self, env_actions: np.ndarray) -> Transitions:
        if self.obs is None:
            self.reset()
        obs = self.obs
        next_obs, reward, terminated, truncated, final_obs, episodes = step_vector_env(self.envs, env_actions)
        self._require_finite(next_obs if final_obs is None else final_obs, reward)
        if final_obs is not None:
            self._require_finite(next_obs, reward)  # the new episodes' first observations
        for _, ret, length in episodes:
            self.recent_returns.append(ret)
            self.recent_lengths.append(length)
        self.episodes += len(episodes)
        self.env_steps += self.n_envs
        self.episode_lengths += 1
        if final_obs is not None:  # some episode ended
            self.episode_lengths[terminated | truncated] = 0
        self.obs = next_obs
        true_next = next_obs if final_obs is None else final_obs
        return Transitions(obs, env_actions, reward, true_next, terminated, truncated, final_obs)

    def recent_return(self) -> float | None:
        """The mean return of the last episodes (asked every step by the progress display: a plain sum, 0.4 us
        against numpy's 7 us on a deque)."""
        return float(sum(self.recent_returns)) / len(self.recent_returns) if self.recent_returns else None

    def recent_length(self) -> float | None:
        return float(sum(self.recent_lengths)) / len(self.recent_lengths) if self.recent_lengths else None

    def _require_finite(self, obs, reward) -> None:
        """Stop on NaN/inf observations or rewards from the env, like a non-finite loss (nothing is stored)."""
        obs = np.asarray(obs)
        bad_obs = obs.dtype.kind == "f" and not np.isfinite(obs).all()  # ndarray methods: 2 us less a step than np.all
        if bad_obs or not np.isfinite(reward).all():
            raise TrainingDivergedError(
                f"{self.name} returned a non-finite (NaN/inf) {'observation' if bad_obs else 'reward'} at env step {self.env_steps + self.n_envs}. "
                "Training stopped; the last good checkpoint is kept. Check the environment (its parameters, env_kwargs) for values that overflow."
            )

    def close(self) -> None:
        self.envs.close()

    # --- checkpoint state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The counters and recent episode statistics (the episodes in progress are :attr:`open_episodes`)."""
        return {"env_steps": self.env_steps, "episodes": self.episodes, "recent_returns": list(self.recent_returns), "recent_lengths": list(self.recent_lengths)}

    def load_state_dict(self, state: dict) -> None:
        self.env_steps, self.episodes = int(state["env_steps"]), int(state["episodes"])
        self.recent_returns = deque(state["recent_returns"], maxlen=self.recent_returns.maxlen)
        self.recent_lengths = deque(state["recent_lengths"], maxlen=self.recent_lengths.maxlen)

    @property
    def open_episodes(self) -> "OpenEpisodes":
        """The episodes in progress as a checkpoint part (saved with run state, not by ``save()``)."""
        return OpenEpisodes(self)


class OpenEpisodes:
    """Every sub-env's current episode (its reset and actions since), rebuilt on load by replay."""

    def __init__(self, collector: EnvCollector):
        self.collector = collector

    def state_dict(self) -> dict:
        c = self.collector
        if c.obs is None:
            return {"obs": None, "records": None}
        records = vector_env_records(c.envs)
        return {"obs": torch.as_tensor(np.asarray(c.obs)), "episode_lengths": torch.as_tensor(c.episode_lengths), "records": [{"reset": r["reset"], "actions": torch.as_tensor(np.asarray(r["actions"]))} for r in records]}

    def load_state_dict(self, state: dict) -> None:
        c = self.collector
        if state.get("records") is None:
            c.obs = None
            return
        records = [{"reset": r["reset"], "actions": r["actions"].numpy()} for r in state["records"]]
        obs = replay_vector_env(c.envs, records)
        saved = state["obs"].numpy()
        if not np.array_equal(obs.astype(saved.dtype), saved):
            raise ValueError("replaying the saved episodes did not reproduce the saved observations (is the env deterministic?)")
        c.obs = saved
        c.episode_lengths = state["episode_lengths"].numpy().copy()
