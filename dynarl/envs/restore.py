"""Copy an env's state and put it back: the simulator of MCTS with a true model (seed 001's MCTS over a known
dynamics, AlphaZero's "perfect simulator").

``snapshot(env)`` returns a small, deep-copyable dict; ``restore(env, snap)`` puts it into ``env`` (the same env
or another instance made the same way), after which ``env.step`` continues exactly as the snapshotted env
would (bit-identical for deterministic envs; for stochastic ones too while ``rng=True`` restores the env's
``np_random``). What a snapshot holds:

* the unwrapped env's dynamics state: ``get_state()`` / ``set_state(state)`` when the env has them (dynarl's
  board games), else the attributes of a known env class: Gymnasium's ``CartPole-v1`` (``state``,
  ``steps_beyond_terminated``), ``Pendulum-v1``, ``MountainCar-v0``, ``MountainCarContinuous-v0``,
  ``Acrobot-v1`` (``state``), the toy-text ``FrozenLake-v1`` / ``CliffWalking-v0`` (``s``, ``lastaction``) and
  ``Taxi-v3`` (plus ``fickle_step``, ``taxi_orientation``), dynarl's ``DynaMaze-v0`` and
  ``ContinuousCartPole-v0`` (``state``);
* every ``TimeLimit``'s elapsed steps (so truncation happens at the same step), and ``OrderEnforcing`` is
  told the env was reset (a fresh sim env can be stepped right after ``restore``);
* the state of wrappers that define ``get_wrapper_state()`` / ``set_wrapper_state(state)``
  (:class:`dynarl.envs.opponents.VersusOpponent`);
* the state of ``env.unwrapped.np_random``.

Other wrappers are passed through: observation, action and reward wrappers are assumed stateless, and
bookkeeping wrappers (episode statistics, dynarl's episode recorder) do not change the dynamics. Wrappers
whose state changes what the env returns (running normalisers, frame stacks, delays, sticky actions) and
env classes not listed above raise :class:`dynarl.errors.EnvError` naming the fix.
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np

from dynarl.errors import EnvError

_FIX = "use muzero (a learned model) instead, or give the env get_state()/set_state()"

# Unwrapped env class name -> the attributes that are its whole dynamics state.
_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "gymnasium.envs.classic_control.cartpole.CartPoleEnv": ("state", "steps_beyond_terminated"),
    "gymnasium.envs.classic_control.pendulum.PendulumEnv": ("state", "last_u"),
    "gymnasium.envs.classic_control.mountain_car.MountainCarEnv": ("state",),
    "gymnasium.envs.classic_control.continuous_mountain_car.Continuous_MountainCarEnv": ("state",),
    "gymnasium.envs.classic_control.acrobot.AcrobotEnv": ("state",),
    "gymnasium.envs.toy_text.frozen_lake.FrozenLakeEnv": ("s", "lastaction"),
    "gymnasium.envs.toy_text.cliffwalking.CliffWalkingEnv": ("s", "lastaction"),
    "gymnasium.envs.toy_text.taxi.TaxiEnv": ("s", "lastaction", "fickle_step", "taxi_orientation"),
    "dynarl.envs.dyna_maze.DynaMazeEnv": ("state",),
    "dynarl.envs.cartpole.ContinuousCartPoleEnv": ("state",),
}

# Wrappers whose own state changes observations, rewards or actions: a snapshot without it would not continue exactly.
_STATEFUL_WRAPPERS = frozenset({"NormalizeObservation", "NormalizeReward", "FrameStackObservation", "DelayObservation", "StickyAction", "TimeAwareObservation", "MaxAndSkipObservation"})


def _class_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _env_name(env: gym.Env) -> str:
    spec = getattr(env.unwrapped, "spec", None)
    return spec.id if spec is not None else type(env.unwrapped).__name__


def _wrappers(env: gym.Env) -> list[gym.Wrapper]:
    """The wrappers from the outermost in."""
    chain = []
    while isinstance(env, gym.Wrapper):
        chain.append(env)
        env = env.env
    return chain


def _check(env: gym.Env) -> None:
    if not isinstance(env, gym.Env):
        raise EnvError(f"snapshot/restore need a gymnasium.Env, got {type(env).__name__}")
    for w in _wrappers(env):
        if type(w).__name__ in _STATEFUL_WRAPPERS:
            raise EnvError(f"MCTS with a true model needs an env whose state can be copied: {_env_name(env)} is wrapped in {type(w).__name__}, whose own state changes what the env returns; drop the wrapper, or {_FIX}")
    u = env.unwrapped
    if not (callable(getattr(u, "get_state", None)) and callable(getattr(u, "set_state", None))) and _class_name(u) not in _ATTRIBUTES:
        known = ", ".join(n.rsplit(".", 1)[1] for n in _ATTRIBUTES)
        raise EnvError(f"MCTS with a true model needs an env whose state can be copied: dynarl cannot copy the state of {_env_name(env)} ({type(u).__name__}; it can for {known} and the board games); {_FIX}")


def check_restorable(env: gym.Env) -> None:
    """Raise :class:`EnvError` (one line, naming the fix) unless :func:`snapshot`/:func:`restore` support ``env``."""
    _check(env)


def is_restorable(env: gym.Env) -> bool:
    try:
        _check(env)
    except EnvError:
        return False
    return True


def snapshot(env: gym.Env) -> dict[str, Any]:
    """The state of ``env`` (see the module docstring) as a deep-copied dict: ``restore`` it any number of times."""
    _check(env)
    u = env.unwrapped
    if callable(getattr(u, "get_state", None)):
        core = u.get_state()
    else:
        core = {name: getattr(u, name, None) for name in _ATTRIBUTES[_class_name(u)]}
    chain = _wrappers(env)
    rng = getattr(u, "_np_random", None)  # not u.np_random: reading it would create (and seed) one
    snap = {
        "env": _class_name(u),
        "core": core,
        "elapsed_steps": [w._elapsed_steps for w in chain if isinstance(w, gym.wrappers.TimeLimit)],
        "wrappers": [(type(w).__name__, w.get_wrapper_state()) for w in chain if callable(getattr(type(w), "get_wrapper_state", None))],
        "rng": None if rng is None else rng.bit_generator.state,
    }
    return copy.deepcopy(snap)


def restore(env: gym.Env, snap: dict[str, Any], *, rng: bool = True) -> None:
    """Put ``snap`` (from :func:`snapshot`) into ``env``, an instance of the same env class with the same time
    limits and stateful wrappers. ``rng=False`` leaves ``env``'s random stream as it is (fresh outcomes for a
    stochastic env instead of the snapshotted ones)."""
    _check(env)
    u = env.unwrapped
    if snap.get("env") != _class_name(u):
        raise EnvError(f"cannot restore a snapshot of {snap.get('env')} into {_class_name(u)}: restore into an env made like the snapshotted one")
    chain = _wrappers(env)
    limits = [w for w in chain if isinstance(w, gym.wrappers.TimeLimit)]
    hooked = [w for w in chain if callable(getattr(type(w), "set_wrapper_state", None))]
    if len(limits) != len(snap["elapsed_steps"]) or [type(w).__name__ for w in hooked] != [name for name, _ in snap["wrappers"]]:
        raise EnvError(f"cannot restore: the snapshot's wrappers (time limits {len(snap['elapsed_steps'])}, stateful {[n for n, _ in snap['wrappers']]}) differ from the env's; make the env the same way as the snapshotted one")
    snap = copy.deepcopy(snap)  # the snapshot stays reusable whatever the env does to its arrays
    if callable(getattr(u, "set_state", None)):
        u.set_state(snap["core"])
    else:
        for name, value in snap["core"].items():
            setattr(u, name, value)
    for w, elapsed in zip(limits, snap["elapsed_steps"]):
        w._elapsed_steps = elapsed
    for w, (_, state) in zip(hooked, snap["wrappers"]):
        w.set_wrapper_state(state)
    for w in chain:
        if isinstance(w, gym.wrappers.OrderEnforcing):
            w._has_reset = True  # the restored env is mid-episode: stepping it is legitimate
        if isinstance(w, gym.wrappers.PassiveEnvChecker) and getattr(w, "checked_reset", True) is False:
            # A checker that never saw a reset compares the first step with a reset it does not have; skip its
            # first-step checks (the env class passed them wherever it was reset).
            w.checked_step = True
            if hasattr(w, "checked_data_reuse"):
                w.checked_data_reuse = True
    if rng and snap["rng"] is not None:
        generator = getattr(u, "_np_random", None)
        if generator is None or type(generator.bit_generator).__name__ != snap["rng"]["bit_generator"]:
            generator = np.random.Generator(getattr(np.random, snap["rng"]["bit_generator"])())
        generator.bit_generator.state = snap["rng"]
        u._np_random = generator
