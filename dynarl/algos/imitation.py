"""Imitation beyond plain behaviour cloning: goal-conditioned BC with hindsight goals, and DAgger.

GCBC (seed 001, D2), on the gradient-step clock: BC's loop with the dataset source swapped for a hindsight
relabeller::

    D <- the dataset's episodes; standardise observations (goal dims with the achieved dims' statistics)
    repeat steps times:
        sample (s_t, a_t) from D and t' ~ U(t, T] of the same episode; g <- achieved(s_t')
        learner.update(([s_t, g], a_t))                    max_theta E log pi_theta(a_t | s_t, g)

DAgger (seed 001, D3; Ross, Gordon & Bagnell 2011, Algorithm 3.1), on the env-step clock::

    D <- initial_episodes episodes of the expert, labelled by it (beta_1 = 1: the first policy is the expert)
    repeat:
        train pi_theta on D for updates_per_iteration BC steps
        run pi_i = beta pi* + (1 - beta) pi_theta for rollout_steps env steps     (the env collector)
        D_pi <- {(s, pi*(s)) : s visited}                   ask the expert to label every visited state
        D <- D u D_pi

The expert oracle is ``expert=``: a ``"module:function"`` returning env actions (the scripted experts of
:mod:`dynarl.envs.experts`), or a dynarl run folder or checkpoint of any trained agent, whose deterministic
policy is then queried. D is a run part, like a replay buffer, so a resumed run continues exactly.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from dynarl import checkpoint as ckpt
from dynarl.algos.base import Algorithm, Attributes
from dynarl.algos.offline import OfflineAlgorithm, OfflineConfig
from dynarl.algos.registry import get_algorithm, register
from dynarl.config import RunConfig, one_of, param, positive, unit_interval
from dynarl.data.replay import ReplayBuffer
from dynarl.envs.experts import resolve_expert, scripted_expert
from dynarl.envs.point_maze import ACHIEVED_GOAL_DIMS, DESIRED_GOAL_DIMS
from dynarl.envs.spaces import BOX, DISCRETE, require_agent_fits
from dynarl.errors import ConfigError
from dynarl.learners.base import flat_dim
from dynarl.learners.bc import BCLearner, BCLearnerConfig, unread_batch_size
from dynarl.seeding import set_torch_rng_state, torch_rng_state
from dynarl.sources.hindsight import STRATEGIES, HindsightRelabeller

# --- goal-conditioned behaviour cloning ------------------------------------------------------------------------


def _goal_dims(x) -> str | None:
    return None if len(x) > 0 and all(int(i) >= 0 for i in x) else "must be a non-empty list of observation indices"


@dataclass
class GCBCConfig(OfflineConfig):
    algo: str = "gcbc"
    steps: int = 20_000
    achieved_goal_dims: tuple[int, ...] = param(ACHIEVED_GOAL_DIMS, _goal_dims, "observation dims holding the state reached (dynarl/PointMaze-v0: x, y)")
    desired_goal_dims: tuple[int, ...] = param(DESIRED_GOAL_DIMS, _goal_dims, "observation dims holding the goal, replaced by a relabelled one (same length)")
    goal_strategy: str = param("future", one_of(*STRATEGIES), "future: g from s_t', t' ~ U(t, T] of the same episode (HER); final: g from s_T")
    learner: BCLearnerConfig = field(default_factory=lambda: BCLearnerConfig(hidden_sizes=(256, 256), activation="relu", lr=1e-3))

    def check(self) -> str | None:
        if len(self.achieved_goal_dims) != len(self.desired_goal_dims):
            return f"achieved_goal_dims {list(self.achieved_goal_dims)} and desired_goal_dims {list(self.desired_goal_dims)} must have the same length"
        return unread_batch_size(self.learner, self.algo) or super().check()


@register
class GCBC(OfflineAlgorithm):
    """Goal-conditioned behaviour cloning with hindsight goals: reach the states any trajectory reached.

    max_theta E log pi_theta(a_t | s_t, g) (seed 001),
    g the achieved goal of a later state of the same episode. Needs no rewards: any trajectories (noisy
    demonstrations, even a random walk) teach how to reach the states they visited."""

    name, config_cls, learner_cls = "gcbc", GCBCConfig, BCLearner
    action_spaces = (BOX, DISCRETE)
    needs_rewards = False

    def _make_source(self, episodes) -> HindsightRelabeller:
        """The hindsight relabeller over the dataset's episodes in place of its plain transitions."""
        cfg = self.cfg
        demos = [{"obs": ep["obs"], "act": self.actions.from_env(ep["act"])} for ep in episodes.split()]  # the learner acts in [-1, 1]
        return HindsightRelabeller(demos, cfg.achieved_goal_dims, cfg.desired_goal_dims, self.device, cfg.goal_strategy, name=cfg.dataset)


