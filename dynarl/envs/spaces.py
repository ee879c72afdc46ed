"""Observation and action spaces: which an algorithm supports, and the one place actions are scaled.

Continuous learners act in [-1, 1]^|A|; :class:`ActionAdapter` maps their actions to the env's bounds
(and back, for stored or expert actions). Discrete and MultiDiscrete actions pass through as integers.
:func:`require_space` turns an unsupported space into one :class:`EnvError` line that names the fix.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from dynarl.errors import EnvError

# the kinds an algorithm declares it supports
BOX = "box"  # a flat (1-D) float Box
IMAGE = "image"  # a Box of 2 or more dims (e.g. uint8 images), flattened or convolved by the learner
DISCRETE = "discrete"
MULTI_DISCRETE = "multi_discrete"

# what to use instead, by the kind of space the env has
_USE_INSTEAD = {
    "actions": {
        DISCRETE: "a discrete-action algorithm (DQN, PPO, A2C) or a continuous task such as Pendulum-v1",
        BOX: "a continuous-action algorithm (SAC, TD3, DDPG, PPO) or a discrete task such as CartPole-v1",
        MULTI_DISCRETE: "PPO, A2C or a task with Discrete or Box actions",
    },
    "observations": {
        BOX: "DQN, SAC or PPO for vector observations, or discretise the observation (gymnasium.wrappers.DiscretizeObservation)",
        DISCRETE: "a tabular method (q_learning, dyna_q) or DQN, which one-hot encodes Discrete observations",
        IMAGE: "an algorithm that takes image observations (DQN), or flatten them (gymnasium.wrappers.FlattenObservation)",
    },
}


def space_kind(space: gym.Space) -> str | None:
    """The kind of ``space`` (one of BOX, IMAGE, DISCRETE, MULTI_DISCRETE), or None when dynarl has no use for it."""
    if isinstance(space, spaces.Discrete):
        return DISCRETE
    if isinstance(space, spaces.MultiDiscrete):
        return MULTI_DISCRETE
    if isinstance(space, spaces.Box):
        return BOX if len(space.shape) == 1 else IMAGE
    return None


def require_space(env_name: str, observation_space: gym.Space, action_space: gym.Space, algo: str, *, actions: tuple[str, ...], observations: tuple[str, ...]) -> None:
    """EnvError (one line, with what to use instead) unless the spaces are of the supported kinds."""
    names = {BOX: "Box (flat)", IMAGE: "Box (image)", DISCRETE: "Discrete", MULTI_DISCRETE: "MultiDiscrete"}
    for what, space, allowed in (("actions", action_space, actions), ("observations", observation_space, observations)):
        kind = space_kind(space)
        if kind not in allowed:
            hint = _USE_INSTEAD[what].get(kind, "an env with supported spaces")
            raise EnvError(f"{algo} takes {' or '.join(names[k] for k in allowed)} {what}, but {env_name} has {space}; use {hint}")
    if isinstance(action_space, spaces.Box) and not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
        raise EnvError(f"{env_name} has unbounded actions {action_space}; {algo} needs finite action bounds (wrap the env in gymnasium.wrappers.ClipAction with finite bounds)")


def space_mismatch(ours: gym.Space, theirs: gym.Space) -> bool:
    """Whether a network built for ``ours`` cannot take (observations) or give (actions) values of ``theirs``:
    another kind of space, another shape, or another set of choices. Bounds and dtypes may differ."""
    if type(ours) is not type(theirs) or ours.shape != theirs.shape:
        return True
    if isinstance(ours, spaces.Discrete):
        return ours.n != theirs.n or ours.start != theirs.start
    if isinstance(ours, spaces.MultiDiscrete):
        return not np.array_equal(ours.nvec, theirs.nvec)
    return False


def require_agent_fits(agent: str, agent_spaces: tuple[gym.Space, gym.Space], where: str, their_spaces: tuple[gym.Space, gym.Space], fix: str) -> None:
    """EnvError (one line naming both spaces and ``fix``) unless a trained agent's (observation, action) spaces
    fit those of ``where`` (an env or a dataset it is asked to act on or label)."""
    for what, ours, theirs in zip(("observation", "action"), agent_spaces, their_spaces):
        if space_mismatch(ours, theirs):
            raise EnvError(f"{agent} was trained with {what} space {ours}, but {where} has {theirs}; {fix}")


@dataclass
class ActionAdapter:
    """Policy actions <-> env actions for one action space.

    Box: the policy acts in [-1, 1]^|A| and ``to_env`` rescales affinely to [low, high] (clipping first when
    ``clip``: for Gaussian policies whose samples leave the box); Discrete / MultiDiscrete: integers.
    """

    space: gym.Space
    clip: bool = False

    def __post_init__(self):
        self.continuous = isinstance(self.space, spaces.Box)
        if self.continuous:
            self.low = self.space.low.astype(np.float32)
            self.scale = ((self.space.high - self.space.low) / 2).astype(np.float32)
        elif isinstance(self.space, spaces.Discrete):
            self._bounds = (int(self.space.start), int(self.space.start) + int(self.space.n))  # integers' [low, high)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one policy action: (|A|,) for Box and MultiDiscrete, () for Discrete."""
        return tuple(self.space.shape)

    def to_env(self, act: np.ndarray) -> np.ndarray:
        if not self.continuous:
            return np.asarray(act).astype(np.int64)
        act = np.clip(act, -1.0, 1.0) if self.clip else act
        return (self.low + (act + 1.0) * self.scale).astype(np.float32)

    def from_env(self, env_act: np.ndarray) -> np.ndarray:
        """The policy action that ``to_env`` maps to ``env_act`` (stored or expert actions)."""
        if not self.continuous:
            return np.asarray(env_act).astype(np.int64)
        return ((np.asarray(env_act, dtype=np.float32) - self.low) / self.scale - 1.0).astype(np.float32)

    def sample_uniform(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` uniformly random policy actions (in [-1, 1] for Box), drawn from ``rng``."""
        if self.continuous:
            return rng.uniform(-1.0, 1.0, (n, *self.space.shape)).astype(np.float32)
        if isinstance(self.space, spaces.Discrete):
            return rng.integers(*self._bounds, n)  # the draws of integers(0, n) + start, without the add (DQN draws every step)
        return rng.integers(0, self.space.nvec, (n, *self.space.nvec.shape)) + self.space.start
