"""The value-based family on the trunk: DQN and Double DQN learn CartPole, tabular Q-learning solves the toy-text
tasks, and Dyna-Q reaches the Dyna maze's shortest path in fewer episodes than Q-learning (Sutton & Barto
Figure 8.2). Plus the algorithm-level details: the epsilon schedule, n-step and vector envs, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import dynarl
from dynarl.algos.dqn import epsilon_schedule
from dynarl.envs.dyna_maze import shortest_path_length
from dynarl.errors import ConfigError, EnvError
from dynarl.run.callbacks import Callback, StopOnRewardThreshold


def test_epsilon_schedule_is_linear_in_env_steps_then_flat():
    assert epsilon_schedule(0, 1.0, 0.05, 1000) == 1.0
    assert epsilon_schedule(500, 1.0, 0.05, 1000) == pytest.approx(0.525)
    assert epsilon_schedule(1000, 1.0, 0.05, 1000) == pytest.approx(0.05)
    assert epsilon_schedule(5000, 1.0, 0.05, 1000) == pytest.approx(0.05)
    assert epsilon_schedule(10, 0.3, 0.3, 0) == 0.3


def test_dqn_bad_input_is_a_clear_error():
    with pytest.raises(EnvError, match=r"DQN takes Discrete actions, but Pendulum-v1 has Box.*use a continuous-action algorithm \(SAC"):
        dynarl.DQN("Pendulum-v1")
    with pytest.raises(ConfigError, match=r"epsilon_end=0.5 is above epsilon_start=0.2"):
        dynarl.DQN("CartPole-v1", epsilon_start=0.2, epsilon_end=0.5)
    with pytest.raises(EnvError, match=r"Q_LEARNING takes Discrete observations, but CartPole-v1 has Box"):
        dynarl.QLearning("CartPole-v1")
    with pytest.raises(EnvError, match=r"SAC takes Box \(flat\) actions, but CartPole-v1 has Discrete\(2\)"):
        dynarl.SAC("CartPole-v1")


def test_dqn_with_vector_envs_and_n_step_returns():
    agent = dynarl.DQN("CartPole-v1", n_envs=4, n_step=3, steps=800, learning_starts=200, train_freq=4, updates_per_step=1, batch_size=32, quiet=True, eval_episodes=1, eval_every=800,
                       **{"learner.hidden_sizes": (32, 32)})  # fmt: skip
    agent.learn()
    assert agent.env_steps == 800 and agent.collector.n_envs == 4
    # one update per 4 env steps crossed, from the vector step that reaches learning_starts: at 200, 204, ..., 800
    assert agent.learner.num_updates == 151
    batch = agent.buffer.sample(256)
    assert batch.discount is not None
    assert np.isin(np.round(batch.discount.numpy().astype(np.float64), 5), np.round([0.99, 0.99**2, 0.99**3], 5)).all()
    assert 0.0 < agent.exploration_rate < 1.0


@pytest.mark.parametrize("name, valued_ahead", [("dqn", [True] * 4 + [False] * 4 + [True] * 8), ("double_dqn", [False] * 16)])
def test_dqn_values_a_round_ahead_where_the_round_leaves_its_target_unchanged(name, valued_ahead):
    """Rounds of 4 updates with a hard copy every 6: the rounds starting at update 0, 8 and 12 end at or before a copy
    and get V'(s') of all their rows in one pass; the round from update 4 crosses the copy after update 6 and values
    each minibatch in its update, as Double DQN always does."""
    agent = dynarl.algos.get_algorithm(name)("CartPole-v1", seed=0, steps=100, learning_starts=32, train_freq=8, updates_per_step=4, batch_size=16, quiet=True,
                                             eval_episodes=1, eval_every=100, **{"learner.hidden_sizes": (16,), "learner.target_update_interval": 6})  # fmt: skip
    seen, update = [], agent.learner.update

    def recording(batch):
        seen.append(batch.next_value is not None)
        return update(batch)

    agent.learner.update = recording
    agent.learn(56)
    assert seen == valued_ahead, seen


@pytest.mark.parametrize("name", ["dqn", "double_dqn"])
def test_dqn_learns_cartpole(name):
    """RL Zoo's CartPole-v1 settings (the preset): a deterministic evaluation reaches >= 475 within 50k env steps."""
    cls = dynarl.algos.get_algorithm(name)
    agent = cls("CartPole-v1", seed=0, quiet=True, eval_every=2_500)
    assert agent.cfg.learner.double_q == (name == "double_dqn")
    evals = []

    class Record(Callback):
        def on_evaluation(self, algo, mean_return, std_return):
            evals.append((algo.env_steps, mean_return))
            return True

    agent.learn(50_000, callbacks=[Record(), StopOnRewardThreshold(475)])
    print(f"\n{name} CartPole evaluations (env steps, mean return): {evals}")
    assert evals[-1][1] >= 475, evals
    assert agent.env_steps <= 50_000


