"""Observation wrappers that ``make_env(..., model_obs=True)`` adds so rewards can be computed from observations.

Why they are needed: Gymnasium's MuJoCo envs read some reward quantities from ``data.xpos``,
``data.xipos`` or ``data.site_xpos``. ``mujoco.mj_step`` computes those kinematics *before* it integrates,
so after a step they describe the state one physics sub-step earlier than ``qpos``; they cannot be
recomputed from the observed ``qpos``. Other rewards use values the observation clips. These wrappers put
the exact quantities the env uses into the observation (read right after ``reset``/``step``, i.e. the
same values the env's next ``step`` uses as its "before" value). They are only for model-based use;
``make_env(id)`` without ``model_obs`` returns the standard observation.
"""

from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class AppendSimQuantities(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Append simulator quantities, named by ``quantities`` (a key of :data:`SIM_QUANTITIES`), to a 1-D Box
    observation as float64.

    The quantities are named by a string, not passed as a function, so the wrapper records JSON-able
    constructor arguments (``gymnasium.utils.RecordConstructorArgs``): ``env.spec`` then lists it and
    ``gymnasium.make(env.spec)`` (vector envs built from a spec, the env spec Minari stores) recreates it.
    """

    def __init__(self, env: gym.Env, quantities: str):
        if quantities not in SIM_QUANTITIES:
            raise ValueError(f"unknown sim quantities {quantities!r}: must be one of {', '.join(sorted(SIM_QUANTITIES))}")
        gym.utils.RecordConstructorArgs.__init__(self, quantities=quantities)
        gym.ObservationWrapper.__init__(self, env)
        base = env.observation_space
        if not isinstance(base, spaces.Box) or len(base.shape) != 1:
            raise TypeError(f"AppendSimQuantities needs a 1-D Box observation, got {base}")
        self._fn, self.appended_names = SIM_QUANTITIES[quantities]
        size = len(self.appended_names)
        low = np.concatenate([base.low.astype(np.float64), np.full(size, -np.inf)])
        high = np.concatenate([base.high.astype(np.float64), np.full(size, np.inf)])
        self.observation_space = spaces.Box(low, high, dtype=np.float64)

    def observation(self, observation):
        extra = np.asarray(self._fn(self.env.unwrapped), dtype=np.float64)
        return np.concatenate([np.asarray(observation, dtype=np.float64), extra])


class UnclippedVelocities(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Replace the (clipped to [-10, 10]) ``qvel`` at the end of the observation with the raw ``qvel``."""

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        base = env.observation_space
        self._nv = env.unwrapped.data.qvel.size
        high = np.asarray(base.high, dtype=np.float64).copy()
        low = np.asarray(base.low, dtype=np.float64).copy()
        high[-self._nv:] = np.inf
        low[-self._nv:] = -np.inf
        self.observation_space = spaces.Box(low, high, dtype=np.float64)

    def observation(self, observation):
        obs = np.array(observation, dtype=np.float64, copy=True)
        obs[-self._nv:] = self.env.unwrapped.data.qvel
        return obs


def _idp_tip_and_velocities(u) -> np.ndarray:
    x, _, z = u.data.site_xpos[0]
    v1, v2 = u.data.qvel[1:3]
    return np.array([x, z, v1, v2], dtype=np.float64)


def _ant_torso_x(u) -> np.ndarray:
    return np.array([u.data.body(1).xpos[0]], dtype=np.float64)


def _humanoid_mass_centre_x(u) -> np.ndarray:
    mass = u.model.body_mass
    return np.array([float(mass @ u.data.xipos[:, 0]) / float(mass.sum())], dtype=np.float64)


SIM_QUANTITIES: dict[str, tuple[Callable[[gym.Env], np.ndarray], tuple[str, ...]]] = {
    "inverted_double_pendulum": (_idp_tip_and_velocities, ("tip_x", "tip_z", "hinge_vel", "hinge2_vel")),
    "ant_torso_x": (_ant_torso_x, ("torso_xpos_x",)),
    "humanoid_mass_centre_x": (_humanoid_mass_centre_x, ("mass_centre_x",)),
}
"""What :class:`AppendSimQuantities` can append: name -> (``fn(env.unwrapped) -> array``, names of its entries)."""


def inverted_double_pendulum_wrapper(env: gym.Env) -> gym.Env:
    """InvertedDoublePendulum-v5: append ``[tip_x, tip_z, qvel[1], qvel[2]]`` (obs indices 9..12).

    The reward and termination use the pole tip ``site_xpos[0]`` (one sub-step stale) and the unclipped
    hinge velocities; the standard observation has only sin/cos of the angles and clipped velocities.
    """
    return AppendSimQuantities(env, "inverted_double_pendulum")


def ant_wrapper(env: gym.Env) -> gym.Env:
    """Ant-v5: append the torso's ``xpos`` x (obs index 107), the position its forward reward differences."""
    return AppendSimQuantities(env, "ant_torso_x")


def humanoid_wrapper(env: gym.Env) -> gym.Env:
    """Humanoid-v5: append the mass-centre x (obs index 350), which the forward reward differences.

    Computed exactly as Gymnasium's ``mass_center``: ``sum(body_mass * xipos[:, 0]) / sum(body_mass)``.
    """
    return AppendSimQuantities(env, "humanoid_mass_centre_x")


def hopper_wrapper(env: gym.Env) -> gym.Env:
    """Hopper-v5: observe the raw ``qvel``; its health check ``|qpos[2:], qvel| < 100`` uses unclipped values."""
    return UnclippedVelocities(env)
