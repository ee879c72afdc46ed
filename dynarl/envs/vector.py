"""Gymnasium vector envs for every env collector: sync or async, any autoreset mode, replayable for resume.

Autoreset (Gymnasium >= 1.1, ``gymnasium.vector.AutoresetMode``; https://farama.org/Vector-Autoreset-Mode):

- ``same_step``: a sub-env whose episode ends is reset inside that ``step``; the returned observation is
  the next episode's first one and the true last observation is ``info["final_obs"][i]``;
- ``next_step`` (Gymnasium's default): the step returns the final observation; the *following* ``step``
  ignores the action of that sub-env, resets it and returns reward 0 and the first observation;
- ``disabled``: nothing is reset; the user calls ``reset(options={"reset_mask": done})``.

:func:`step_vector_env` turns all three into one contract: ``(next_obs, reward, terminated, truncated,
final_obs)`` where ``final_obs[i]`` is the true ``s'`` of every sub-env that ended and ``next_obs`` already
holds the next episode's first observation. In ``next_step`` and ``disabled`` modes it resets the ended
sub-envs at once with ``reset_mask`` (so no step is ever spent on an ignored action and every stored row is
a real transition); in ``same_step`` mode it reads ``final_obs``.

Every sub-env is wrapped in :class:`EpisodeRecorder`, which remembers how its current episode was reset
(a seed, or the env's RNG state just before an unseeded reset) and the actions taken since. A checkpoint
stores these records; resuming rebuilds each sub-env by replaying them, in this process or in the async
workers, so a resumed run steps exactly the same episodes as an uninterrupted one.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv
from gymnasium.wrappers import RecordEpisodeStatistics

AUTORESET_MODES = {"next_step": AutoresetMode.NEXT_STEP, "same_step": AutoresetMode.SAME_STEP, "disabled": AutoresetMode.DISABLED}


class EpisodeRecorder(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Records the current episode's reset and actions; ``replay_pending()`` rebuilds it from a record.

    Records its (empty) constructor arguments so ``env.spec`` can recreate it (Gymnasium's ``check_env``)."""

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self.episode_reset: dict | None = None
        self.episode_actions: list[np.ndarray] = []
        self.pending_record: dict | None = None

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.episode_reset = {"seed": int(seed)}
        else:
            self.episode_reset = {"rng": self.env.unwrapped.np_random.bit_generator.state}
        self.episode_actions = []
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        self.episode_actions.append(np.array(action, copy=True))
        return self.env.step(action)

    def episode_record(self) -> dict:
        actions = np.stack(self.episode_actions) if self.episode_actions else np.zeros((0, *np.shape(self.env.action_space.sample())))
        return {"reset": self.episode_reset, "actions": actions}

    def replay_pending(self) -> np.ndarray:
        """Reset as recorded in ``pending_record`` and replay its actions; returns the current observation."""
        record, self.pending_record = self.pending_record, None
        reset = record["reset"]
        if "rng" in reset:
            self.env.reset(seed=0)  # make sure np_random exists, then put its recorded state back
            self.env.unwrapped.np_random.bit_generator.state = reset["rng"]
            obs, _ = self.reset()
        else:
            obs, _ = self.reset(seed=reset["seed"])
        for a in record["actions"]:
            obs, *_ = self.step(a)
        return obs


def _make_recorded(make) -> gym.Env:
    return EpisodeRecorder(RecordEpisodeStatistics(make()))


def make_vector_env(make: Callable[[], gym.Env], num_envs: int, kind: str = "sync", autoreset_mode: str = "next_step") -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``make()`` as a Gymnasium vector env, each recorded for replay and wrapped in
    Gymnasium's ``RecordEpisodeStatistics`` (episode return and length at every episode end)."""
    fns = [partial(_make_recorded, make) for _ in range(num_envs)]
    mode = AUTORESET_MODES[autoreset_mode]
    if kind == "async":
        return AsyncVectorEnv(fns, autoreset_mode=mode)
    return SyncVectorEnv(fns, autoreset_mode=mode)


def step_vector_env(envs: gym.vector.VectorEnv, actions: np.ndarray):
    """One vector step with the autoreset mode handled (see the module docstring).

    Returns ``(next_obs, reward, terminated, truncated, final_obs, episodes)``; ``final_obs`` is None when no
    episode ended, else an array whose rows for the ended sub-envs are their true last observations;
    ``episodes`` lists ``(sub_env, return, length)`` of the episodes that ended, from ``RecordEpisodeStatistics``.
    """
    next_obs, reward, terminated, truncated, info = envs.step(actions)
    ended = terminated | truncated
    if not ended.any():
        return next_obs, reward, terminated, truncated, None, []
    mode = envs.metadata["autoreset_mode"]
    if mode == AutoresetMode.SAME_STEP:
        final_obs = np.array(next_obs, copy=True)
        for i in np.flatnonzero(ended):
            final_obs[i] = info["final_obs"][i]
        stats = info["final_info"]["episode"]
    else:
        final_obs = np.array(next_obs, copy=True)
        next_obs, _ = envs.reset(options={"reset_mask": ended.copy()})
        stats = info["episode"]
    episodes = [(int(i), float(stats["r"][i]), int(stats["l"][i])) for i in np.flatnonzero(ended)]
    return next_obs, reward, terminated, truncated, final_obs, episodes


def vector_env_records(envs: gym.vector.VectorEnv) -> list[dict]:
    return list(envs.call("episode_record"))


def replay_vector_env(envs: gym.vector.VectorEnv, records: list[dict]) -> np.ndarray:
    """Rebuild every sub-env's current episode from its record; returns the stacked observations."""
    envs.reset(seed=0)  # put the vector env itself in a clean post-reset state (no pending autoresets)
    envs.set_attr("pending_record", records)
    return np.stack(envs.call("replay_pending"))
