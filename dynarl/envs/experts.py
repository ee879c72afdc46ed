"""Scripted experts: plain functions ``obs -> env action`` that imitation learning queries as its oracle.

DAgger (seed 001, D3) needs "an expert oracle interface": something that labels any visited state with an
action. A scripted controller is the cheapest oracle; any trained dynarl agent is another (DAgger loads it
from its run folder). A config names a scripted expert as ``"module:function"`` (:func:`resolve_expert`).
"""

from __future__ import annotations

import importlib
from typing import Callable

import numpy as np

from dynarl.errors import ConfigError

Expert = Callable[[np.ndarray], np.ndarray]

# Pendulum-v1 (gymnasium's g = 10, m = l = 1) swings freely as th_ddot = (3 g / 2 l) sin th = 15 sin th, which
# conserves E = 1/2 th_dot^2 + 15 cos th: 15 at rest upright. The torque is capped at 2.
PENDULUM_UPRIGHT_ENERGY = 15.0
PENDULUM_MAX_TORQUE = 2.0


def pendulum_swing_up(obs: np.ndarray) -> np.ndarray:
    """Energy pumping, then linear balance, for Pendulum-v1 (obs ``[cos th, sin th, th_dot]``; mean return
    about -137 over 20 seeds).

    Far from upright (cos th <= 0.8) push with the velocity while the energy is below the upright one,
    ``u = 2 sign(th_dot (15 - E))`` (Astrom & Furuta 2000's energy control, at full torque); near upright a PD
    law ``u = -(10 th + 2 th_dot)`` balances. A pendulum at rest (|th_dot| < 1e-3) is kicked with u = 1.
    """
    c, s, d = (float(v) for v in np.asarray(obs, dtype=np.float64).reshape(3))
    th = np.arctan2(s, c)
    if c > 0.8:
        u = -(10.0 * th + 2.0 * d)
    elif abs(d) < 1e-3:
        u = 1.0
    else:
        energy = 0.5 * d * d + PENDULUM_UPRIGHT_ENERGY * c
        u = PENDULUM_MAX_TORQUE * np.sign(d * (PENDULUM_UPRIGHT_ENERGY - energy))
    return np.array([np.clip(u, -PENDULUM_MAX_TORQUE, PENDULUM_MAX_TORQUE)], dtype=np.float32)


def point_maze_expert(obs: np.ndarray) -> np.ndarray:
    """Straight to the goal on ``dynarl/PointMaze-v0`` (obs ``[x, y, goal_x, goal_y]``): full speed, slowing
    to land on the goal in the last step (``a = clip((goal - pos) / MAX_STEP, -1, 1)``)."""
    from dynarl.envs.point_maze import MAX_STEP

    obs = np.asarray(obs, dtype=np.float64)
    return np.clip((obs[..., 2:4] - obs[..., 0:2]) / MAX_STEP, -1.0, 1.0).astype(np.float32)


def point_corridor_expert(obs: np.ndarray) -> np.ndarray:
    """Along the centre line of ``dynarl/PointCorridor-v0`` (obs ``[x, y]``): aim at the centre-line point one step
    of arc length ahead of the nearest one, ``a = clip((c(s(pos) + CORRIDOR_STEP) - pos) / CORRIDOR_STEP, -1, 1)``
    (pure pursuit). From the centre line it lands on the centre line, at full speed; a lateral offset below
    ``CORRIDOR_STEP`` is removed in one step. It reaches the end in 131 steps from every start."""
    from dynarl.envs.point_maze import CORRIDOR, CORRIDOR_STEP

    pos = np.asarray(obs, dtype=np.float64).reshape(2)
    target = CORRIDOR.point(CORRIDOR.project(pos)[0] + CORRIDOR_STEP)
    return np.clip((target - pos) / CORRIDOR_STEP, -1.0, 1.0).astype(np.float32)


def cartpole_balance(obs: np.ndarray) -> np.int64:
    """Push towards the side the pole falls to, for CartPole-v1 (obs ``[x, x_dot, th, th_dot]``): action 1 (right)
    when ``0.1 x + 0.5 x_dot + 3 th + th_dot > 0`` (a PD law on the pole, weakly centring the cart); 500 of 500
    steps on the first 20 seeds."""
    x, x_dot, th, th_dot = (float(v) for v in np.asarray(obs, dtype=np.float64).reshape(4))
    return np.int64(0.1 * x + 0.5 * x_dot + 3.0 * th + th_dot > 0)


# the expert an env gets when none is named (DAgger's default oracle)
SCRIPTED_EXPERTS = {"Pendulum-v1": "dynarl.envs.experts:pendulum_swing_up", "CartPole-v1": "dynarl.envs.experts:cartpole_balance", "dynarl/PointMaze-v0": "dynarl.envs.experts:point_maze_expert",
                    "dynarl/PointCorridor-v0": "dynarl.envs.experts:point_corridor_expert"}


def scripted_expert(env_id: str) -> str:
    """The ``"module:function"`` of the scripted expert for ``env_id``; ConfigError when there is none."""
    if env_id not in SCRIPTED_EXPERTS:
        raise ConfigError(f"there is no scripted expert for {env_id!r} (there are for {', '.join(SCRIPTED_EXPERTS)}): pass expert='module:function' or a dynarl run folder of a trained agent")
    return SCRIPTED_EXPERTS[env_id]


def resolve_expert(spec: str) -> Expert:
    """The function a ``"package.module:function"`` string names, e.g. ``"dynarl.envs.experts:pendulum_swing_up"``."""
    module_name, sep, attr = str(spec).partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"expert={spec!r} is not 'module:function' (e.g. 'dynarl.envs.experts:pendulum_swing_up') nor a dynarl run folder or checkpoint")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"expert={spec!r}: module {module_name!r} cannot be imported ({e})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        known = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_") and getattr(v, "__module__", None) == module.__name__)
        raise ConfigError(f"expert={spec!r}: module {module_name!r} has no function {attr!r}" + (f"; it has: {', '.join(known)}" if known else ""))
    return fn
