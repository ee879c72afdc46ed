"""Imitation: the point-maze task, scripted experts, hindsight relabelling, GCBC and DAgger.

The two learning tests (marked slow) check the claims the algorithms exist for: GCBC reaches goals it never saw
demonstrated from relabelled undirected trajectories, and DAgger beats BC at the same number of expert labels on
the corridor, where BC's errors compound.
"""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

import dynarl  # noqa: F401  (registers every algorithm and binds the runner)
from dynarl.algos.imitation import GCBC, DAgger, load_expert
from dynarl.algos.offline import BC
from dynarl.data.datasets import write_dataset
from dynarl.envs import point_maze
from dynarl.envs.experts import cartpole_balance, pendulum_swing_up, point_corridor_expert, point_maze_expert, resolve_expert, scripted_expert
from dynarl.errors import ConfigError, DynarlError
from dynarl.seeding import set_torch_rng_state
from dynarl.sources.hindsight import HindsightRelabeller

# --- the point maze ---------------------------------------------------------------------------------------------


def test_point_maze_moves_by_the_clipped_velocity_and_stays_in_the_square():
    env = gym.make("dynarl/PointMaze-v0")
    obs, _ = env.reset(seed=3)
    assert env.observation_space.contains(obs) and np.linalg.norm(obs[:2] - obs[2:]) >= point_maze.MIN_START_DISTANCE
    pos, goal = obs[:2].astype(np.float64), obs[2:].astype(np.float64)
    obs, reward, terminated, truncated, _ = env.step(np.array([0.5, -3.0]))  # -3 is clipped to -1
    expected = np.clip(pos + 0.05 * np.array([0.5, -1.0]), 0, 1)
    np.testing.assert_allclose(obs[:2], expected, atol=1e-6)
    np.testing.assert_allclose(obs[2:], goal, atol=1e-7)  # the goal does not move
    assert reward == pytest.approx(-np.linalg.norm(expected - goal), abs=1e-6) and not truncated
    for _ in range(40):  # pushing into a corner ends on the boundary, never outside
        obs, *_ = env.step(np.array([1.0, 1.0]))
    assert obs[0] == obs[1] == 1.0 or (obs[:2] <= 1.0).all()
    # same seed, same start and goal; another seed, others
    a, _ = env.reset(seed=11)
    b, _ = env.reset(seed=11)
    c, _ = env.reset(seed=12)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_point_maze_terminates_at_the_goal_and_truncates_after_100_steps():
    env = gym.make("dynarl/PointMaze-v0")
    for seed in range(20):
        obs, _ = env.reset(seed=seed)
        steps_needed = int(np.ceil((np.linalg.norm(obs[:2] - obs[2:]) - point_maze.GOAL_RADIUS) / point_maze.MAX_STEP))  # straight line at full speed
        for k in range(1, 101):
            obs, reward, terminated, truncated, info = env.step(point_maze_expert(obs))
            if terminated:
                break
        assert terminated and not truncated and info["is_success"] and -reward <= point_maze.GOAL_RADIUS
        assert k <= steps_needed + 1, (seed, k, steps_needed)
    env.reset(seed=0)
    for k in range(1, 101):  # standing still never reaches a goal >= 0.2 away
        _, _, terminated, truncated, _ = env.step(np.zeros(2))
        assert not terminated and truncated == (k == 100)



def test_the_corridor_rewards_progress_along_its_centre_line_and_ends_at_a_wall_or_the_end():
    env = gym.make(point_maze.CORRIDOR_ID)
    obs, _ = env.reset(seed=4)
    assert env.observation_space.contains(obs) and np.abs(obs - np.array([0.1, 0.1])).max() <= point_maze.CORRIDOR_START_NOISE + 1e-7
    inner = env.unwrapped
    inner.pos, inner.progress = np.array([0.5, 0.1]), 0.4  # on the first row, 0.4 along
    obs, reward, terminated, truncated, info = env.step(np.array([1.0, 0.5]))  # -> (0.53, 0.115): 0.03 further, 0.015 off the line
    np.testing.assert_allclose(obs, [0.53, 0.115], atol=1e-6)
    assert reward == pytest.approx(0.03 / 3.95) and info["distance"] == pytest.approx(0.015) and not (terminated or truncated or info["crashed"])
    obs, reward, terminated, _, info = env.step(np.array([0.0, 3.0]))  # clipped to 1: (0.53, 0.145) is 0.045 > 0.03 off: a wall
    assert terminated and info["crashed"] and not info["is_success"] and reward == pytest.approx(0.0, abs=1e-9)
    inner.pos, inner.progress = np.array([0.9, 0.2]), 0.9  # in the first rise: arc length 0.8 + 0.1
    _, reward, terminated, _, info = env.step(np.array([0.0, 1.0]))
    assert reward == pytest.approx(0.03 / 3.95) and info["progress"] == pytest.approx(0.93 / 3.95) and not terminated
    inner.pos, inner.progress = np.array([0.14, 0.85]), 3.91  # one step before the end (0.1, 0.85)
    _, _, terminated, _, info = env.step(np.array([-1.0, 0.0]))
    assert terminated and info["is_success"] and not info["crashed"]
    env.reset(seed=0)
    for k in range(1, 201):  # standing still never ends an episode before the time limit
        _, _, terminated, truncated, _ = env.step(np.zeros(2))
        assert not terminated and truncated == (k == 200)


