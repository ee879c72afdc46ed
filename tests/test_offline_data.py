"""Offline datasets: Minari round trip, foreign datasets, collection with behaviour log-probabilities, the
recipe of levels, and the one-line errors for bad data."""

from __future__ import annotations

import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

import dynarl
from dynarl.cli import main
from dynarl.data.datasets import DatasetError, Episodes, episodes_from_transitions, load_episodes, local_dataset_ids, write_dataset
from dynarl.run.collect import random_behavior, rollout_episodes
from dynarl.sources.dataset import DatasetSource


@pytest.fixture(autouse=True)
def datasets_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    return tmp_path / "datasets"


def _cartpole_episodes(n=12, seed=0):
    """Random CartPole episodes cut at 15 steps: some end terminated, some truncated."""
    env = gym.make("CartPole-v1", max_episode_steps=15)
    return rollout_episodes(env, random_behavior(env.action_space, np.random.default_rng(seed)), n, seed), env


def test_minari_round_trip_keeps_transitions_boundaries_and_flags():
    episodes, env = _cartpole_episodes()
    assert any(ep["terminated"][-1] for ep in episodes) and any(ep["truncated"][-1] for ep in episodes)
    write_dataset("local/cartpole/random-v0", episodes, env, algorithm_name="random", ref_min_score=10.0, ref_max_score=500.0)
    data = load_episodes("local/cartpole/random-v0")
    assert isinstance(data, Episodes) and data.env_id == "CartPole-v1" and (data.ref_min_score, data.ref_max_score) == (10.0, 500.0)
    assert f"Made with dynarl {dynarl.__version__}" in data.metadata["description"] and f"torch {torch.__version__}" in data.metadata["description"]
    assert list(data.episode_lengths) == [len(ep["act"]) for ep in episodes]
    for ours, theirs in zip(data.split(), episodes):
        np.testing.assert_array_equal(ours["obs"], theirs["obs"])  # N+1 observations per episode
        np.testing.assert_array_equal(ours["act"], theirs["act"])
        np.testing.assert_allclose(ours["reward"], theirs["reward"])
        np.testing.assert_array_equal(ours["terminated"], theirs["terminated"])
        np.testing.assert_array_equal(ours["truncated"], theirs["truncated"])
        np.testing.assert_allclose(ours["behavior_log_prob"], theirs["behavior_log_prob"])  # log(1/2) per step
    # as transitions: obs[:-1] -> obs[1:] inside each episode, never across one
    source = DatasetSource.from_episodes(data, torch.device("cpu"))
    flat = [(ep["obs"][t], ep["obs"][t + 1], ep["terminated"][t], ep["truncated"][t]) for ep in episodes for t in range(len(ep["act"]))]
    assert len(source) == len(flat) == sum(len(ep["act"]) for ep in episodes)
    obs, nxt = source.observations[source.obs_row].numpy(), source.observations[source.next_row].numpy()
    for i, (o, n, term, trunc) in enumerate(flat):
        np.testing.assert_array_equal(obs[i], o)
        np.testing.assert_array_equal(nxt[i], n)
        assert source.data["terminated"][i] == term and source.data["truncated"][i] == trunc
    # every observation is stored once: N + E rows, not 2N
    assert source.observations.shape[0] == len(flat) + len(episodes)


