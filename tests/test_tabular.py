"""The Dyna maze, tabular Q-learning and Dyna-Q's table model (Sutton & Barto section 8.2; inventory B1, H3)."""

from __future__ import annotations

import collections

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from dynarl.checkpoint import load_checkpoint, save_checkpoint
from dynarl.config import validate
from dynarl.data.batch import Batch
from dynarl.envs import dyna_maze
from dynarl.envs.dyna_maze import DynaMazeEnv, to_cell, to_state, transition
from dynarl.errors import ConfigError, EnvError
from dynarl.learners.tabular import QLearningConfig, TabularModel, TabularQLearner

CPU = torch.device("cpu")
UP, DOWN, RIGHT, LEFT = range(4)


def rows(*transitions, obs_shape_1=True) -> Batch:
    """A batch from (s, a, r, s', terminated, truncated) rows, indices as float32 like a replay buffer."""
    cols = [torch.tensor([float(t[i]) for t in transitions]) for i in range(6)]
    s, a, r, s2, term, trunc = cols
    if obs_shape_1:
        s, a, s2 = s[:, None], a[:, None], s2[:, None]
    return Batch(s, a, r, s2, term, trunc)


# --- the maze --------------------------------------------------------------------------------------------


def test_layout_is_figure_8_2():
    env = DynaMazeEnv(render_mode="ansi")
    assert env.observation_space == spaces.Discrete(54) and env.action_space == spaces.Discrete(4)
    assert dyna_maze.WALLS == {(1, 2), (2, 2), (3, 2), (4, 5), (0, 7), (1, 7), (2, 7)}
    obs, _ = env.reset(seed=0)
    assert obs == 2 * 9 + 0 and to_cell(obs) == (2, 0)
    picture = [
        ". . . . . . . X G",
        ". . X . . . . X .",
        "A . X . . . . X .",
        ". . X . . . . . .",
        ". . . . . X . . .",
        ". . . . . . . . .",
    ]
    assert env.render() == "\n".join(picture) + "\n"
    # "In each of the 47 states" (Example 8.1)
    assert sum((r, c) not in dyna_maze.WALLS for r in range(6) for c in range(9)) == 47


def _bfs(start: int) -> dict[int, int]:
    dist, queue = {start: 0}, collections.deque([start])
    while queue:
        s = queue.popleft()
        if to_cell(s) == dyna_maze.GOAL:
            continue  # terminal
        for a in range(4):
            s2, _, _ = transition(s, a)
            if s2 not in dist:
                dist[s2] = dist[s] + 1
                queue.append(s2)
    return dist


def test_shortest_path_is_14_by_bfs():
    dist = _bfs(to_state(*dyna_maze.START))
    assert dist[to_state(*dyna_maze.GOAL)] == 14 == dyna_maze.shortest_path_length()
    assert len(dist) == 47  # every non-wall cell is reachable from S, no wall cell is


def test_walls_edges_and_goal():
    env = DynaMazeEnv()
    env.reset()

    def go(*actions):
        for a in actions:
            obs, r, term, trunc, _ = env.step(a)
        return to_cell(obs), r, term, trunc

    assert go(LEFT) == ((2, 0), 0.0, False, False)  # the left edge
    assert go(RIGHT) == ((2, 1), 0.0, False, False)
    assert go(RIGHT) == ((2, 1), 0.0, False, False)  # wall (2, 2)
    assert go(UP, UP, UP) == ((0, 1), 0.0, False, False)  # the top edge stops the third move
    assert go(DOWN, DOWN, DOWN, DOWN, DOWN, DOWN) == ((5, 1), 0.0, False, False)  # the bottom edge
    assert go(UP, RIGHT, RIGHT, RIGHT, RIGHT) == ((4, 4), 0.0, False, False)  # wall (4, 5) stops the last move
    assert go(UP, RIGHT, RIGHT, RIGHT, UP) == ((3, 7), 0.0, False, False)  # wall (2, 7) above (3, 7)
    assert go(RIGHT, RIGHT) == ((3, 8), 0.0, False, False)  # the right edge
    assert go(UP, UP) == ((1, 8), 0.0, False, False)
    assert go(UP) == ((0, 8), 1.0, True, False)  # +1 on reaching G, which ends the episode
    assert to_cell(env.reset()[0]) == (2, 0)
    with pytest.raises(ValueError, match="actions 0..3"):
        env.step(4)
    with pytest.raises(RuntimeError, match="reset"):
        DynaMazeEnv().step(0)


def test_registration_and_time_limit():
    dyna_maze.register()
    dyna_maze.register()  # idempotent
    env = gym.make(dyna_maze.ENV_ID)
    assert env.spec.max_episode_steps == dyna_maze.MAX_EPISODE_STEPS == 10_000
    env = gym.make(dyna_maze.ENV_ID, max_episode_steps=3)
    env.reset(seed=1)
    assert [env.step(LEFT)[3] for _ in range(3)] == [False, False, True]  # truncated, not terminated


