"""DQN and Double DQN (Mnih et al. 2015; van Hasselt et al. 2016): the off-policy loop with a Q learner,
epsilon-greedy exploration on a linear schedule of env steps, and an n-step replay buffer.

    for each vector step (n_envs env steps):
        epsilon = linear(epsilon_start -> epsilon_end over epsilon_decay_steps env steps)
        a = uniform random with probability epsilon (always before learning_starts), else argmax_a Q(s, a)
        s', r, terminated, truncated = envs.step(a); the buffer stores each observation once
        for every train_freq env steps crossed: updates_per_step x learner.update(buffer.sample(batch_size))
            (a round that leaves the target network unchanged gets V'(s') of all its rows from one pass of it)

n-step returns are built in the buffer (:class:`~dynarl.data.stream_replay.StreamReplayBuffer`):
R = sum_{k<m} gamma^k r_{t+k} with m <= n, stopping at an episode's end, bootstrapped from s_{t+m} with
gamma^m (through a truncation, not through a termination). Observations are stored as the env gives them
(uint8 images stay uint8). ``DoubleDQN`` is DQN with ``learner.double_q=true``: the online network selects
a' and the target network evaluates it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from dynarl.algos.base import Attributes
from dynarl.algos.off_policy import OffPolicyAlgorithm, OffPolicyConfig
from dynarl.algos.registry import register
from dynarl.config import non_negative, param, positive, unit_interval
from dynarl.data.stream_replay import StreamReplayBuffer
from dynarl.envs.spaces import BOX, DISCRETE, IMAGE
from dynarl.learners.dqn import DQNLearner, DQNLearnerConfig


def epsilon_schedule(step: int, start: float, end: float, decay_steps: int) -> float:
    """Linear from ``start`` at step 0 to ``end`` at ``decay_steps``, then constant (SB3's linear schedule)."""
    frac = min(step / decay_steps, 1.0) if decay_steps > 0 else 1.0
    return start + frac * (end - start)


@dataclass
class DQNConfig(OffPolicyConfig):
    algo: str = "dqn"
    env: str = "CartPole-v1"
    steps: int = 50_000
    buffer_size: int = param(1_000_000, positive, "replay capacity (transitions; observations are stored once)")
    batch_size: int = param(32, positive, "minibatch size (SB3: 32)")
    learning_starts: int = param(100, positive, "uniform-random steps before learning starts (SB3: 100)")
    train_freq: int = param(4, positive, "env steps between update rounds (SB3: 4)")
    epsilon_start: float = param(1.0, unit_interval, "exploration rate at step 0")
    epsilon_end: float = param(0.05, unit_interval, "exploration rate after epsilon_decay_steps (SB3: 0.05)")
    epsilon_decay_steps: int = param(10_000, non_negative, "env steps of the linear decay from epsilon_start to epsilon_end")
    n_step: int = param(1, positive, "n-step returns, built in the buffer (1: the one-step target)")
    learner: DQNLearnerConfig = field(default_factory=DQNLearnerConfig)

    def check(self) -> str | None:
        if self.epsilon_end > self.epsilon_start:
            return f"epsilon_end={self.epsilon_end} is above epsilon_start={self.epsilon_start}: the schedule must decay; lower epsilon_end or raise epsilon_start"
        return super().check()


@dataclass
class DoubleDQNConfig(DQNConfig):
    algo: str = "double_dqn"
    learner: DQNLearnerConfig = field(default_factory=lambda: DQNLearnerConfig(double_q=True))


class DQNLoop:
    """What DQN changes in :class:`OffPolicyAlgorithm` (a mix-in): the stream replay buffer and epsilon-greedy
    exploration; ``DQN`` and ``DoubleDQN`` differ only in their config."""

    cfg: DQNConfig
    learner_cls = DQNLearner
    action_spaces = (DISCRETE,)
    observation_spaces = (BOX, IMAGE, DISCRETE)

    def _setup(self) -> None:
        super()._setup()
        self.exploration_rate = self.cfg.epsilon_start

    def _make_buffer(self) -> StreamReplayBuffer:
        cfg, space = self.cfg, self.observation_space
        uint8 = space.dtype == np.uint8
        obs_shape = () if space.shape is None else tuple(space.shape)
        obs_dtype = torch.uint8 if uint8 else (torch.int64 if obs_shape == () else torch.float32)
        space = self.action_space
        act_dtype = torch.uint8 if 0 <= int(space.start) and int(space.start) + int(space.n) <= 256 else torch.int64  # an action in 1 byte where it fits
        return StreamReplayBuffer(cfg.buffer_size, obs_shape, obs_dtype, (), act_dtype, cfg.n_envs, self.device, n_step=cfg.n_step, gamma=cfg.learner.gamma)

    def parts(self) -> dict:
        return {**super().parts(), "exploration": Attributes(self, "exploration_rate")}

    def _obs_tensor(self, obs: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(obs), device=self.device)

    def explore(self, obs: np.ndarray, policy_act: torch.Tensor | None = None) -> np.ndarray:
        """Epsilon-greedy: each sub-env's action is uniform with probability epsilon, else greedy."""
        cfg = self.cfg
        self.exploration_rate = epsilon_schedule(self.env_steps, cfg.epsilon_start, cfg.epsilon_end, cfg.epsilon_decay_steps)
        if not self.acting():
            return self.actions.sample_uniform(self.np_rng, cfg.n_envs)
        random = self.actions.sample_uniform(self.np_rng, cfg.n_envs)
        explores = self.np_rng.random(cfg.n_envs) < self.exploration_rate
        if policy_act is None and explores.all():
            return random  # no greedy action is needed: skip the network's forward pass
        return np.where(explores, random, self.policy_act(obs, policy_act))

    def round_batches(self, n: int):
        """The round's minibatches drawn in one call at the first request: DQN's update draws nothing random, and
        the buffer gives the draws of one call per update (about 80 us less per update on one CPU core). Where the
        round leaves the target network unchanged, V'(s') of all its rows comes from one pass of it
        (:meth:`DQNLearner.with_next_values`; with vectorised seeds, each seed's learner holds views of its weights)."""
        if n:
            size = self.cfg.batch_size
            yield from self.learner.with_next_values(self.buffer.sample(n * size), n).split(size)

    def metrics(self) -> dict[str, float]:
        return {**super().metrics(), "rollout/exploration_rate": self.exploration_rate}


@register
class DQN(DQNLoop, OffPolicyAlgorithm):
    """DQN: Q-learning with a deep network, replay and a target network, on Discrete actions."""

    name, config_cls = "dqn", DQNConfig


@register
class DoubleDQN(DQNLoop, OffPolicyAlgorithm):
    """Double DQN (van Hasselt et al. 2016): DQN whose target evaluates the online network's argmax."""

    name, config_cls = "double_dqn", DoubleDQNConfig
