"""Per-task knowledge for model-based RL: exact, batched reward and termination functions.

Every ``reward_fn(obs, act, next_obs)`` / ``termination_fn(obs, act, next_obs)`` is pure torch, works on any
leading batch dimensions (``[N, dim]``, ``[P, N, dim]``, ...), stays on the inputs' device and dtype and
returns a ``[...]`` tensor (bool for terminations). They assume the observation of
``make_env(env_id, model_obs=True)``, which applies :attr:`TaskSpec.env_kwargs` and
:attr:`TaskSpec.wrappers` so that the observation holds everything the formulas need. With those, the
functions reproduce Gymnasium's reward and ``terminated`` for the env's default constructor arguments
(checked step by step in ``tests/test_envs.py``).

Which loop uses which (each checked on the loop's own env in ``tests/test_task_functions.py``): PETS,
POPLIN and SLBO run on the ``model_obs`` observation and use ``reward_fn`` and ``termination_fn``; the
Dyna loop (MBPO) keeps the standard observation for its model-free learner, learns the reward and uses
:meth:`TaskSpec.standard_termination`. A function must only ever see the observation it was written for:
on another one it computes a wrong value without an error.

Notation below: ``o`` = obs (before the step), ``a`` = action as passed to ``step``, ``o'`` = next_obs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from dynarl.envs import wrappers as _w
from dynarl.envs.cartpole import ENV_ID as CARTPOLE_ID
from dynarl.envs.cartpole import THETA_THRESHOLD, X_THRESHOLD

RewardFn = Callable[[Tensor, Tensor, Tensor], Tensor]
TerminationFn = Callable[[Tensor, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class TaskSpec:
    """What dynarl knows about a task.

    Attributes:
        env_id: the Gymnasium id.
        reward_fn: batched ``(obs, act, next_obs) -> reward [...]``, exact for the ``model_obs`` observation.
        termination_fn: batched ``(obs, act, next_obs) -> bool [...]``, equal to the env's ``terminated``.
        env_kwargs: keyword arguments for ``gymnasium.make`` applied with ``model_obs=True``.
        wrappers: callables ``env -> env`` applied (in order) with ``model_obs=True``.
        notes: what the model observation adds to the standard one.
        obs_termination_fn: the termination on the *standard* observation (``make_env`` without
            ``model_obs``), for learners whose policy sees that observation (MBPO's rollouts). Defaults to
            ``termination_fn`` where the two observations are the same.
    """

    env_id: str
    reward_fn: RewardFn
    termination_fn: TerminationFn
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    wrappers: tuple[Callable[[Any], Any], ...] = ()
    notes: str = ""
    obs_termination_fn: TerminationFn | None = None

    def standard_termination(self) -> TerminationFn | None:
        """Termination on the standard observation, or None where dynarl only has it on ``model_obs``."""
        if self.obs_termination_fn is not None:
            return self.obs_termination_fn
        same_obs = not self.env_kwargs and not self.wrappers
        return self.termination_fn if same_obs or self.termination_fn is _never else None


# ----------------------------------------------------------------------------------------------- helpers


def _never(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Tasks without termination: all False, shape ``next_obs.shape[:-1]``."""
    return torch.zeros(next_obs.shape[:-1], dtype=torch.bool, device=next_obs.device)


def _sq_sum(x: Tensor) -> Tensor:
    return x.square().sum(dim=-1)


def _act(act: Tensor, like: Tensor) -> Tensor:
    return act.to(dtype=like.dtype)


# ----------------------------------------------------------------------------------------------- Pendulum


def pendulum_reward(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Pendulum-v1: ``-(th^2 + 0.1 thdot^2 + 0.001 u^2)``.

    ``th = atan2(o[1], o[0])`` (normalised angle *before* the step), ``thdot = o[2]`` and
    ``u = clip(a[0], -2, 2)`` (the env clips the torque before computing the cost). No env_kwargs.
    """
    th = torch.atan2(obs[..., 1], obs[..., 0])
    thdot = obs[..., 2]
    u = _act(act, obs)[..., 0].clamp(-2.0, 2.0)
    return -(th.square() + 0.1 * thdot.square() + 0.001 * u.square())


# ----------------------------------------------------------------------------------------------- cart-pole


def cartpole_reward(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """dynarl/ContinuousCartPole-v0: ``+1`` every step, the terminating one included."""
    return torch.ones(next_obs.shape[:-1], dtype=next_obs.dtype, device=next_obs.device)


def cartpole_termination(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """dynarl/ContinuousCartPole-v0: ``|o'[0]| > 2.4`` or ``|o'[2]| > 12 deg`` (float32-rounded thresholds)."""
    return (next_obs[..., 0].abs() > X_THRESHOLD) | (next_obs[..., 2].abs() > THETA_THRESHOLD)


# ----------------------------------------------------------------------------------------------- InvertedPendulum


def inverted_pendulum_termination(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """InvertedPendulum-v5: ``not all(isfinite(o'))`` or ``|o'[1]| > 0.2`` (pole angle, rad)."""
    return ~torch.isfinite(next_obs).all(dim=-1) | (next_obs[..., 1].abs() > 0.2)


def inverted_pendulum_reward(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """InvertedPendulum-v5: ``1`` while not terminated, ``0`` on the terminating step."""
    return (~inverted_pendulum_termination(obs, act, next_obs)).to(next_obs.dtype)


# ----------------------------------------------------------------------------------------------- InvertedDoublePendulum


def inverted_double_pendulum_termination(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """InvertedDoublePendulum-v5: ``tip_z <= 1`` with ``tip_z = o'[10]`` (appended by the model_obs wrapper)."""
    return next_obs[..., 10] <= 1.0


def inverted_double_pendulum_reward(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """InvertedDoublePendulum-v5: ``10 * alive - (0.01 x^2 + (z - 2)^2) - (1e-3 v1^2 + 5e-3 v2^2)``.

    Needs the model_obs wrapper, which appends ``[x, z, v1, v2] = o'[9:13]``: the pole tip
    ``site_xpos[0]`` (x, z) and the unclipped hinge velocities ``qvel[1:3]``. ``alive = tip_z > 1``.
    """
    x, z, v1, v2 = next_obs[..., 9], next_obs[..., 10], next_obs[..., 11], next_obs[..., 12]
    alive = (z > 1.0).to(next_obs.dtype)
    return 10.0 * alive - (0.01 * x.square() + (z - 2.0).square()) - (1e-3 * v1.square() + 5e-3 * v2.square())


# ----------------------------------------------------------------------------------------------- Reacher, Pusher


def reacher_reward(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Reacher-v5: ``-||fingertip - target|| - sum(a^2)``, after the step.

    ``fingertip - target`` is ``o'[8:10]`` (its z component is always 0). No env_kwargs.
    """
    return -torch.linalg.vector_norm(next_obs[..., 8:10], dim=-1) - _sq_sum(_act(act, next_obs))


def pusher_reward(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Pusher-v5: ``-||object - goal|| - 0.1 sum(a^2) - 0.5 ||object - tips_arm||``, after the step.

    ``tips_arm = o'[14:17]``, ``object = o'[17:20]``, ``goal = o'[20:23]``. No env_kwargs.
    """
    tips, obj, goal = next_obs[..., 14:17], next_obs[..., 17:20], next_obs[..., 20:23]
    dist = torch.linalg.vector_norm(obj - goal, dim=-1)
    near = torch.linalg.vector_norm(obj - tips, dim=-1)
    return -dist - 0.1 * _sq_sum(_act(act, next_obs)) - 0.5 * near


# ----------------------------------------------------------------------------------------------- locomotion

_X_IN_OBS = {"exclude_current_positions_from_observation": False}


def half_cheetah_reward(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """HalfCheetah-v5: ``(x' - x) / 0.05 - 0.1 sum(a^2)``; x = ``o[0]`` needs
    ``exclude_current_positions_from_observation=False``. dt = 0.01 * frame_skip 5."""
    return (next_obs[..., 0] - obs[..., 0]) / 0.05 - 0.1 * _sq_sum(_act(act, next_obs))


def swimmer_reward(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Swimmer-v5: ``(x' - x) / 0.04 - 1e-4 sum(a^2)``; x = ``o[0]`` needs
    ``exclude_current_positions_from_observation=False``. dt = 0.01 * frame_skip 4."""
    return (next_obs[..., 0] - obs[..., 0]) / 0.04 - 1e-4 * _sq_sum(_act(act, next_obs))


def _hopper_healthy(next_obs: Tensor) -> Tensor:
    state = next_obs[..., 2:]  # qpos[2:] and raw qvel
    z, angle = next_obs[..., 1], next_obs[..., 2]
    return ((state > -100.0) & (state < 100.0)).all(dim=-1) & (z > 0.7) & (z < math.inf) & (angle > -0.2) & (angle < 0.2)


def hopper_termination(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Hopper-v5: not healthy, where healthy = ``all(-100 < o'[2:] < 100)`` (qpos[2:], raw qvel),
    ``0.7 < z = o'[1]`` and ``-0.2 < angle = o'[2] < 0.2`` (all strict).

    Needs ``exclude_current_positions_from_observation=False`` and the wrapper that observes the raw qvel.
    """
    return ~_hopper_healthy(next_obs)


def hopper_obs_termination(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Hopper-v5 on the standard observation ``[qpos[1:], clip(qvel, -10, 10)]``: z = o'[0], angle = o'[1],
    and ``-100 < o'[1:] < 100``. The velocities are clipped in this observation, so the env's |qvel| >= 100
    rule cannot be seen (it needs a physically absurd state; MBPO's hand-written function has the same gap)."""
    state = next_obs[..., 1:]
    z, angle = next_obs[..., 0], next_obs[..., 1]
    healthy = ((state > -100.0) & (state < 100.0)).all(dim=-1) & (z > 0.7) & (angle > -0.2) & (angle < 0.2)
    return ~healthy


def hopper_reward(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Hopper-v5: ``(x' - x) / 0.008 + 1 * healthy(o') - 1e-3 sum(a^2)``; dt = 0.002 * frame_skip 4.

    The healthy reward is 0 on the terminating step. Same env_kwargs/wrapper as :func:`hopper_termination`.
    """
    healthy = _hopper_healthy(next_obs).to(next_obs.dtype)
    return (next_obs[..., 0] - obs[..., 0]) / 0.008 + healthy - 1e-3 * _sq_sum(_act(act, next_obs))


def _walker_healthy(next_obs: Tensor) -> Tensor:
    z, angle = next_obs[..., 1], next_obs[..., 2]
    return (z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0)


def walker2d_termination(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Walker2d-v5: not (``0.8 < z = o'[1] < 2`` and ``-1 < angle = o'[2] < 1``).

    Needs ``exclude_current_positions_from_observation=False``.
    """
    return ~_walker_healthy(next_obs)


def walker2d_obs_termination(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Walker2d-v5 on the standard observation ``[qpos[1:], clip(qvel)]``: z = o'[0], angle = o'[1]."""
    return ~_walker_healthy(torch.cat([next_obs[..., :1], next_obs], dim=-1))


def walker2d_reward(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Walker2d-v5: ``(x' - x) / 0.008 + 1 * healthy(o') - 1e-3 sum(a^2)``; dt = 0.002 * frame_skip 4.

    x = ``o[0]`` needs ``exclude_current_positions_from_observation=False``.
    """
    healthy = _walker_healthy(next_obs).to(next_obs.dtype)
    return (next_obs[..., 0] - obs[..., 0]) / 0.008 + healthy - 1e-3 * _sq_sum(_act(act, next_obs))


# Ant-v5 model observation: qpos (15) | qvel (14) | clip(cfrc_ext[1:], -1, 1) (78) | torso xpos x (1)
_ANT_NQV = 29
_ANT_CFRC = slice(29, 107)
_ANT_X = 107


def _ant_healthy(next_obs: Tensor) -> Tensor:
    z = next_obs[..., 2]
    return torch.isfinite(next_obs[..., :_ANT_NQV]).all(dim=-1) & (z >= 0.2) & (z <= 1.0)


def ant_termination(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Ant-v5: not healthy, healthy = ``all(isfinite(qpos, qvel = o'[:29]))`` and ``0.2 <= z = o'[2] <= 1``.

    Needs ``exclude_current_positions_from_observation=False``.
    """
    return ~_ant_healthy(next_obs)


def ant_obs_termination(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Ant-v5 on the standard observation ``[qpos[2:] (13), qvel (14), cfrc_ext]``: z = o'[0] and the
    finiteness of qpos[2:], qvel (x, y are not observed; they only go non-finite with the rest)."""
    z = next_obs[..., 0]
    return ~(torch.isfinite(next_obs[..., :27]).all(dim=-1) & (z >= 0.2) & (z <= 1.0))


def ant_reward(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Ant-v5: ``(x' - x) / 0.05 + healthy - 0.5 sum(a^2) - 5e-4 sum(clip(cfrc_ext, -1, 1)^2)``.

    x is the torso's ``xpos`` x, appended by the model_obs wrapper at ``o[107]`` (it lags ``qpos[0]`` by one
    physics sub-step, so ``o[0]`` would not be exact). The clipped contact forces are ``o'[29:107]``
    (world body 0 has none). dt = 0.01 * frame_skip 5. Needs ``exclude_current_positions_from_observation=False``.
    """
    act = _act(act, next_obs)
    forward = (next_obs[..., _ANT_X] - obs[..., _ANT_X]) / 0.05
    healthy = _ant_healthy(next_obs).to(next_obs.dtype)
    contact = 5e-4 * _sq_sum(next_obs[..., _ANT_CFRC])
    return forward + healthy - 0.5 * _sq_sum(act) - contact


# Humanoid-v5 model observation: qpos (24) | qvel (23) | cinert (130) | cvel (78) | qfrc_actuator (17)
# | cfrc_ext[1:] (78) | mass-centre x (1)
_HUM_CFRC = slice(272, 350)
_HUM_COM_X = 350


def humanoid_termination(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Humanoid-v5: not ``1 < z = o'[2] < 2``. Needs ``exclude_current_positions_from_observation=False``."""
    z = next_obs[..., 2]
    return ~((z > 1.0) & (z < 2.0))


def humanoid_obs_termination(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Humanoid-v5 on the standard observation ``[qpos[2:], ...]``: not ``1 < z = o'[0] < 2``."""
    z = next_obs[..., 0]
    return ~((z > 1.0) & (z < 2.0))


def humanoid_reward(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Humanoid-v5: ``1.25 (c' - c) / 0.015 + 5 healthy - 0.1 sum(a^2) - min(5e-7 sum(cfrc_ext^2), 10)``.

    ``c`` is the mass-centre x, appended by the model_obs wrapper at ``o[350]`` (Gymnasium's ``mass_center``,
    not in the standard observation). ``cfrc_ext[1:] = o'[272:350]`` (world body 0 has none).
    healthy = ``1 < o'[2] < 2``. dt = 0.003 * frame_skip 5.
    """
    act = _act(act, next_obs)
    forward = 1.25 * (next_obs[..., _HUM_COM_X] - obs[..., _HUM_COM_X]) / 0.015
    healthy = 5.0 * (~humanoid_termination(obs, act, next_obs)).to(next_obs.dtype)
    contact = (5e-7 * _sq_sum(next_obs[..., _HUM_CFRC])).clamp(max=10.0)
    return forward + healthy - 0.1 * _sq_sum(act) - contact


# ----------------------------------------------------------------------------------------------- registry

_TASKS: dict[str, TaskSpec] = {
    t.env_id: t
    for t in (
        TaskSpec("Pendulum-v1", pendulum_reward, _never, notes="Standard observation [cos th, sin th, thdot]."),
        TaskSpec(CARTPOLE_ID, cartpole_reward, cartpole_termination, notes="dynarl's continuous cart-pole."),
        TaskSpec("InvertedPendulum-v5", inverted_pendulum_reward, inverted_pendulum_termination),
        TaskSpec(
            "InvertedDoublePendulum-v5",
            inverted_double_pendulum_reward,
            inverted_double_pendulum_termination,
            wrappers=(_w.inverted_double_pendulum_wrapper,),
            notes="model_obs appends [tip_x, tip_z, qvel[1], qvel[2]] (13 dims).",
        ),
        TaskSpec("Reacher-v5", reacher_reward, _never),
        TaskSpec("Pusher-v5", pusher_reward, _never),
        TaskSpec("HalfCheetah-v5", half_cheetah_reward, _never, dict(_X_IN_OBS), notes="model_obs keeps x (18 dims)."),
        TaskSpec(
            "Hopper-v5",
            hopper_reward,
            hopper_termination,
            dict(_X_IN_OBS),
            wrappers=(_w.hopper_wrapper,),
            notes="model_obs keeps x and observes raw (unclipped) qvel (12 dims).",
            obs_termination_fn=hopper_obs_termination,
        ),
        TaskSpec(
            "Walker2d-v5", walker2d_reward, walker2d_termination, dict(_X_IN_OBS), notes="model_obs keeps x (18 dims).", obs_termination_fn=walker2d_obs_termination
        ),
        TaskSpec("Swimmer-v5", swimmer_reward, _never, dict(_X_IN_OBS), notes="model_obs keeps x, y (10 dims)."),
        TaskSpec(
            "Ant-v5",
            ant_reward,
            ant_termination,
            dict(_X_IN_OBS),
            wrappers=(_w.ant_wrapper,),
            notes="model_obs keeps x, y and appends the torso xpos x (108 dims).",
            obs_termination_fn=ant_obs_termination,
        ),
        TaskSpec(
            "Humanoid-v5",
            humanoid_reward,
            humanoid_termination,
            dict(_X_IN_OBS),
            wrappers=(_w.humanoid_wrapper,),
            notes="model_obs keeps x, y and appends the mass-centre x (351 dims).",
            obs_termination_fn=humanoid_obs_termination,
        ),
    )
}


def get_task(env_id: str) -> TaskSpec | None:
    """The :class:`TaskSpec` of ``env_id``, or ``None`` if dynarl has no reward function for it."""
    return _TASKS.get(env_id)


def registered_tasks() -> list[str]:
    """Ids of the tasks with a known reward/termination function, sorted."""
    return sorted(_TASKS)