def test_random_walk_first_episode_fits_the_time_limit():
    """The docstring's reason for 10_000: a uniform random walk from S hits G after 868.7 steps on average
    and needs more than 10_000 with probability 3.4e-6 (absorbing Markov chain, solved exactly)."""
    goal = to_state(*dyna_maze.GOAL)
    transient = [s for s in range(54) if to_cell(s) not in dyna_maze.WALLS and s != goal]
    index = {s: i for i, s in enumerate(transient)}
    Q = np.zeros((46, 46))
    for s in transient:
        for a in range(4):
            s2, _, _ = transition(s, a)
            if s2 != goal:
                Q[index[s], index[s2]] += 0.25
    hitting = np.linalg.solve(np.eye(46) - Q, np.ones(46))
    start = index[to_state(*dyna_maze.START)]
    assert hitting[start] == pytest.approx(868.7, abs=0.05)
    p = np.zeros(46)
    p[start] = 1.0
    p = p @ np.linalg.matrix_power(Q, dyna_maze.MAX_EPISODE_STEPS)
    assert 3.3e-6 < p.sum() < 3.5e-6


# --- tabular Q-learning ----------------------------------------------------------------------------------


def small_learner(alpha=0.5, gamma=0.9) -> TabularQLearner:
    learner = TabularQLearner(QLearningConfig(alpha=alpha, gamma=gamma), spaces.Discrete(4), spaces.Discrete(2), CPU)
    learner.q.table.copy_(torch.tensor([[0.1, 0.0], [0.4, 0.0], [0.2, 0.6], [5.0, 5.0]], dtype=torch.float64))
    return learner


def test_q_update_by_hand_sequential_terminated_truncated():
    learner = small_learner()
    batch = rows(
        (0, 1, 1.0, 2, 0, 0),  # y = 1 + 0.9 max(0.2, 0.6) = 1.54;        Q(0,1) = 0 + 0.5 (1.54 - 0) = 0.77
        (2, 1, 2.0, 3, 1, 0),  # terminated: y = 2 (Q(3,.) = 5 ignored);   Q(2,1) = 0.6 + 0.5 (2 - 0.6) = 1.3
        (1, 0, 0.0, 2, 0, 1),  # truncated bootstraps, from row 2's Q(2,1) = 1.3: y = 1.17; Q(1,0) = 0.4 + 0.5 (0.77) = 0.785
        (3, 0, 0.0, 0, 0, 0),  # sees row 1's Q(0,1) = 0.77: y = 0.693;   Q(3,0) = 5 + 0.5 (0.693 - 5) = 2.8465
    )
    metrics = learner.update(batch)
    expected = torch.tensor([[0.1, 0.77], [0.785, 0.0], [0.2, 1.3], [2.8465, 5.0]], dtype=torch.float64)
    torch.testing.assert_close(learner.q.table, expected, rtol=0, atol=1e-12)
    assert metrics["td_error"].item() == pytest.approx((1.54 + 1.4 + 0.77 + 4.307) / 4)
    assert metrics["q"].item() == pytest.approx((0.0 + 0.6 + 0.4 + 5.0) / 4)
    assert learner.num_updates == 1 and learner.all_finite()

    # one row at a time, indices shaped [B], gives the same table: the batch is applied in order
    online = small_learner()
    for i in range(len(batch)):
        online.update(Batch(*(getattr(batch, f)[i : i + 1].reshape(-1) for f in ("obs", "act", "reward", "next_obs", "terminated", "truncated"))))
    torch.testing.assert_close(online.q.table, expected, rtol=0, atol=1e-12)
    assert online.num_updates == 4


def test_q_update_optional_fields():
    learner = small_learner()
    batch = rows((0, 1, 1.0, 2, 0, 0), (1, 0, 0.0, 2, 0, 0))
    learner.update(batch.replace(discount=torch.tensor([0.5, 0.9]), weights=torch.tensor([1.0, 0.0]), intrinsic_reward=torch.tensor([0.25, 9.0])))
    # row 1: y = 1 + 0.25 + 0.5 * 0.6 = 1.55, Q(0,1) = 0.775; row 2 has weight 0: unchanged
    assert learner.q.table[0, 1].item() == pytest.approx(0.775)
    assert learner.q.table[1, 0].item() == pytest.approx(0.4)


def test_non_finite_reward_is_caught():
    learner = small_learner()
    learner.update(rows((0, 1, float("nan"), 2, 0, 0)))
    assert not learner.all_finite()


