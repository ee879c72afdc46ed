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

The same module registers ``dynarl/PointCorridor-v0`` (:class:`PointCorridorEnv`), the task on which behaviour
cloning drifts (seed 001, D1 and T1): the point must follow a narrow winding corridor from a nearly fixed start,
so an expert's demonstrations cover only a thin tube of states around its centre line.
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




# --- the corridor: where behaviour cloning drifts ----------------------------------------------------------------

CORRIDOR_ID = "dynarl/PointCorridor-v0"
CORRIDOR_WAYPOINTS = ((0.1, 0.1), (0.9, 0.1), (0.9, 0.35), (0.1, 0.35), (0.1, 0.6), (0.9, 0.6), (0.9, 0.85), (0.1, 0.85))
CORRIDOR_HALF_WIDTH = 0.03  # the point crashes when it is farther than this from the centre line
CORRIDOR_STEP = 0.03  # arena units per step at |a_i| = 1: the expert covers the 3.95-long centre line in 131 steps
CORRIDOR_START_NOISE = 0.01  # the start is uniform in a square of this half-side around the first waypoint
CORRIDOR_GOAL_RADIUS = 0.03  # the finish line is this far (in arc length) before the last waypoint
CORRIDOR_ACTION_NOISE = 0.0  # std of Gaussian noise added to each action component (see PointCorridorEnv)
CORRIDOR_EPISODE_STEPS = 200


class Polyline:
    """A path through ``waypoints``: arc-length projection of points onto it and points at given arc lengths."""

    def __init__(self, waypoints):
        self.points = np.asarray(waypoints, dtype=np.float64)
        delta = np.diff(self.points, axis=0)
        self.lengths = np.linalg.norm(delta, axis=1)
        self.directions = delta / self.lengths[:, None]
        self.starts = np.concatenate([[0.0], np.cumsum(self.lengths)[:-1]])  # arc length at each segment's start
        self.length = float(self.lengths.sum())

    def project(self, pos: np.ndarray) -> tuple[float, float]:
        """``(s, d)``: the arc length of the nearest point of the path to ``pos`` and the distance to it."""
        t = np.clip(((pos - self.points[:-1]) * self.directions).sum(1), 0.0, self.lengths)
        distances = np.linalg.norm(pos - (self.points[:-1] + t[:, None] * self.directions), axis=1)
        i = int(np.argmin(distances))
        return float(self.starts[i] + t[i]), float(distances[i])

    def point(self, s: float) -> np.ndarray:
        """The point at arc length ``s`` (clipped to the path)."""
        s = min(max(s, 0.0), self.length)
        i = min(int(np.searchsorted(self.starts, s, side="right")) - 1, len(self.lengths) - 1)
        return self.points[i] + (s - self.starts[i]) * self.directions[i]


CORRIDOR = Polyline(CORRIDOR_WAYPOINTS)


class PointCorridorEnv(gym.Env[np.ndarray, np.ndarray]):
    """A point that must drive along a narrow serpentine corridor, registered as ``dynarl/PointCorridor-v0``.

    The task on which behaviour cloning's compounding error shows (seed 001, D1/T1; Ross & Bagnell 2010): the
    start is nearly fixed and the expert (:func:`dynarl.envs.experts.point_corridor_expert`) drives along the
    centre line, so its demonstrations cover a thin tube of states. A cloned policy's small errors, at the
    corners above all, take it off that tube, where no demonstration says how to come back, and the errors add
    up over the 7 corners until it hits a wall. DAgger labels the states the learner itself reaches, so its
    policy learns the way back to the centre line.

    * observation: ``Box([0, 1]^2)``, the position ``[x, y]`` (nothing about the corridor: the policy must know it);
    * action: ``Box([-1, 1]^2)``, a velocity: ``pos <- clip(pos + CORRIDOR_STEP * clip(a, -1, 1), 0, 1)``;
    * the corridor: the points within ``CORRIDOR_HALF_WIDTH`` of the polyline ``CORRIDOR_WAYPOINTS`` (four
      0.8-long rows joined by 0.25-long rises, 3.95 in all; the rows are 0.25 apart, so corridors never touch);
    * reward: the progress along the centre line, ``(s(pos') - s(pos)) / 3.95`` with ``s`` the arc length of the
      nearest centre-line point: an episode's return is the fraction of the corridor it covered (1 at the end);
    * terminated: on crossing the finish line ``s(pos') >= 3.95 - CORRIDOR_GOAL_RADIUS`` inside the corridor
      (``info["is_success"]``) or on leaving the corridor (``info["crashed"]``); truncated after 200 steps;
    * ``reset``: the first waypoint plus a uniform offset in ``[-CORRIDOR_START_NOISE, CORRIDOR_START_NOISE]^2``;
    * ``action_noise``: the std of Gaussian noise added to each clipped action component (0 by default: the
      dynamics are deterministic, the start the only randomness).

    Why deterministic: with even small actuation noise (0.05, a 0.0015 jitter per step) the expert's
    demonstrations spread a little around the centre line, each deviation labelled with the expert's correction,
    and BC learns that (linear) feedback law and extrapolates it: in a corridor of half-width 0.02 BC then reached
    the end in 98-100% of runs on 3 seeds with 3,000 labels, as often as DAgger. Without
    noise every demonstration is the centre line after its first step, the corrections are seen only at the start,
    and BC's fitting error is never corrected: the drift Ross & Bagnell's O(eps T^2) bound describes.
    """

    metadata = {"render_modes": [], "render_fps": 20}

    def __init__(self, render_mode: str | None = None, action_noise: float = CORRIDOR_ACTION_NOISE):
        if render_mode is not None:
            raise ValueError(f"{CORRIDOR_ID} has no renderer: render_mode must be None, got {render_mode!r}")
        self.action_noise = float(action_noise)
        self.observation_space = spaces.Box(0.0, 1.0, (2,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.pos: np.ndarray | None = None
        self.progress = 0.0  # s(pos)

    def step(self, action):
        if self.pos is None:
            raise RuntimeError("Call reset before using step.")
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        noise = self.action_noise * self.np_random.standard_normal(2) if self.action_noise else 0.0
        self.pos = np.clip(self.pos + CORRIDOR_STEP * (a + noise), 0.0, 1.0)
        progress, distance = CORRIDOR.project(self.pos)
        reward = (progress - self.progress) / CORRIDOR.length
        self.progress = progress
        crashed = distance > CORRIDOR_HALF_WIDTH
        success = not crashed and progress >= CORRIDOR.length - CORRIDOR_GOAL_RADIUS  # across the finish line
        info = {"progress": progress / CORRIDOR.length, "distance": distance, "is_success": success, "crashed": crashed}
        return self.pos.astype(np.float32), reward, success or crashed, False, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.pos = CORRIDOR.points[0] + self.np_random.uniform(-CORRIDOR_START_NOISE, CORRIDOR_START_NOISE, 2)
        self.progress = CORRIDOR.project(self.pos)[0]
        return self.pos.astype(np.float32), {"progress": self.progress / CORRIDOR.length}


if ENV_ID not in gym.registry:  # importing dynarl.envs registers both
    gym.register(id=ENV_ID, entry_point="dynarl.envs.point_maze:PointMazeEnv", max_episode_steps=MAX_EPISODE_STEPS)
if CORRIDOR_ID not in gym.registry:
    gym.register(id=CORRIDOR_ID, entry_point="dynarl.envs.point_maze:PointCorridorEnv", max_episode_steps=CORRIDOR_EPISODE_STEPS)