# --- DAgger ----------------------------------------------------------------------------------------------------

Labeller = Callable[[np.ndarray], np.ndarray]  # observations [B, ...] -> expert env actions [B, ...]


@dataclass
class DAggerConfig(RunConfig):
    algo: str = "dagger"
    env: str = "Pendulum-v1"
    steps: int = param(10_000, positive, "total env steps (the initial demonstrations included)")
    expert: str = param("", help="the oracle: 'module:function' (obs -> env action), or a dynarl run folder or checkpoint whose deterministic policy labels states; empty: the env's scripted expert (Pendulum-v1: dynarl.envs.experts:pendulum_swing_up)")
    initial_episodes: int = param(1, positive, "episodes of the expert itself to start D with (beta_1 = 1)")
    rollout_steps: int = param(1_000, positive, "env steps of the current policy per DAgger iteration, each labelled by the expert")
    updates_per_iteration: int = param(1_000, positive, "BC gradient steps on D each time an iteration's labels (or the demonstrations) have been added")
    beta: float = param(0.0, unit_interval, "probability that the expert, not the learner, picks each rollout action (pi_i = beta pi* + (1 - beta) pi_theta)")
    batch_size: int = param(256, positive, "minibatch size")
    buffer_size: int = param(1_000_000, positive, "rows D can hold (expert labels); the oldest go first beyond it")
    eval_every: int = param(2_000, positive, "env steps between evaluations")
    checkpoint_every: int = param(2_000, positive, "env steps between checkpoints (one is also written at the end)")
    learner: BCLearnerConfig = field(default_factory=lambda: BCLearnerConfig(hidden_sizes=(256, 256), activation="relu", lr=1e-3))

    def check(self) -> str | None:
        return unread_batch_size(self.learner, self.algo)


def load_expert(spec: str, device: str = "cpu", spaces: tuple[gym.Space, gym.Space] | None = None, env_name: str = "") -> Labeller:
    """The oracle ``spec`` names: a scripted ``"module:function"`` applied row by row, or a trained dynarl agent
    (run folder, checkpoint file, or ``save()`` path without its suffix) queried deterministically.

    Loading an agent builds it, which reseeds the global generators; their states are restored, so naming an
    agent as the expert changes nothing else in the run."""
    path = ckpt.resolve_path(spec)
    if not path.exists():
        fn = resolve_expert(spec)
        return lambda obs: np.stack([np.asarray(fn(o)) for o in obs])
    if path.is_dir():
        try:
            algo = json.loads((path / "config.json").read_text())["algo"]
        except (OSError, ValueError, KeyError):
            raise ConfigError(f"expert={spec!r} is a folder but not a dynarl run folder (no readable config.json naming its algorithm)") from None
    else:
        algo = ckpt.read_header(path)["algo"]
    states = torch_rng_state(), random.getstate(), np.random.get_state()
    agent = get_algorithm(algo).load(path, policy_only=True, device=device, quiet=True)
    set_torch_rng_state(states[0])
    random.setstate(states[1])
    np.random.set_state(states[2])
    if spaces is not None:
        require_agent_fits(f"expert={spec!r} ({agent.name.upper()} on {agent.cfg.env})", (agent.observation_space, agent.action_space), f"env {env_name}",
                           spaces, "name an expert trained on this env")
    return lambda obs: np.asarray(agent.policy_action(obs, deterministic=True))