def test_greedy_act_breaks_ties_at_random():
    learner = TabularQLearner(QLearningConfig(), spaces.Discrete(3), spaces.Discrete(4), CPU)
    learner.q.table[1] = torch.tensor([1.0, 3.0, 3.0, 0.0], dtype=torch.float64)
    learner.q.table[2] = torch.tensor([0.0, 0.0, 0.5, 0.0], dtype=torch.float64)
    torch.manual_seed(0)
    acts = learner.act(torch.full((4000, 1), 1.0))
    assert acts.dtype == torch.int64 and acts.shape == (4000,)
    counts = torch.bincount(acts, minlength=4).tolist()
    assert counts[0] == counts[3] == 0 and 1800 < counts[1] < 2200 and counts[1] + counts[2] == 4000
    assert torch.bincount(learner.act(torch.zeros(4000)), minlength=4).min() > 900  # all-zero row: uniform
    assert learner.act(torch.tensor([2, 2])).tolist() == [2, 2]  # a unique max is always taken
    assert learner.act(torch.ones(50), deterministic=True).tolist() == [1] * 50  # the first maximal action, no draw
    torch.manual_seed(5)
    a = learner.act(torch.ones(64))
    torch.manual_seed(5)
    assert torch.equal(a, learner.act(torch.ones(64)))  # the global RNG is the only source


def test_discrete_start_offsets():
    learner = TabularQLearner(QLearningConfig(alpha=1.0, gamma=0.0), spaces.Discrete(2, start=10), spaces.Discrete(2, start=-1), CPU)
    learner.update(rows((11, 0, 1.0, 10, 0, 0)))  # action 0 is index 1 of Discrete(2, start=-1)
    assert learner.q.table.tolist() == [[0.0, 0.0], [0.0, 1.0]]
    assert learner.act(torch.tensor([11])).tolist() == [0]


def test_env_errors_name_the_fix():
    pendulum_obs = spaces.Box(-8.0, 8.0, (3,), np.float32)
    with pytest.raises(EnvError) as e:
        TabularQLearner(QLearningConfig(), pendulum_obs, spaces.Box(-2.0, 2.0, (1,), np.float32), CPU, env_name="Pendulum-v1")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("tabular Q-learning needs Discrete observations; Pendulum-v1 has Box(")
    assert "DQN" in msg and "discretise the observation" in msg
    with pytest.raises(EnvError) as e:
        TabularQLearner(QLearningConfig(), spaces.Discrete(5), spaces.Box(-1.0, 1.0, (2,), np.float32), CPU)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("tabular Q-learning needs Discrete actions; got Box(") and "SAC" in msg


def test_config_defaults_and_validation():
    cfg = QLearningConfig()
    assert (cfg.alpha, cfg.gamma, cfg.init) == (0.1, 0.95, 0.0)  # Example 8.1; the step size is alpha, not gamma
    for bad in (dict(alpha=0.0), dict(gamma=1.5), dict(init=float("inf"))):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            validate(QLearningConfig(**bad))
    optimistic = TabularQLearner(QLearningConfig(init=2.0), spaces.Discrete(3), spaces.Discrete(2), CPU)
    assert optimistic.q.table.eq(2.0).all()


def test_learner_checkpoint_round_trip(tmp_path):
    learner = small_learner()
    learner.update(rows((0, 1, 1.0, 2, 0, 0), (2, 0, 0.0, 3, 0, 0)))
    save_checkpoint(tmp_path / "q.safetensors", "q_learning", learner.state_dict())
    _, state = load_checkpoint(tmp_path / "q.safetensors")
    restored = TabularQLearner(QLearningConfig(alpha=0.5, gamma=0.9), spaces.Discrete(4), spaces.Discrete(2), CPU)
    restored.load_state_dict(state)
    assert torch.equal(restored.q.table, learner.q.table) and restored.num_updates == 1
    more = rows((1, 1, 0.5, 0, 0, 0), (3, 1, 0.0, 1, 1, 0))
    learner.update(more)
    restored.update(more)  # updates after loading write into the loaded table
    assert torch.equal(restored.q.table, learner.q.table) and restored.num_updates == 2


# --- Dyna-Q's model --------------------------------------------------------------------------------------