def test_the_corridor_expert_follows_the_centre_line_to_the_end():
    # pure pursuit one step ahead: from (0.5, 0.11) aim at (0.53, 0.1); before the first corner, (0.89, 0.1) -> (0.9, 0.12)
    np.testing.assert_allclose(point_corridor_expert(np.array([0.5, 0.11])), [1.0, -1 / 3], atol=1e-5)
    np.testing.assert_allclose(point_corridor_expert(np.array([0.89, 0.1])), [1 / 3, 2 / 3], atol=1e-5)
    env = gym.make(point_maze.CORRIDOR_ID)
    for seed in range(20):
        obs, _ = env.reset(seed=seed)
        total, distances = 0.0, []
        for k in range(1, 201):
            obs, reward, terminated, truncated, info = env.step(point_corridor_expert(obs))
            total, distances = total + reward, distances + [info["distance"]]
            if terminated or truncated:
                break
        assert info["is_success"] and k == 131 and total >= 0.99, (seed, k, total)
        assert max(distances) <= 1e-5  # on the centre line from the first step on: the demonstrations are one thin tube
    assert scripted_expert(point_maze.CORRIDOR_ID) == "dynarl.envs.experts:point_corridor_expert"
    # with actuation noise the expert still reaches the end: it corrects every deviation it is shown
    noisy = gym.make(point_maze.CORRIDOR_ID, action_noise=0.2)
    obs, _ = noisy.reset(seed=0)
    for _ in range(200):
        obs, _, terminated, truncated, info = noisy.step(point_corridor_expert(obs))
        if terminated or truncated:
            break
    assert info["is_success"]  # the expert also corrects actuation noise


# --- experts ----------------------------------------------------------------------------------------------------


def test_the_pendulum_expert_balances_and_pumps_energy():
    # near upright: the PD law u = -(10 th + 2 th_dot); th = 0.1, th_dot = -0.2 gives -0.6
    np.testing.assert_allclose(pendulum_swing_up(np.array([np.cos(0.1), np.sin(0.1), -0.2])), [-0.6], atol=1e-5)
    # hanging, moving: E = 1/2 + 15 cos(3) < 15, push with the velocity at full torque; at rest, a kick of 1
    assert pendulum_swing_up(np.array([np.cos(3.0), np.sin(3.0), 1.0]))[0] == 2.0
    assert pendulum_swing_up(np.array([np.cos(3.0), np.sin(3.0), -1.0]))[0] == -2.0
    assert pendulum_swing_up(np.array([-1.0, 0.0, 0.0]))[0] == 1.0
    # too much energy (spinning fast, low): brake against the velocity
    assert pendulum_swing_up(np.array([np.cos(2.0), np.sin(2.0), 8.0]))[0] == -2.0


def test_dagger_defaults_to_the_envs_scripted_expert_and_handles_discrete_actions():
    agent = DAgger("CartPole-v1", **TINY_DAGGER)
    agent.learn(60)  # still the expert's own episode: it balances for 500 steps
    rows = agent.dataset.storage
    labels = np.array([cartpole_balance(o) for o in rows["obs"][:60].numpy()])
    np.testing.assert_array_equal(rows["act"][:60, 0].numpy(), labels)
    assert set(np.unique(labels)) == {0, 1} and agent.episodes == 0
    assert agent.learner.num_updates == 0 and "expert's first 1 demonstration episode(s) (up to 500 steps each)" in agent.budget_notes(60)[0]
    assert agent.budget_notes(501) == []
    assert scripted_expert("Pendulum-v1") == "dynarl.envs.experts:pendulum_swing_up"
    with pytest.raises(ConfigError, match="no scripted expert for 'MountainCar-v0'"):
        DAgger("MountainCar-v0", **TINY_DAGGER)


