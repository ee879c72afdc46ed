"""Vectorised seeds: S independent agents of one off-policy algorithm, trained in lock-step in one process.

Each seed is an ordinary agent: its own env collector, replay buffer, numpy and torch generators, run
folder and checkpoints, so ``dynarl resume``, ``eval`` and ``Algorithm.load`` work on it alone, and a
separate run's checkpoint can join a vectorised one. What the seeds share is one learner whose weights
carry a leading seed dimension (:func:`dynarl.learners.vectorized.vectorize`), so acting and each gradient
update is one batched call for all seeds:

    off-policy, for each vector step (every seed: n_envs env steps):
        the learner's actions for every seed's observations, in one call (once learning_starts is reached)
        each seed explores with its own rule and generator, steps its own envs, stores its own transitions
        (the Dyna loop: each seed in turn fits its own model and generates its own rollouts when due)
        for each update due: a minibatch from every seed's buffer, one update of the stacked learner
    on-policy, for each iteration:
        n_steps times: the learner's step (a, log pi(a|s), V(s)) for every seed at once; each seed steps its
        own envs into its own rollout
        one update of the stacked learner on the stacked rollouts

The process has one torch generator; :class:`SeedGenerators` keeps one state per seed and makes seed i's
the process's own while seed i draws (minibatch indices, policy noise) or is checkpointed, so seed i draws
exactly what a separate run with seed i draws. Supported: the algorithms that use :class:`OffPolicyAlgorithm`'s
or :class:`OnPolicyAlgorithm`'s loop unchanged with a learner that declares ``per_seed`` (SAC, TD3, DDPG, DQN,
Double DQN, PPO, A2C, REINFORCE), and the Dyna loop (MBPO, Dyna-TD3, Dyna-DDPG): its model-free updates, most of
its time, run stacked; the seeds' ensembles are fitted one after another, since each stops early on its own
holdout loss.
"""

from __future__ import annotations

import contextlib
from dataclasses import fields
from typing import Any, ClassVar

import torch

from dynarl.algos.base import Algorithm
from dynarl.algos.off_policy import OffPolicyAlgorithm
from dynarl.algos.on_policy import OnPolicyAlgorithm
from dynarl.algos.registry import ALGORITHMS
from dynarl.config import to_dict
from dynarl.errors import ConfigError
from dynarl.learners.vectorized import after_update, vectorize
from dynarl.seeding import set_torch_rng_state, torch_rng_state


class SeedGenerators:
    """One torch generator state per seed; inside ``use(i)`` seed i's state is the process's generator."""

    def __init__(self, states: list[dict]):
        self.states = states

    @contextlib.contextmanager
    def use(self, i: int):
        outer = torch_rng_state()
        set_torch_rng_state(self.states[i])
        try:
            yield
        finally:
            self.states[i] = torch_rng_state()
            set_torch_rng_state(outer)


def supports(cls: type[Algorithm]) -> bool:
    """Whether ``cls`` trains with vectorised seeds: the plain off-policy or on-policy loop, and a learner that
    declares its per-seed methods."""
    loops = (OffPolicyAlgorithm, OnPolicyAlgorithm)
    plain = any(issubclass(cls, loop) and cls.train_step is loop.train_step for loop in loops)
    return plain and bool(getattr(cls.learner_cls, "per_seed", ()))


def require_support(cls: type[Algorithm]) -> None:
    if not supports(cls):
        raise ConfigError(f"{cls.name.upper()} does not train with vectorised seeds; these do: {', '.join(supported_names())}. Run its seeds one by one (or as a sweep)")


def supported_names() -> list[str]:
    import dynarl.algos  # noqa: F401  (importing the package registers every algorithm)

    return sorted(name for name, cls in ALGORITHMS.items() if supports(cls))


