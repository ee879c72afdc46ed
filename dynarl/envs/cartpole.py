"""A cart-pole with a continuous force, registered as ``dynarl/ContinuousCartPole-v0``.

Gymnasium only ships the discrete ``CartPole-v1``; PETS-style planners need a continuous action.
The physics (constants, equations of motion, explicit Euler step of ``tau = 0.02`` s) are those of
Gymnasium's ``CartPole-v1``; only the action differs:

* action: ``Box(-1, 1, (1,), float32)``; the applied force is ``force_mag * clip(action, -1, 1)``
  with ``force_mag = 10`` N.
* observation: ``[x, x_dot, theta, theta_dot]`` as float32; the initial state is drawn uniformly from
  ``(-0.05, 0.05)`` with ``self.np_random``, so ``reset(seed=...)`` makes episodes reproducible.
* reward: ``+1`` for every step, including the terminating one (as in ``CartPole-v1``).
* terminated: ``|x| > X_THRESHOLD`` or ``|theta| > THETA_THRESHOLD`` (2.4 m, 12 degrees), decided on
  the float32 observation so that :func:`dynarl.envs.tasks.cartpole_termination` reproduces it exactly.
  The thresholds are rounded to float32 so the comparison is the same in float32 and float64.
* truncated: after 200 steps (``max_episode_steps`` of the registration).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

ENV_ID = "dynarl/ContinuousCartPole-v0"
MAX_EPISODE_STEPS = 200

# Rounded to float32 so that comparisons on float32 and float64 observations agree exactly.
X_THRESHOLD = float(np.float32(2.4))
THETA_THRESHOLD = float(np.float32(12 * 2 * math.pi / 360))


class ContinuousCartPoleEnv(gym.Env[np.ndarray, np.ndarray]):
    """Cart-pole balancing with a continuous horizontal force in ``[-force_mag, force_mag]``."""

    metadata = {"render_modes": [], "render_fps": 50}

    def __init__(self, render_mode: str | None = None):
        if render_mode is not None:
            raise ValueError(f"{ENV_ID} does not support rendering (render_mode={render_mode!r})")
        self.render_mode = None
        self.gravity = 9.8
        self.masscart = 1.0
        self.masspole = 0.1
        self.total_mass = self.masspole + self.masscart
        self.length = 0.5  # half the pole's length
        self.polemass_length = self.masspole * self.length
        self.force_mag = 10.0
        self.tau = 0.02  # seconds between state updates

        high = np.array([X_THRESHOLD * 2, np.inf, THETA_THRESHOLD * 2, np.inf], dtype=np.float32)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.state: np.ndarray | None = None

    def step(self, action):
        if self.state is None:
            raise RuntimeError("Call reset before using step.")
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (1,):
            raise ValueError(f"{ENV_ID} expects an action of shape (1,), got shape {np.shape(action)}")
        force = self.force_mag * float(np.clip(a[0], -1.0, 1.0))

        x, x_dot, theta, theta_dot = self.state
        costheta = math.cos(theta)
        sintheta = math.sin(theta)
        temp = (force + self.polemass_length * theta_dot**2 * sintheta) / self.total_mass
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * costheta**2 / self.total_mass)
        )
        xacc = temp - self.polemass_length * thetaacc * costheta / self.total_mass

        # Explicit Euler, as CartPole-v1's default "euler" integrator.
        x = x + self.tau * x_dot
        x_dot = x_dot + self.tau * xacc
        theta = theta + self.tau * theta_dot
        theta_dot = theta_dot + self.tau * thetaacc
        self.state = np.array((x, x_dot, theta, theta_dot), dtype=np.float64)

        obs = self.state.astype(np.float32)
        terminated = bool(abs(float(obs[0])) > X_THRESHOLD or abs(float(obs[2])) > THETA_THRESHOLD)
        return obs, 1.0, terminated, False, {}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        low, high = -0.05, 0.05
        if options:
            low = float(options.get("low", low))
            high = float(options.get("high", high))
        self.state = self.np_random.uniform(low=low, high=high, size=(4,))
        return self.state.astype(np.float32), {}


def register() -> None:
    """Register ``dynarl/ContinuousCartPole-v0`` in Gymnasium's registry (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(
            id=ENV_ID,
            entry_point="dynarl.envs.cartpole:ContinuousCartPoleEnv",
            max_episode_steps=MAX_EPISODE_STEPS,
        )