def _greedy_path_length(algo, cap: int = 200) -> int:
    """Steps of the greedy (deterministic) policy from the maze's start to the goal; ``cap`` if it never arrives."""
    env = algo.eval_env
    obs, _ = env.reset(seed=0)
    for t in range(1, cap + 1):
        obs, _, terminated, truncated, _ = env.step(algo.policy_action(obs))
        if terminated:
            return t
    return cap


class GreedyPathPerEpisode(Callback):
    """After every finished episode, the greedy policy's path length from the start; stops after ``episodes``."""

    def __init__(self, episodes: int):
        self.episodes, self.lengths = episodes, []

    def on_step(self, algo) -> bool:
        if algo.episodes > len(self.lengths):
            self.lengths.append(_greedy_path_length(algo))
        return algo.episodes < self.episodes


def _first(lengths: list[int], at_most: int) -> int:
    return next((i + 1 for i, n in enumerate(lengths) if n <= at_most), len(lengths) + 1)


def test_dyna_q_finds_the_shortest_path_in_fewer_episodes_than_q_learning():
    """Sutton & Barto Figure 8.2: with n = 50 planning steps per real step the greedy policy walks a (near-)shortest
    path after a few episodes; plain Q-learning (n = 0) needs many more. 5 seeds, 60 episodes each."""
    shortest = shortest_path_length()
    runs = {}
    for name, n in (("dyna_q", 50), ("q_learning", 0)):
        runs[name] = []
        for seed in range(5):
            record = GreedyPathPerEpisode(episodes=60)
            dynarl.algos.get_algorithm(name)("dynarl/DynaMaze-v0", seed=seed, planning_steps=n, quiet=True, eval_every=10**9, log_every=10**9).learn(10**6, callbacks=record)
            runs[name].append(record.lengths)
    near = {k: [_first(r, shortest + 2) for r in v] for k, v in runs.items()}  # within 2 steps of the shortest
    exact = {k: [_first(r, shortest) for r in v] for k, v in runs.items()}
    print(f"\nepisodes until the greedy path is <= {shortest + 2} steps: {near}; exactly {shortest}: {exact} (61: not within 60)")
    assert max(near["dyna_q"]) <= 5
    assert np.mean(near["q_learning"]) >= 4 * np.mean(near["dyna_q"])
    assert sum(e <= 60 for e in exact["dyna_q"]) >= 3 and sum(e <= 60 for e in exact["dyna_q"]) > sum(e <= 60 for e in exact["q_learning"])


@pytest.mark.parametrize("env_id,kwargs,optimal", [("FrozenLake-v1", {"is_slippery": False}, 1.0), ("CliffWalking-v1", {}, -13.0)])
def test_q_learning_solves_the_toy_text_tasks(env_id, kwargs, optimal):
    agent = dynarl.QLearning(env_id, seed=0, env_kwargs=kwargs, steps=20_000, eval_every=2_000, quiet=True, **{"learner.gamma": 0.99})
    agent.learn()
    assert agent.last_eval[0] == optimal, agent.last_eval
