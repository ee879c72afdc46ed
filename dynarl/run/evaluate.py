"""Evaluation on a separate environment: N deterministic episodes from fixed seeds."""

from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np

EVAL_SEED_OFFSET = 1_000_003  # evaluation episodes never share seeds with training episodes


def evaluate(env: gym.Env, policy: Callable[[np.ndarray], np.ndarray], episodes: int, seed: int) -> np.ndarray:
    """Returns of ``episodes`` episodes, episode k reset with seed ``seed + EVAL_SEED_OFFSET + k``.

    Seeding every episode makes evaluation stateless: the same policy always gets the same score,
    and a resumed run evaluates exactly as an uninterrupted one.
    """
    returns = np.zeros(episodes)
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET + k)
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            returns[k] += float(reward)
            done = terminated or truncated
    return returns