@register
class DAgger(Algorithm):
    """DAgger (Ross et al. 2011): an expert labels the states the learner's own policy visits; BC on them all.

    Dataset aggregation (seed 001): BC on every state the learner's own policy visits,
    labelled by the expert, so the training distribution follows p_pi_theta(s) instead of the expert's
    (BC's compounding error O(eps T^2) becomes O(eps T))."""

    name, config_cls = "dagger", DAggerConfig
    action_spaces = (BOX, DISCRETE)
    observation_spaces = (BOX,)
    run_parts = ("dataset",)

    def _setup(self) -> None:
        cfg = self.cfg
        self.collector = self.env_collector()
        self.expert = load_expert(cfg.expert or scripted_expert(self.env_name), str(self.device), (self.observation_space, self.action_space), self.env_name)
        self.learner = BCLearner(cfg.learner, self.observation_space, self.action_space, self.device)
        act_dim = 1 if not self.actions.continuous else flat_dim(self.action_space)
        self.dataset = ReplayBuffer(cfg.buffer_size, flat_dim(self.observation_space), act_dim, self.device)
        self.expert_labels = 0  # states the expert was asked to label: DAgger's cost
        self.iteration = 0  # policies trained so far (0: the expert is still demonstrating)
        self.iteration_steps = 0  # env steps of the current iteration's rollout

    def parts(self) -> dict[str, Any]:
        return {"learner": self.learner, "dataset": self.dataset, "dagger": Attributes(self, "expert_labels", "iteration", "iteration_steps")}

    @property
    def demonstrating(self) -> bool:
        return self.iteration == 0 and self.collector.episodes < self.cfg.initial_episodes

    def train_step(self) -> None:
        cfg = self.cfg
        demonstrating = self.demonstrating
        obs = self.collector.observe()
        expert_act = self.expert(obs)
        env_act = expert_act
        if not demonstrating:
            env_act = self.policy_action(obs, deterministic=True)
            if cfg.beta > 0:
                use_expert = self.np_rng.random(len(obs)) < cfg.beta
                env_act = np.where(use_expert.reshape(-1, *[1] * (env_act.ndim - 1)), expert_act, env_act)
            self.iteration_steps += len(obs)
        t = self.collector.step(env_act)
        self.dataset.add(t.obs, self.actions.from_env(expert_act).reshape(len(obs), -1), t.reward, t.next_obs, t.terminated, t.truncated)
        self.expert_labels += len(obs)
        # the policy is retrained as soon as its iteration's data is in D, so the current policy has seen every label
        if (demonstrating and not self.demonstrating) or (not demonstrating and self.iteration_steps >= cfg.rollout_steps):
            self._fit()

    def _fit(self) -> None:
        """One DAgger iteration's training: BC on the aggregated D, its input standardised with D's statistics
        (refitted every iteration: the first demonstration alone may barely move, e.g. balancing from an upright start)."""
        if hasattr(self.learner.policy, "obs_normalizer"):
            self.learner.fit_normalizer(self.dataset.storage["obs"][: len(self.dataset)])
        for _ in range(self.cfg.updates_per_iteration):
            self._last_metrics = self.learner.update(self.dataset.sample(self.cfg.batch_size))
        self.iteration += 1
        self.iteration_steps = 0

    def budget_notes(self, total: int) -> list[str]:
        horizon = self.eval_env.spec.max_episode_steps if self.eval_env.spec else None
        if horizon and total <= self.cfg.initial_episodes * horizon:
            return [f"{total} steps may end inside the expert's first {self.cfg.initial_episodes} demonstration episode(s) (up to {horizon} steps each): "
                    f"the policy is trained only once they are in D; pass more than {self.cfg.initial_episodes * horizon} steps"]
        return []

    def metrics(self) -> dict[str, float]:
        return {**super().metrics(), "expert_labels": float(self.expert_labels), "dagger_iteration": float(self.iteration), "dataset_size": float(len(self.dataset))}

    def summary(self) -> dict:
        return {**super().summary(), "expert_labels": self.expert_labels, "dagger_iterations": self.iteration}