def test_resolve_expert_finds_functions_and_says_what_is_wrong():
    assert resolve_expert("dynarl.envs.experts:point_maze_expert") is point_maze_expert
    with pytest.raises(ConfigError, match="is not 'module:function'"):
        resolve_expert("pendulum_swing_up")
    with pytest.raises(ConfigError, match="module 'dynarl.envs.no_such' cannot be imported"):
        resolve_expert("dynarl.envs.no_such:f")
    with pytest.raises(DynarlError, match="has no function 'pendulum'; it has: .*pendulum_swing_up"):
        resolve_expert("dynarl.envs.experts:pendulum")


# --- hindsight relabelling --------------------------------------------------------------------------------------


def _coded_episodes(lengths):
    """Episodes whose achieved goal at step t of episode e is (100 e + t, -(100 e + t)), desired goal (-1, -1),
    and whose action is 100 e + t: every sample says which (e, t) it came from and which t' gave its goal."""
    eps = []
    for e, n in enumerate(lengths):
        code = 100.0 * e + np.arange(n + 1)
        eps.append({"obs": np.stack([code, -code, -np.ones(n + 1), -np.ones(n + 1)], 1), "act": code[:n, None].copy()})
    return eps


def test_relabelled_goals_are_achieved_later_in_the_same_episode_uniformly():
    lengths = [1, 3, 5]
    relabeller = HindsightRelabeller(_coded_episodes(lengths), (0, 1), (2, 3))
    assert len(relabeller) == 9
    torch.manual_seed(0)
    b = relabeller.sample(30_000)
    code, goal = b.act[:, 0].numpy(), b.obs[:, 2].numpy()
    episode, t, goal_episode, t_goal = code // 100, code % 100, goal // 100, goal % 100
    np.testing.assert_array_equal(b.obs[:, 0].numpy(), code)  # the state is the transition's own
    np.testing.assert_array_equal(b.obs[:, 3].numpy(), -goal)  # both goal dims come from the same achieved state
    np.testing.assert_array_equal(goal_episode, episode)  # never another episode's state
    assert (t_goal > t).all() and (t_goal <= np.asarray(lengths)[episode.astype(int)]).all()  # t < t' <= T: never the past or present
    np.testing.assert_array_equal(b.next_obs[:, 0].numpy(), code + 1)
    np.testing.assert_array_equal(b.next_obs[:, 2].numpy(), goal)  # s' keeps the relabelled goal
    np.testing.assert_array_equal(b.reward.numpy(), (t_goal == t + 1).astype(np.float32))
    # t' ~ U(t, T]: in episode 2 (T = 5) from t = 0 each of t' = 1..5 has probability 1/5
    rows = (episode == 2) & (t == 0)
    freq = np.bincount(t_goal[rows].astype(int), minlength=6)[1:] / rows.sum()
    np.testing.assert_allclose(freq, 0.2, atol=0.04)
    # "final" always takes s_T
    final = HindsightRelabeller(_coded_episodes(lengths), (0, 1), (2, 3), strategy="final").sample(1_000)
    np.testing.assert_array_equal(final.obs[:, 2].numpy() % 100, np.asarray(lengths)[(final.act[:, 0].numpy() // 100).astype(int)])


def test_relabelling_commutes_with_the_tied_standardisation_and_checkpoints_a_fingerprint():
    relabeller = HindsightRelabeller(_coded_episodes([4, 6]), (0, 1), (2, 3))
    mean, std = relabeller.observation_stats()
    torch.testing.assert_close(mean[2:], mean[:2])
    torch.testing.assert_close(std[2:], std[:2])
    state = relabeller.state_dict()
    torch.manual_seed(1)
    raw = relabeller.sample(64)
    relabeller.normalize_observations(mean, std)
    torch.manual_seed(1)
    scaled = relabeller.sample(64)
    torch.testing.assert_close(scaled.obs, (raw.obs - mean) / std)  # a standardised relabelled goal = the relabelled goal standardised
    with pytest.raises(ValueError, match="other data"):
        relabeller.load_state_dict(state)
    HindsightRelabeller(_coded_episodes([4, 6]), (0, 1), (2, 3)).load_state_dict(state)
    with pytest.raises(DynarlError, match="same length"):
        HindsightRelabeller(_coded_episodes([2]), (0, 1), (2,))
    with pytest.raises(DynarlError, match=r"goal dims \[7\] are outside"):
        HindsightRelabeller(_coded_episodes([2]), (0, 1), (2, 7))


# --- GCBC and DAgger: wiring, checkpoints -------------------------------------------------------------------------


def _rollout(env, policy, n, seed):
    episodes = []
    for k in range(n):
        obs, _ = env.reset(seed=seed + k)
        o, a, r, te, tr = [obs], [], [], [], []
        done = False
        while not done:
            act = policy(obs)
            obs, reward, terminated, truncated, _ = env.step(act)
            o.append(obs), a.append(act), r.append(reward), te.append(terminated), tr.append(truncated)
            done = terminated or truncated
        episodes.append({"obs": np.array(o), "act": np.array(a, dtype=np.float32), "reward": np.array(r), "terminated": np.array(te), "truncated": np.array(tr)})
    return episodes


def _random_walk_dataset(dataset_id, episodes, seed):
    env = gym.make("dynarl/PointMaze-v0")
    rng = np.random.default_rng(seed)
    write_dataset(dataset_id, _rollout(env, lambda obs: rng.uniform(-1, 1, 2).astype(np.float32), episodes, seed), env, algorithm_name="random walk")


def test_gcbc_trains_on_relabelled_batches_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    _random_walk_dataset("test/pointmaze-walk-v0", 4, seed=0)
    agent = GCBC(dataset="test/pointmaze-walk-v0", quiet=True, eval_episodes=1, batch_size=32, **{"learner.hidden_sizes": (16, 16)})
    assert agent.cfg.env == "dynarl/PointMaze-v0" and isinstance(agent.dataset, HindsightRelabeller) and len(agent.dataset) == 400
    torch.testing.assert_close(agent.obs_normalizer.mean[2:], agent.obs_normalizer.mean[:2])
    agent.learn(30)
    state = copy.deepcopy(agent.state_dict())  # a copy, as a file would hold: the optimiser's state tensors are otherwise shared
    resumed = GCBC.from_state(state)
    agent.learn(60)
    set_torch_rng_state(state["rng"]["torch"])  # the global generator is shared: give the resumed agent the saved one back
    resumed.learn(60)
    for p, q in zip(agent.learner.policy.parameters(), resumed.learner.policy.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert agent.policy_action(np.array([0.1, 0.2, 0.8, 0.9], dtype=np.float32)).shape == (2,)
    with pytest.raises(ConfigError, match="same length"):
        GCBC(dataset="test/pointmaze-walk-v0", desired_goal_dims=(2,))


TINY_DAGGER = {"quiet": True, "eval_episodes": 1, "rollout_steps": 50, "updates_per_iteration": 20, "batch_size": 32, "learner.hidden_sizes": (16, 16)}


def test_dagger_labels_every_visited_state_with_the_expert_and_resumes_exactly():
    agent = DAgger("Pendulum-v1", **TINY_DAGGER)
    agent.learn(300)  # 200 steps of the expert's own episode, then two 50-step iterations of the learner
    assert agent.expert_labels == 300 == len(agent.dataset) and agent.iteration == 3 and agent.gradient_steps == 60
    rows = agent.dataset.storage
    expert = np.stack([pendulum_swing_up(o) for o in rows["obs"][:300].numpy()])
    np.testing.assert_allclose(rows["act"][:300].numpy(), expert / 2.0, atol=1e-6)  # labels in [-1, 1] = the expert's torque / 2
    # the first 200 steps are the expert's own trajectory: each next state follows from the label
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(rows["obs"][0].numpy(), obs, atol=1e-6)
    next_obs, *_ = env.step(expert[0])
    np.testing.assert_allclose(rows["next_obs"][0].numpy(), next_obs, atol=1e-6)
    # D is a run part: in the run state, not in save()
    assert agent.state_dict(include_buffer=False)["parts"]["dataset"] is None
    state = copy.deepcopy(agent.state_dict(include_buffer=True))  # a copy, as a file would hold
    assert state["parts"]["dagger"] == {"expert_labels": 300, "iteration": 3, "iteration_steps": 0}
    resumed = DAgger.from_state(state)
    agent.learn(420)
    set_torch_rng_state(state["rng"]["torch"])  # the global generator is shared: give the resumed agent the saved one back
    resumed.learn(420)
    assert resumed.expert_labels == agent.expert_labels == 420
    torch.testing.assert_close(resumed.dataset.storage["obs"][:420], agent.dataset.storage["obs"][:420], rtol=0, atol=0)
    for p, q in zip(agent.learner.policy.parameters(), resumed.learner.policy.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_a_trained_agent_can_be_the_expert(tmp_path):
    teacher = DAgger("Pendulum-v1", **TINY_DAGGER).learn(250)
    path = teacher.save(tmp_path / "teacher")
    label = load_expert(str(tmp_path / "teacher"))  # the save() path without its suffix
    obs = np.random.default_rng(0).uniform(-1, 1, (5, 3)).astype(np.float32)
    np.testing.assert_array_equal(label(obs), teacher.policy_action(obs, deterministic=True))
    reference = DAgger("Pendulum-v1", seed=5, **TINY_DAGGER)
    student = DAgger("Pendulum-v1", expert=str(path), seed=5, **TINY_DAGGER)
    for p, q in zip(reference.learner.policy.parameters(), student.learner.policy.parameters()):  # loading the teacher left the seeded RNG alone
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    student.learn(210)
    rows = student.dataset.storage
    np.testing.assert_allclose(rows["act"][:210].numpy(), teacher.policy_action(rows["obs"][:210].numpy(), deterministic=True) / 2.0, atol=1e-6)
    with pytest.raises(ConfigError, match="not a dynarl run folder"):
        DAgger("Pendulum-v1", expert=str(tmp_path), **TINY_DAGGER)
    with pytest.raises(ConfigError, match="cannot be imported"):
        DAgger("Pendulum-v1", expert="no_such_module:expert", **TINY_DAGGER)


# --- learning ---------------------------------------------------------------------------------------------------


def _success_rate(policy, episodes: int, seed: int) -> float:
    """Fraction of PointMaze episodes (fresh starts and goals) that end at the goal within the 100-step limit."""
    env = gym.make("dynarl/PointMaze-v0")
    reached = 0
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        done = False
        while not done:
            obs, _, terminated, truncated, _ = env.step(policy(obs))
            done = terminated or truncated
        reached += terminated
    return reached / episodes


@pytest.mark.slow
def test_gcbc_reaches_new_goals_from_relabelled_random_walks(tmp_path, monkeypatch):
    """200 episodes of uniformly random actions (no goal is ever pursued, ~19k transitions) relabelled with future
    achieved goals teach a policy to drive to goals it is given. Measured over 100 fresh start/goal pairs after
    6,000 gradient steps: success 0.89 / 0.84 / 0.70 on seeds 0 / 1 / 2, the uniform policy 0.08 / 0.07 / 0.06."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    _random_walk_dataset("test/pointmaze-walk-v0", 200, seed=0)
    agent = GCBC(dataset="test/pointmaze-walk-v0", seed=0, quiet=True, eval_every=10**6, eval_episodes=1, **{"learner.hidden_sizes": (64, 64)}).learn(6_000)
    rng = np.random.default_rng(7)
    trained = _success_rate(agent.policy_action, 100, seed=50_000)
    uniform = _success_rate(lambda obs: rng.uniform(-1, 1, 2), 100, seed=50_000)
    print(f"GCBC success {trained:.2f}, uniform policy {uniform:.2f}")
    assert trained >= 0.6, trained
    assert uniform <= 0.15, uniform


def _corridor_scores(policy, episodes: int, seed: int) -> tuple[float, float]:
    """Success rate and mean return (the fraction of the corridor covered) on dynarl/PointCorridor-v0."""
    env = gym.make(point_maze.CORRIDOR_ID)
    successes, returns = 0, []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(obs))
            total, done = total + reward, terminated or truncated
        successes += info["is_success"]
        returns.append(total)
    return successes / episodes, float(np.mean(returns))


def _expert_demonstrations(labels: int, seed: int) -> list[dict]:
    """Corridor episodes of the expert, the last one cut (truncated) so that they hold exactly ``labels`` actions."""
    env = gym.make(point_maze.CORRIDOR_ID)
    episodes, left = [], labels
    for k in range(labels):
        (episode,) = _rollout(env, point_corridor_expert, 1, seed + k)
        if len(episode["act"]) >= left:
            cut = {key: episode[key][:left] for key in ("act", "reward", "terminated", "truncated")}
            cut["obs"], cut["truncated"][-1] = episode["obs"][: left + 1], not cut["terminated"][-1]
            return episodes + [cut]
        episodes.append(episode)
        left -= len(episode["act"])


def _dagger_and_bc_on_the_corridor(seed: int):
    """DAgger and BC with the same 3,000 expert labels and 10,000 gradient steps; their and the expert's scores."""
    policy = {"learner.hidden_sizes": (64, 64), "learner.activation": "relu", "learner.lr": 3e-3}
    dagger = DAgger(point_maze.CORRIDOR_ID, seed=seed, quiet=True, eval_every=10**6, eval_episodes=1, rollout_steps=150, updates_per_iteration=500, **policy).learn(3_000)
    labels, steps = dagger.expert_labels, dagger.gradient_steps
    assert labels == 3_000 and steps == 500 * dagger.iteration
    dataset = f"test/corridor-expert-{seed}-v0"
    write_dataset(dataset, _expert_demonstrations(labels, seed=1_000 + 100 * seed), gym.make(point_maze.CORRIDOR_ID), algorithm_name="point_corridor_expert")
    bc = BC(dataset=dataset, seed=seed, quiet=True, steps=steps, eval_every=10**6, eval_episodes=1, log_every=10**6, checkpoint_every=10**6, **policy).learn(steps)
    assert len(bc.dataset) == labels and bc.gradient_steps == steps
    scores = [_corridor_scores(p, 50, seed=10_000) for p in (dagger.policy_action, bc.policy_action, point_corridor_expert)]
    print(f"seed {seed}, success / return at {labels} labels: DAgger {scores[0][0]:.2f} / {scores[0][1]:.3f}, BC {scores[1][0]:.2f} / {scores[1][1]:.3f}, expert {scores[2][0]:.2f} / {scores[2][1]:.3f}")
    return scores


@pytest.mark.slow
def test_dagger_beats_bc_at_the_same_expert_labels_where_bc_drifts(tmp_path, monkeypatch):
    """Compounding error (seed 001, T1; Ross & Bagnell 2010; Ross et al. 2011) on dynarl/PointCorridor-v0: 3,000
    expert labels and 10,000 gradient steps of the same 64x64 policy for both. DAgger: one demonstration (131
    labels), then 19 iterations of 150 steps of its own policy labelled by the expert, 500 BC steps after each (the
    last 19 labels are never trained on). BC: 23 expert episodes (the same 3,000 labels, the last episode cut),
    10,000 steps. Measured over 50 starts, success rate / mean return (the fraction of the corridor covered):

                seed 0          seed 1          seed 2
        DAgger  1.00 / 0.994    1.00 / 0.998    1.00 / 0.998
        BC      0.34 / 0.992    0.00 / 0.408    0.00 / 0.245
        expert  1.00 / 0.994

    The expert's demonstrations all run along the centre line, so BC never sees a state off it and nothing tells
    it the way back: its fitting errors at the corners and along the rows add up. On seeds 1 and 2 it hits a wall
    before a third of the way; on seed 0 it drifts along the last row and 33 of 50 runs hit its wall 0.03 off the
    centre line, a few steps before the finish (hence the high return). DAgger's policy, trained on the states it
    drifts to, steers back: at the same budget BC's fitting error eps costs O(eps T^2), DAgger's O(eps T).

    BC is not doomed: more fitting shrinks its eps. With 20,000 / 40,000 gradient steps on the same 3,000 labels
    it succeeds 0.96 / 1.00 (seed 0), 0.10 / 0.76 (seed 1), 1.00 / 1.00 (seed 2); DAgger needed 10,000. With
    actuation noise in the corridor BC learns the expert's feedback from the noisy demonstrations and does not
    drift (see PointCorridorEnv)."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    (dagger_success, dagger_return), (bc_success, bc_return), (expert_success, expert_return) = _dagger_and_bc_on_the_corridor(seed=0)
    assert expert_success == 1.0
    assert dagger_success >= 0.9, dagger_success  # DAgger reaches the expert's level
    assert dagger_success - bc_success >= 0.5, (dagger_success, bc_success, dagger_return, bc_return)  # 0.66 / 1.00 / 1.00 on seeds 0 / 1 / 2