class SeedVector:
    """S agents of one algorithm and config (seeds apart) trained as one; see the module docstring."""

    def __init__(self, agents: list[Algorithm], generator_states: list[dict]):
        first = agents[0]
        require_support(type(first))
        same = {k: v for k, v in to_dict(first.cfg).items() if k != "seed"}
        for agent in agents[1:]:
            if type(agent) is not type(first) or {k: v for k, v in to_dict(agent.cfg).items() if k != "seed"} != same:
                raise ConfigError("vectorised seeds must share the algorithm and every config value but the seed")
        if len({a.cfg.seed for a in agents}) != len(agents):
            raise ConfigError(f"the seeds {[a.cfg.seed for a in agents]} repeat one; give distinct seeds")
        if len({a.steps() for a in agents}) != 1:
            raise ConfigError(f"the seeds are at different steps ({[a.steps() for a in agents]}); vectorised seeds move in lock-step, so resume them one by one")
        self.agents = agents
        self.generators = SeedGenerators(generator_states)
        self.learner = vectorize([a.learner for a in agents], first.observation_space, first.action_space, self.generators.use)

    runner: ClassVar[Any] = None  # dynarl.run.seeds, bound when dynarl is imported: learn() goes through it

    @classmethod
    def make(cls, algo: str, env: str | None = None, seeds=range(8), **overrides) -> SeedVector:
        """``SeedVector.make("sac", "Pendulum-v1", seeds=range(8), **{"learner.actor_lr": 1e-3})``: the
        algorithm's preset and these overrides, one agent per seed."""
        from dynarl.algos.registry import build_config, get_algorithm

        algo_cls = get_algorithm(algo)
        configs = [build_config(algo_cls.name, env, {**overrides, "seed": int(seed)}) for seed in seeds]
        return cls.from_configs(algo_cls, configs)

    @classmethod
    def from_configs(cls, algo_cls: type[Algorithm], configs: list) -> SeedVector:
        """Fresh agents, each built (and its networks initialised) exactly as a separate run with its seed."""
        require_support(algo_cls)
        agents, states = [], []
        for cfg in configs:
            agents.append(algo_cls(config=cfg))
            states.append(torch_rng_state())  # each agent reseeds the process: its stream continues from here
        return cls(agents, states)

    @classmethod
    def from_states(cls, algo_cls: type[Algorithm], states: list[dict], **run_overrides) -> SeedVector:
        """Agents restored from checkpoints (of a vectorised run or of separate runs), each with its torch stream."""
        require_support(algo_cls)
        agents, generators = [], []
        for state in states:
            agents.append(algo_cls.from_state(state, **run_overrides))
            generators.append(torch_rng_state())  # load_state_dict restored this agent's stream
        return cls(agents, generators)

    def steps(self) -> int:
        return self.agents[0].steps()

    def learn(self, total_steps: int | None = None, out=None) -> SeedVector:
        """Train every seed to ``total_steps`` (default: the config's); with ``out``, a seeds folder with a run
        folder per seed (``out/s0`` ...: logs, evaluations, checkpoints; ``dynarl resume out`` continues them)."""
        return self.runner.learn(self, total_steps, out)

    def train_step(self) -> None:
        if isinstance(self.agents[0], OnPolicyAlgorithm):
            self._on_policy_step()
        else:
            self._off_policy_step()

    def _on_policy_step(self) -> None:
        """n_steps lock-step vector steps into every seed's rollout, then one update of the stacked learner."""
        agents = self.agents
        for agent in agents:
            agent.start_collection()
        for _ in range(agents[0].cfg.n_steps):
            act, log_prob, value = self.learner.step(torch.stack([a.observation() for a in agents]))
            for i, agent in enumerate(agents):
                agent.collect_step((act[i], log_prob[i], value[i]))
        last_value = self.learner.value_of(torch.stack([a.observation() for a in agents]))
        rollouts = [agent.rollout.finish(last_value[i]) for i, agent in enumerate(agents)]
        self._distribute(self.learner.update(stack_fields(rollouts)))

    def _distribute(self, metrics: dict[str, torch.Tensor]) -> None:
        after_update(self.learner)
        for i, agent in enumerate(self.agents):
            agent._last_metrics = {k: v[i] for k, v in metrics.items()}

    def _off_policy_step(self) -> None:
        agents = self.agents
        before = agents[0].env_steps
        given: torch.Tensor | list[None] = [None] * len(agents)
        if agents[0].acting():
            given = self.learner.act(torch.stack([a._obs_tensor(a.collector.observe()) for a in agents]), deterministic=False)
        for agent, act in zip(agents, given, strict=True):
            agent.collect(act)
        if type(agents[0]).prepare_updates is not OffPolicyAlgorithm.prepare_updates:
            for i, agent in enumerate(agents):  # the Dyna loop's model fits and rollouts, each seed in turn
                with self.generators.use(i):
                    agent.prepare_updates(before)
        n = agents[0].updates_due(before)
        rounds = [agent.round_batches(n) for agent in agents]  # lazy: each seed draws under its own streams below
        for _ in range(n):
            batches = []
            for i, draw in enumerate(rounds):
                with self.generators.use(i):
                    batches.append(next(draw))
            self._distribute(self.learner.update(stack_fields(batches)))

    def close(self) -> None:
        for agent in self.agents:
            agent.close()


def stack_fields(items: list):
    """One Batch (or Rollout) whose fields are the seeds' fields stacked on a leading dimension (None stays None)."""
    out = {}
    for f in fields(items[0]):
        values = [getattr(item, f.name) for item in items]
        out[f.name] = None if values[0] is None else torch.stack(values)
    return type(items[0])(**out)
