"""Evaluation on a separate environment: N deterministic episodes from fixed seeds."""

from __future__ import annotations

import time
from typing import Callable

import gymnasium as gym
import numpy as np

from dynarl.seeding import EVAL_SEED_OFFSET

MAX_STEPS_WITHOUT_TIME_LIMIT = 10_000  # a cap for envs with no TimeLimit of their own


def evaluate(
    env: gym.Env,
    policy: Callable[[np.ndarray], np.ndarray],
    episodes: int,
    seed: int,
    on_episode: Callable[[int, float, float], None] | None = None,
    max_steps: int = MAX_STEPS_WITHOUT_TIME_LIMIT,
    gamma: float = 1.0,
) -> np.ndarray:
    """Returns of ``episodes`` episodes, episode k reset with seed ``seed + EVAL_SEED_OFFSET + k``.

    Seeding every episode makes evaluation stateless: the same policy always gets the same score,
    and a resumed run evaluates exactly as an uninterrupted one. ``on_episode(k, return, seconds)`` is
    called after each episode (progress for slow policies such as planners). An env without a time limit
    (e.g. CliffWalking-v1, where a greedy policy can walk into a wall forever) is cut at ``max_steps``.
    """
    returns = np.zeros(episodes)
    for k in range(episodes):
        start = time.perf_counter()
        obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET + k)
        done, steps = False, 0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            returns[k] += gamma**steps * float(reward)
            steps += 1
            done = terminated or truncated or steps >= max_steps
        if on_episode is not None:
            on_episode(k, float(returns[k]), time.perf_counter() - start)
    return returns