def test_a_foreign_minari_dataset_loads_and_trains(datasets_in_tmp):
    """Written with Minari's own API (no reference scores, no log-probabilities, its own metadata)."""
    import minari
    from minari.data_collector import EpisodeBuffer

    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(1)
    buffers = []
    for k in range(5):
        obs, _ = env.reset(seed=k)
        o, a, r, te, tr = [obs], [], [], [], []
        for _ in range(500):
            act = int(rng.integers(2))
            obs, rew, term, trunc, _ = env.step(act)
            o.append(obs), a.append(act), r.append(rew), te.append(term), tr.append(trunc)
            if term or trunc:
                break
        buffers.append(EpisodeBuffer(id=k, observations=np.array(o), actions=np.array(a), rewards=np.array(r), terminations=np.array(te), truncations=np.array(tr)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers("someone/cartpole/play-v1", buffers, env=env, algorithm_name="someone's random agent")
    data = load_episodes("someone/cartpole/play-v1")
    assert data.behavior_log_prob is None and data.ref_min_score is None and data.env_id == "CartPole-v1"
    assert len(data) == sum(len(b.actions) for b in buffers)
    assert "someone/cartpole/play-v1" in local_dataset_ids()
    from dynarl.algos.offline import BC, FQI

    fqi = FQI(dataset="someone/cartpole/play-v1", batch_size=32, eval_episodes=1, quiet=True).learn(20)
    assert fqi.gradient_steps == 20 and fqi.summary()["normalized_score"] is None  # no reference scores: no normalised score (null in JSON)
    bc = BC(dataset="someone/cartpole/play-v1", batch_size=32, eval_episodes=1, quiet=True).learn(20)
    assert bc.predict(env.reset(seed=0)[0])[0] in (0, 1)


def test_episodes_from_a_replay_stream_split_at_ends_and_gaps():
    obs = np.arange(10, dtype=np.float32)[:, None]
    next_obs = obs + 1
    next_obs[6] = 99  # a gap: row 7 does not continue row 6
    terminated = np.zeros(10, bool)
    terminated[2] = True
    truncated = np.zeros(10, bool)
    truncated[4] = True
    eps = episodes_from_transitions(obs, np.zeros((10, 1)), np.ones(10), next_obs, terminated, truncated)
    assert [len(e["act"]) for e in eps] == [3, 2, 2, 3]
    assert [bool(e["terminated"][-1]) for e in eps] == [True, False, False, False]
    assert [bool(e["truncated"][-1]) for e in eps] == [False, True, True, True]  # the gap and the stream's end are truncations
    np.testing.assert_array_equal(eps[1]["obs"][:, 0], [3, 4, 5])


def _cli(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_collect_stores_the_behaviour_log_probability(tmp_path, capsys):
    from dynarl import SAC

    sac = SAC("Pendulum-v1", learning_starts=100, batch_size=32, quiet=True, eval_episodes=1)
    sac.learn(200)
    ckpt = sac.save(tmp_path / "sac")
    rc, out, err = _cli(capsys, "collect", str(ckpt), "--episodes", "2", "--out", "local/pendulum/sac-v0", "--epsilon", "0.25", "--ref-max", "-150")
    assert rc == 0, err
    result = json.loads(out)
    assert result["transitions"] == 400 and result["has_log_prob"] and result["ref_max_score"] == -150
    data = load_episodes("local/pendulum/sac-v0")
    # the stored log-probability is the epsilon-mixture's density at the action taken, in env units
    agent = type(sac).load(ckpt)
    obs, act = data.observations[data.obs_row], data.actions
    log_pi = agent.action_log_prob(obs, act)
    expected = np.log(0.75 * np.exp(log_pi) + 0.25 / 4.0)  # uniform on [-2, 2]: density 1/4
    np.testing.assert_allclose(data.behavior_log_prob, expected, rtol=1e-4, atol=1e-4)
    # random with --env; then info
    rc, out, err = _cli(capsys, "collect", "random", "--env", "Pendulum-v1", "--episodes", "1", "--out", "local/pendulum/random-v0")
    assert rc == 0, err
    rc, out, err = _cli(capsys, "dataset", "info", "local/pendulum/random-v0")
    info = json.loads(out)
    assert info["transitions"] == 200 and info["behavior_log_prob"] and info["truncations"] == 1 and info["terminations"] == 0
    # an existing id is never overwritten
    before = (tmp_path / "datasets" / "local/pendulum/random-v0/data/main_data.hdf5").read_bytes()
    rc, out, err = _cli(capsys, "collect", "random", "--env", "Pendulum-v1", "--episodes", "2", "--out", "local/pendulum/random-v0")
    assert rc == 2 and "already exists" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "datasets" / "local/pendulum/random-v0/data/main_data.hdf5").read_bytes() == before


def _pendulum_dataset(dataset_id="local/pendulum/tiny-v0", episodes=2):
    env = gym.make("Pendulum-v1")
    data = rollout_episodes(env, random_behavior(env.action_space, np.random.default_rng(0)), episodes, 0)
    return write_dataset(dataset_id, data, env, algorithm_name="random", ref_min_score=-1200.0, ref_max_score=-150.0)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "cql", "--dataset", "local/pendulum/tiny-v1"], "no dataset 'local/pendulum/tiny-v1' under .*Did you mean: local/pendulum/tiny-v0"),
        (["train", "cql", "--dataset", "local/pendulum/tiny-v0", "--env", "MountainCarContinuous-v0"], "has observation space .* but env MountainCarContinuous-v0"),
        (["train", "fqi", "--dataset", "local/pendulum/tiny-v0"], "FQI needs discrete actions but dataset .*; use cql, iql, awac or bc"),
        (["train", "cql"], "cql learns from a dataset: pass dataset=ID"),
        (["train", "sac", "--dataset", "local/pendulum/tiny-v0"], "sac learns online from its env and takes no --dataset; .* are awac, bc, .*cql"),
        (["train", "bc", "--dataset", "local/pendulum/tiny-v0", "learner.batch_size=64"], "learner.batch_size=64 is not read by bc .*; bc draws its minibatches by batch_size: set batch_size=64"),
        (["train", "gcbc", "--dataset", "local/pendulum/tiny-v0", "learner.batch_size=64"], "learner.batch_size=64 is not read by gcbc"),
        (["train", "dagger", "learner.batch_size=64"], "learner.batch_size=64 is not read by dagger"),
    ],
)
def test_bad_datasets_are_one_line_errors_and_write_nothing(tmp_path, capsys, argv, message):
    import re

    _pendulum_dataset()
    out_dir = tmp_path / "run"
    rc, out, err = _cli(capsys, *argv, "--out", str(out_dir), "--steps", "10")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and re.search(message, err), err
    assert not out_dir.exists()