def test_model_samples_only_observed_pairs_last_outcome_wins(tmp_path):
    model = TabularModel(5, 3)
    with pytest.raises(RuntimeError, match="no .state, action. pair observed"):
        model.sample(1)
    model.update(0, 1, 0.0, 2, False)
    model.update(3, 0, 1.0, 4, True)
    model.update(0, 1, 0.5, 3, False)  # the same pair again: replaces (2, 0.0)
    assert model.num_observed == 2
    torch.manual_seed(0)
    b = model.sample(2000)
    assert b.obs.shape == b.act.shape == b.next_obs.shape == (2000, 1) and b.reward.shape == b.terminated.shape == b.truncated.shape == (2000,)
    pairs = collections.Counter(zip(b.obs[:, 0].tolist(), b.act[:, 0].tolist()))
    assert set(pairs) == {(0.0, 1.0), (3.0, 0.0)} and min(pairs.values()) > 900  # uniform over the 2 pairs
    first = b.obs[:, 0] == 0
    assert b.next_obs[first, 0].eq(3).all() and b.reward[first].eq(0.5).all() and b.terminated[first].eq(0).all()
    assert b.next_obs[~first, 0].eq(4).all() and b.reward[~first].eq(1.0).all() and b.terminated[~first].eq(1).all()
    assert b.truncated.eq(0).all()

    # exact round trip through a checkpoint: the same draws after loading, and updates carry on
    save_checkpoint(tmp_path / "m.safetensors", "dyna_q", {"model": model.state_dict()})
    restored = TabularModel(5, 3)
    restored.load_state_dict(load_checkpoint(tmp_path / "m.safetensors")[1]["model"])
    for m in (model, restored):
        m.update(4, 2, 0.0, 1, False)
    assert restored.num_observed == model.num_observed == 3
    draws = []
    for m in (model, restored):
        torch.manual_seed(7)
        draws.append(m.sample(64))
    for f in Batch.field_names()[:6]:
        assert torch.equal(getattr(draws[0], f), getattr(draws[1], f))


def test_model_batch_feeds_the_learner():
    """A model batch is what TabularQLearner.update consumes: planning on Model(S,A) = (R, S') is Q-learning on it."""
    learner = small_learner(alpha=1.0, gamma=0.9)
    model = TabularModel(4, 2)
    model.update(1, 1, 2.0, 2, False)
    learner.update(model.sample(1))
    assert learner.q.table[1, 1].item() == pytest.approx(2.0 + 0.9 * 0.6)


# --- Figure 8.2 in miniature -----------------------------------------------------------------------------


def dyna_q_episode_lengths(n: int, seed: int, episodes: int = 50, epsilon: float = 0.1) -> list[int]:
    """Tabular Dyna-Q (Sutton & Barto Figure 8.1) on the maze; n = 0 is one-step Q-learning."""
    torch.manual_seed(seed)
    env = gym.make(dyna_maze.ENV_ID)
    learner = TabularQLearner(QLearningConfig(alpha=0.1, gamma=0.95), env.observation_space, env.action_space, CPU)
    model = TabularModel(env.observation_space.n, env.action_space.n)
    lengths = []
    for _ in range(episodes):
        s, _ = env.reset(seed=seed)
        for t in range(1, dyna_maze.MAX_EPISODE_STEPS + 1):
            if torch.rand(()) < epsilon:
                a = int(torch.randint(4, ()))
            else:
                a = int(learner.act(torch.tensor([s]))[0])
            s2, r, term, trunc, _ = env.step(a)
            learner.update(rows((s, a, r, s2, term, trunc)))  # (d) direct RL
            model.update(s, a, r, s2, term)  # (e) model learning
            if n:
                learner.update(model.sample(n))  # (f) n planning updates
            s = s2
            if term or trunc:
                break
        lengths.append(t)
    return lengths


@pytest.mark.slow
def test_dyna_q_finds_the_shortest_path_sooner_than_q_learning():
    """Figure 8.2: with n = 50 planning steps the agent reaches the 14-step path in far fewer episodes than with
    n = 0, averaged over 5 seeds (an agent that never does within 50 episodes counts as 51)."""
    dyna_maze.register()
    shortest = dyna_maze.shortest_path_length()
    first, mean_length, all_lengths = {}, {}, []
    for n in (0, 50):
        runs = [dyna_q_episode_lengths(n, seed) for seed in range(5)]
        all_lengths += [length for r in runs for length in r]
        first[n] = [next((i + 1 for i, length in enumerate(r) if length == shortest), 51) for r in runs]
        mean_length[n] = np.mean(runs, axis=0)
        print(f"\nn={n}: first episode of length {shortest} per seed: {first[n]}")
        print(f"n={n}: mean steps per episode over 5 seeds: {np.round(mean_length[n], 1).tolist()}")
        for seed, r in enumerate(runs):
            print(f"n={n} seed={seed}: {r}")
    assert min(all_lengths) == shortest  # no episode beats the BFS path, and some walk it
    assert np.mean(first[50]) < np.mean(first[0])
    assert sum(f <= 50 for f in first[50]) >= 3  # most Dyna-Q runs walk the shortest path within 50 episodes
    # "the n = 50 agent took only three episodes" to reach epsilon-optimal behaviour; without planning it takes far longer
    assert mean_length[50][2:].mean() < 1.25 * shortest
    assert mean_length[0][2:10].mean() > 5 * mean_length[50][2:10].mean()
