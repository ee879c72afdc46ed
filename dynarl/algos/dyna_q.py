"""Tabular Q-learning and Dyna-Q (Sutton & Barto 2018, section 8.2, "Tabular Dyna-Q"; 000 Dyna-Q).

    for each real step:
        a = epsilon-greedy(Q, s);  s', r, terminated = env.step(a)
        Q(s, a) <- Q(s, a) + alpha [r + gamma (1 - terminated) max_a' Q(s', a') - Q(s, a)]     (direct RL)
        Model(s, a) <- (r, s', terminated)                                                    (model learning)
        repeat n times: (s, a) ~ previously observed pairs; r, s' = Model(s, a); the same Q update   (planning)

Q-learning is Dyna-Q with n = 0. The step size is alpha (one seed's pseudocode writes gamma there, a typo).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from dynarl.algos.base import Algorithm
from dynarl.algos.registry import register
from dynarl.config import RunConfig, non_negative, param, positive, unit_interval
from dynarl.data.batch import Batch
from dynarl.envs.spaces import DISCRETE
from dynarl.learners.tabular import QLearningConfig, TabularModel, TabularQLearner


@dataclass
class QLearningRunConfig(RunConfig):
    algo: str = "q_learning"
    env: str = "dynarl/DynaMaze-v0"
    steps: int = 20_000
    device: str = param("cpu", help="tables live on the CPU")
    eval_every: int = param(2_000, positive, "env steps between evaluations")
    eval_episodes: int = param(1, positive, "greedy episodes per evaluation (1 for deterministic tasks)")
    log_every: int = param(1_000, positive, "env steps between metric rows / console lines")
    epsilon: float = param(0.1, unit_interval, "probability of a uniformly random action (Sutton & Barto: 0.1)")
    planning_steps: int = param(0, non_negative, "n: planning updates from the learned model per real step (0: Q-learning)")
    env_kwargs: dict | None = param(None, help="extra keyword arguments for gymnasium.make (JSON object)")
    learner: QLearningConfig = field(default_factory=QLearningConfig)


@dataclass
class DynaQConfig(QLearningRunConfig):
    algo: str = "dyna_q"
    planning_steps: int = param(50, non_negative, "n: planning updates from the learned model per real step (Figure 8.2: 0, 5, 50)")


@register
class QLearning(Algorithm):
    """Tabular Q-learning (Watkins 1989) on Discrete observations and actions."""

    name, config_cls = "q_learning", QLearningRunConfig
    action_spaces = observation_spaces = (DISCRETE,)

    def _setup(self) -> None:
        self.collector = self.env_collector(1)
        self.learner = TabularQLearner(self.cfg.learner, self.observation_space, self.action_space, self.device, env_name=self.env_name)
        self.model = TabularModel(int(self.observation_space.n), int(self.action_space.n))
        self._last_metrics: dict[str, torch.Tensor] = {}

    def parts(self) -> dict:
        return {"learner": self.learner, "model": self.model}

    def policy_action(self, obs, deterministic: bool = True) -> np.ndarray:
        obs = np.asarray(obs)
        single = obs.ndim == 0
        act = self.learner.act(torch.as_tensor(obs.reshape(-1)), deterministic).numpy()
        return act[0] if single else act

    def train_step(self) -> None:
        envs, cfg = self.collector, self.cfg
        obs = envs.obs if envs.obs is not None else envs.reset()
        if self.np_rng.random() < cfg.epsilon:
            act = self.actions.sample_uniform(self.np_rng, 1)
        else:
            act = self.learner.act(torch.as_tensor(obs)).numpy()
        t = envs.step(act)
        real = Batch(*(torch.as_tensor(np.asarray(x, dtype=np.float32)).reshape(1) for x in (t.obs, act, t.reward, t.next_obs, t.terminated, t.truncated)))
        self._last_metrics = self.learner.update(real)
        if cfg.planning_steps > 0:
            self.model.update(int(t.obs[0]), int(act[0]), float(t.reward[0]), int(t.next_obs[0]), bool(t.terminated[0]))
            self.learner.update(self.model.sample(cfg.planning_steps))


@register
class DynaQ(QLearning):
    """Dyna-Q: Q-learning plus n planning updates per real step from a learned deterministic table model."""

    name, config_cls = "dyna_q", DynaQConfig