def test_truncated_corrupt_and_rewardless_files_are_refused(tmp_path, capsys):
    import h5py

    path = _pendulum_dataset()
    main_file = path / "data" / "main_data.hdf5"
    # no rewards
    with h5py.File(main_file, "a") as f:
        for k in f:
            del f[k]["rewards"]
    rc, out, err = _cli(capsys, "train", "iql", "--dataset", "local/pendulum/tiny-v0", "--out", str(tmp_path / "r1"))
    assert rc == 2 and "has no rewards; reinforcement learning needs them" in err and len(err.strip().splitlines()) == 1
    # truncated to half its bytes
    path = _pendulum_dataset("local/pendulum/cut-v0")
    raw = (path / "data" / "main_data.hdf5").read_bytes()
    (path / "data" / "main_data.hdf5").write_bytes(raw[: len(raw) // 2])
    rc, out, err = _cli(capsys, "train", "bc", "--dataset", "local/pendulum/cut-v0", "--out", str(tmp_path / "r2"))
    assert rc == 2 and "cannot be read" in err and "truncated or corrupt" in err and len(err.strip().splitlines()) == 1
    # garbage
    (path / "data" / "main_data.hdf5").write_bytes(b"not an hdf5 file" * 100)
    rc, out, err = _cli(capsys, "dataset", "info", "local/pendulum/cut-v0")
    assert rc == 2 and "truncated or corrupt" in err
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


def test_offline_run_folder_resume_and_normalised_score(tmp_path, capsys):
    _pendulum_dataset()
    run = tmp_path / "run"
    rc, out, err = _cli(capsys, "train", "iql", "--dataset", "local/pendulum/tiny-v0", "--steps", "60", "--out", str(run), "eval_every=30", "checkpoint_every=30", "log_every=30", "eval_episodes=1", "batch_size=32", "quiet=true")
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["gradient_steps"] == 60 and summary["env_steps"] == 0 and summary["env"] == "Pendulum-v1"
    assert summary["normalized_score"] == pytest.approx(100 * (summary["eval_return_mean"] + 1200) / 1050)
    assert json.loads((run / "summary.json").read_text())["normalized_score"] == pytest.approx(summary["normalized_score"])
    rc, out, err = _cli(capsys, "resume", str(run), "--steps", "90")
    assert rc == 0, err
    assert json.loads(out)["gradient_steps"] == 90
    rc, out, err = _cli(capsys, "eval", str(run), "--episodes", "1")
    assert rc == 0 and "normalized_score" in json.loads(out)


def test_memory_is_about_the_raw_size():
    episodes, env = _cartpole_episodes(n=30)
    write_dataset("local/cartpole/mem-v0", episodes, env, algorithm_name="random")
    data = load_episodes("local/cartpole/mem-v0")
    source = DatasetSource.from_episodes(data, torch.device("cpu"))
    raw = sum(ep["obs"].nbytes + ep["act"].nbytes + ep["reward"].nbytes + ep["terminated"].nbytes + ep["truncated"].nbytes for ep in episodes)
    held = source.observations.nbytes + source.obs_row.nbytes + source.next_row.nbytes + sum(v.nbytes for v in source.data.values())
    assert held < 2 * raw, (held, raw)


def test_ope_command_on_the_agents_own_data(tmp_path, capsys):
    """Data collected by the evaluated policy itself: every importance weight is 1, so IS, PDIS, WIS and WPDIS all
    equal the dataset's mean discounted return; the true value comes from the env."""
    from dynarl import SAC

    sac = SAC("Pendulum-v1", learning_starts=100, batch_size=32, quiet=True, eval_episodes=1)
    sac.learn(150)
    ckpt = sac.save(tmp_path / "sac")
    rc, out, err = _cli(capsys, "collect", str(ckpt), "--episodes", "4", "--out", "local/pendulum/own-v0", "--ref-max", "-150")
    assert rc == 0, err
    rc, out, err = _cli(capsys, "ope", str(ckpt), "--dataset", "local/pendulum/own-v0", "--fqe-steps", "50", "--bootstrap", "50", "--episodes", "2", "--gamma", "0.9")
    assert rc == 0, err
    report = json.loads(out)
    data = load_episodes("local/pendulum/own-v0")
    discounted = np.mean([np.sum(ep["reward"] * 0.9 ** np.arange(len(ep["reward"]))) for ep in data.split()])
    for name in ("IS", "PDIS", "WIS", "WPDIS"):
        assert report["estimates"][name]["estimate"] == pytest.approx(discounted, rel=1e-4), name
    assert set(report["estimates"]) >= {"IS", "PDIS", "WIS", "WPDIS", "DR", "FQE"} and np.isfinite(report["true_value"])
    # a dataset without behaviour log-probabilities cannot be importance-weighted: one line, exit 2
    rc, out, err = _cli(capsys, "collect", str(ckpt), "--episodes", "1", "--out", "local/pendulum/det-v0", "--deterministic")
    rc, out, err = _cli(capsys, "ope", str(ckpt), "--dataset", "local/pendulum/det-v0")
    assert rc == 2 and "stores no behaviour log-probabilities" in err and len(err.strip().splitlines()) == 1


def test_the_recipe_writes_every_level_with_the_same_references(tmp_path):
    from dynarl.run.recipe import LEVELS, make_levels

    small = {"learning_starts": 100, "batch_size": 32, "learner.hidden_sizes": (32, 32)}
    # an expert reference not above the random one would invert the scale: refused, nothing written (a random
    # reference of 0 is above every Pendulum return)
    with pytest.raises(DatasetError, match="is not above the random reference 0.0"):
        make_levels("Pendulum-v1", "local/recipe", steps=150, episodes=1, checkpoints=1, eval_episodes=1, work_dir=tmp_path / "a", quiet=True, ref_min_score=0.0, overrides=small)
    assert not (tmp_path / "datasets" / "local/recipe").exists()
    # 600 steps of SAC stay below the uniform policy's -821 here (-1287): with a random reference below them (as
    # when D4RL's references are given) the levels are made
    out = make_levels("Pendulum-v1", "local/recipe", steps=600, episodes=2, checkpoints=3, eval_episodes=2, work_dir=tmp_path / "b", quiet=True,
                      ref_min_score=-2000.0, overrides=small)  # fmt: skip
    assert [c["step"] for c in out["checkpoints"]] == [200, 400, 600]
    best = max(c["eval_return"] for c in out["checkpoints"])
    assert out["ref_max_score"] == best and out["ref_min_score"] == -2000.0
    # medium is the checkpoint whose normalised return is closest to 1/3, whatever its step
    norm = {c["step"]: (c["eval_return"] - out["ref_min_score"]) / (best - out["ref_min_score"]) for c in out["checkpoints"]}
    assert out["medium_step"] == min(norm, key=lambda s: abs(norm[s] - 1 / 3))
    for level in LEVELS:
        data = load_episodes(f"local/recipe/{level}-v0")
        assert (data.ref_min_score, data.ref_max_score) == (out["ref_min_score"], out["ref_max_score"])
    assert len(load_episodes("local/recipe/medium-expert-v0")) == 800  # medium + expert, 2 episodes each
    replay = load_episodes("local/recipe/medium-replay-v0")
    assert len(replay) == out["medium_step"] and replay.episode_lengths.sum() == out["medium_step"]  # the buffer up to the medium checkpoint


def test_reward_normalisation_by_the_return_spread():
    """CORL's locomotion setting: r * 1000 / (max - min episode return), after reward_scale."""
    from dynarl.algos.offline import IQL

    _pendulum_dataset(episodes=3)
    data = load_episodes("local/pendulum/tiny-v0")
    returns = data.episode_returns()
    agent = IQL(dataset="local/pendulum/tiny-v0", normalize_reward=True, reward_scale=2.0, quiet=True)
    expected = torch.as_tensor(data.rewards) * 2.0 * 1000.0 / float(returns.max() - returns.min())
    torch.testing.assert_close(agent.dataset.data["reward"], expected)


def test_collect_greedy_discrete_with_epsilon_stores_the_mixture(tmp_path, capsys):
    """A greedy DQN with epsilon = 0.2 on CartPole: pi_b(a|s) is 0.8 + 0.1 on the greedy action and 0.1 otherwise."""
    from dynarl import DQN

    ckpt = DQN("CartPole-v1", learning_starts=50, batch_size=16, quiet=True, eval_episodes=1).learn(100).save(tmp_path / "dqn")
    rc, out, err = _cli(capsys, "collect", str(ckpt), "--episodes", "3", "--out", "local/cartpole/dqn-v0", "--deterministic", "--epsilon", "0.2", "--ref-max", "500")
    assert rc == 0, err
    data = load_episodes("local/cartpole/dqn-v0")
    agent = DQN.load(ckpt)
    greedy = agent.policy_action(data.observations[data.obs_row], deterministic=True)
    expected = np.where(data.actions == greedy, np.log(0.9), np.log(0.1))
    np.testing.assert_allclose(data.behavior_log_prob, expected, rtol=1e-6)
    assert (data.actions != greedy).any()  # some uniform draws differed from the greedy action


def test_an_agent_that_does_not_fit_the_env_or_the_data_is_a_one_line_error(tmp_path, capsys):
    """An agent trained on Pendulum asked to collect in, be evaluated on data of, or label states of CartPole:
    exit 2 naming both spaces, before anything is written (it used to crash in a matmul)."""
    from dynarl import SAC

    sac = SAC("Pendulum-v1", learning_starts=50, batch_size=16, quiet=True, eval_episodes=1, **{"learner.hidden_sizes": (16, 16)})
    sac.learn(60)
    ckpt = str(sac.save(tmp_path / "sac"))
    rc, out, err = _cli(capsys, "collect", ckpt, "--env", "CartPole-v1", "--episodes", "1", "--out", "local/cartpole/sac-v0")
    assert rc == 2 and "trained with observation space Box" in err and "env CartPole-v1 has Box(" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "datasets" / "local/cartpole").exists()
    rc, out, err = _cli(capsys, "collect", "random", "--env", "CartPole-v1", "--episodes", "1", "--out", "local/cartpole/random-v0")
    assert rc == 0, err
    rc, out, err = _cli(capsys, "ope", ckpt, "--dataset", "local/cartpole/random-v0")
    assert rc == 2 and "dataset 'local/cartpole/random-v0' has" in err and len(err.strip().splitlines()) == 1
    run = tmp_path / "dagger"
    rc, out, err = _cli(capsys, "train", "dagger", "--env", "CartPole-v1", "--steps", "100", "--out", str(run), f"expert={ckpt}", "quiet=true")
    assert rc == 2 and f"expert={ckpt!r}" in err and "env CartPole-v1 has" in err and len(err.strip().splitlines()) == 1
    assert not run.exists()


def test_an_expert_reference_not_above_random_is_not_stored_and_scores_stay_unnormalised(tmp_path, capsys):
    """A scale whose "expert" is below the random policy would rank better policies lower: collect keeps no such
    reference (with a note), and scores on data without one are null in summary.json, never NaN."""
    from dynarl import SAC
    from dynarl.data.datasets import normalized_score

    assert normalized_score(-1000.0, -1200.0, -150.0) == pytest.approx(100 * 200 / 1050)
    assert normalized_score(-1000.0, -1200.0, -1300.0) is None and normalized_score([1.0, 2.0], None, 5.0) is None
    sac = SAC("Pendulum-v1", learning_starts=50, batch_size=16, quiet=True, eval_episodes=1, **{"learner.hidden_sizes": (16, 16)})
    sac.learn(60)
    ckpt = str(sac.save(tmp_path / "sac"))
    rc, out, err = _cli(capsys, "collect", ckpt, "--episodes", "2", "--out", "local/pendulum/poor-v0", "--ref-min", "0")  # no return of Pendulum reaches 0
    assert rc == 0, err
    assert "not above the random reference 0.0" in err and json.loads(out)["ref_max_score"] is None
    assert load_episodes("local/pendulum/poor-v0").ref_max_score is None
    run = tmp_path / "bc"
    rc, out, err = _cli(capsys, "train", "bc", "--dataset", "local/pendulum/poor-v0", "--steps", "20", "--out", str(run), "quiet=true", "eval_episodes=1")
    assert rc == 0, err
    summary_text = (run / "summary.json").read_text()
    assert "NaN" not in summary_text and json.loads(summary_text)["normalized_score"] is None


def test_eval_and_the_library_load_act_without_the_training_dataset(tmp_path, capsys):
    """Acting needs the policy, not the data: `dynarl eval` and `dynarl.load(..., policy_only=True)` work after
    the dataset is gone (IQL, and MOPO, whose model and rollouts are not built), with the same returns; the
    normalised score is left out without the dataset's references; a policy-only agent refuses to train, and
    `dynarl resume` still names the missing dataset."""
    import shutil

    import dynarl
    from dynarl.errors import DynarlError

    path = _pendulum_dataset()
    runs = {}
    for algo, extra in (("iql", []), ("mopo", ["model.members=3", "trainer.num_elites=2", "trainer.max_epochs=2", "rollout_batch_size=20", "rollout_freq=10"])):
        runs[algo] = tmp_path / algo
        rc, out, err = _cli(capsys, "train", algo, "--dataset", "local/pendulum/tiny-v0", "--steps", "20", "--out", str(runs[algo]),
                            "eval_every=20", "checkpoint_every=20", "eval_episodes=1", "batch_size=16", "quiet=true", *extra)
        assert rc == 0, err
    rc, out, err = _cli(capsys, "eval", str(runs["iql"]), "--episodes", "2")
    with_data = json.loads(out)
    assert rc == 0 and with_data["normalized_score"] == pytest.approx(100 * (with_data["eval_return_mean"] + 1200) / 1050)
    shutil.rmtree(path)
    for algo, run in runs.items():
        rc, out, err = _cli(capsys, "eval", str(run), "--episodes", "2")
        assert rc == 0, err
        without = json.loads(out)
        assert without["normalized_score"] is None and without["gradient_steps"] == 20
        if algo == "iql":
            assert without["eval_return_mean"] == with_data["eval_return_mean"]
        agent = dynarl.load(run, policy_only=True)
        assert agent.policy_action(agent.eval_env.observation_space.sample()).shape == (1,)
        with pytest.raises(DynarlError, match="policy-only .* cannot be trained"):
            agent.learn(40)
    rc, out, err = _cli(capsys, "resume", str(runs["iql"]), "--steps", "40")
    assert rc == 2 and "no dataset 'local/pendulum/tiny-v0'" in err and len(err.strip().splitlines()) == 1
