"""A point that drives to a goal in the unit square, registered as ``dynarl/PointMaze-v0`` (seed 001, D2).

The smallest goal-reaching task for goal-conditioned imitation: the policy must read the goal from its
observation, so one dataset of trajectories serves every goal (hindsight relabelling turns any trajectory
into demonstrations of reaching the states it passed through). Pure numpy, microseconds per step.

* observation: ``Box([0, 1]^4)``, ``[x, y, goal_x, goal_y]`` (the achieved goal is dims 0-1, the desired
  goal dims 2-3);
* action: ``Box([-1, 1]^2)``, a velocity: ``pos <- clip(pos + MAX_STEP * clip(a, -1, 1), 0, 1)``;
* reward: ``-||pos' - goal||`` (dense; 0 is the best possible);
* terminated when ``||pos' - goal|| <= GOAL_RADIUS``; truncated after ``MAX_EPISODE_STEPS`` steps;
* ``reset``: start and goal uniform in the square from the env's ``np_random``, the goal at least
  ``MIN_START_DISTANCE`` from the start (so no episode is solved by standing still). The straight line
  takes at most ``ceil(sqrt(2) / MAX_STEP) = 29`` steps, well inside the time limit.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

ENV_ID = "dynarl/PointMaze-v0"
MAX_EPISODE_STEPS = 100
MAX_STEP = 0.05  # arena units per step at |a| = 1
GOAL_RADIUS = 0.05
MIN_START_DISTANCE = 0.2
ACHIEVED_GOAL_DIMS = (0, 1)
DESIRED_GOAL_DIMS = (2, 3)


class PointMazeEnv(gym.Env[np.ndarray, np.ndarray]):
    """See the module docstring."""

    metadata = {"render_modes": [], "render_fps": 20}

    def __init__(self, render_mode: str | None = None):
        if render_mode is not None:
            raise ValueError(f"{ENV_ID} has no renderer: render_mode must be None, got {render_mode!r}")
        self.observation_space = spaces.Box(0.0, 1.0, (4,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.pos: np.ndarray | None = None
        self.goal: np.ndarray | None = None

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.pos, self.goal]).astype(np.float32)

    def step(self, action):
        if self.pos is None:
            raise RuntimeError("Call reset before using step.")
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        self.pos = np.clip(self.pos + MAX_STEP * a, 0.0, 1.0)
        distance = float(np.linalg.norm(self.pos - self.goal))
        return self._obs(), -distance, distance <= GOAL_RADIUS, False, {"distance": distance, "is_success": distance <= GOAL_RADIUS}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(0.0, 1.0, 2)
        self.goal = self.np_random.uniform(0.0, 1.0, 2)
        while np.linalg.norm(self.goal - self.pos) < MIN_START_DISTANCE:  # rejection: the goal stays uniform on the rest of the square
            self.goal = self.np_random.uniform(0.0, 1.0, 2)
        return self._obs(), {"distance": float(np.linalg.norm(self.pos - self.goal))}


if ENV_ID not in gym.registry:  # importing dynarl.envs registers it
    gym.register(id=ENV_ID, entry_point="dynarl.envs.point_maze:PointMazeEnv", max_episode_steps=MAX_EPISODE_STEPS)
