"""The trunk's user surface: env ids, Env objects and factories; callbacks; namespaced metrics; checkpoints
derived from each algorithm's declared parts; the env collector's episode statistics."""

from __future__ import annotations

import csv

import gymnasium as gym
import numpy as np
import pytest

import dynarl
from dynarl.errors import EnvError
from dynarl.run.callbacks import Callback, StopOnRewardThreshold
from dynarl.sources.env_collector import EnvCollector

TINY = {"learning_starts": 50, "batch_size": 16, "quiet": True, "eval_episodes": 1, "learner.hidden_sizes": (16, 16)}


@pytest.mark.parametrize("make", [lambda: gym.make("CartPole-v1"), gym.make("CartPole-v1")], ids=["factory", "env_object"])
def test_an_env_object_or_factory_trains_like_its_id(make):
    from_id = dynarl.DQN("CartPole-v1", **TINY).learn(200)
    given = dynarl.DQN(make, **TINY).learn(200)
    assert given.cfg.env == "CartPole-v1" and given.env_steps == 200
    np.testing.assert_array_equal(given.buffer.obs[:200].numpy(), from_id.buffer.obs[:200].numpy())  # the rows written


def test_an_env_argument_that_is_not_an_env_is_a_clear_error():
    with pytest.raises(EnvError, match="env must be a Gymnasium id, a gymnasium.Env or a function returning one"):
        dynarl.SAC(42)
    with pytest.raises(EnvError, match="returned int, not a gymnasium.Env"):
        dynarl.SAC(lambda: 3)


def test_callbacks_see_steps_evaluations_checkpoints_and_can_stop(tmp_path):
    seen = {"steps": 0, "evals": [], "checkpoints": []}

    class Spy(Callback):
        def on_step(self, algo):
            seen["steps"] += 1
            return True

        def on_evaluation(self, algo, mean_return, std_return):
            seen["evals"].append(algo.env_steps)
            return True

        def on_checkpoint(self, algo, path):
            seen["checkpoints"].append(path.name)

    agent = dynarl.SAC("Pendulum-v1", eval_every=100, checkpoint_every=100, **TINY)
    agent.learn(300, run_dir=tmp_path / "run", callbacks=[Spy()])
    assert seen["steps"] == 300 and seen["evals"] == [100, 200, 300]
    assert seen["checkpoints"] == ["step_000000100.safetensors", "step_000000200.safetensors", "step_000000300.safetensors"]
    # a threshold every evaluation passes ends training at the first one, with a checkpoint there
    stopped = dynarl.SAC("Pendulum-v1", eval_every=100, **TINY).learn(1_000, run_dir=tmp_path / "stop", callbacks=StopOnRewardThreshold(-1e9))
    assert stopped.env_steps == 100 and (tmp_path / "stop" / "checkpoints" / "step_000000100.safetensors").is_file()
    # a plain function is an on_step callback
    fn = dynarl.SAC("Pendulum-v1", **TINY).learn(1_000, callbacks=lambda algo: algo.env_steps < 70)
    assert fn.env_steps == 70


def test_metric_names_are_namespaced_as_in_sb3(tmp_path):
    dynarl.DQN("CartPole-v1", eval_every=200, log_every=100, train_freq=4, updates_per_step=1, **TINY).learn(200, run_dir=tmp_path / "r")
    with open(tmp_path / "r" / "metrics.csv", newline="") as f:
        columns = csv.DictReader(f).fieldnames
    assert columns[0] == "env_steps"
    for name in ("train/q_loss", "rollout/ep_rew_mean", "rollout/ep_len_mean", "rollout/exploration_rate", "eval/mean_reward", "eval/std_reward", "time/steps_per_second", "time/episodes"):
        assert name in columns, name
    assert all("/" in c for c in columns[1:]), columns


def test_checkpoints_hold_the_declared_parts_and_save_leaves_out_run_state():
    agent = dynarl.MBPO("Pendulum-v1", learning_starts=50, rollout_batch_size=20, **{k: v for k, v in TINY.items() if k != "learning_starts"}, **{"model.members": 2, "trainer.num_elites": 1, "trainer.max_epochs": 1})
    agent.learn(60)
    full, saved = agent.state_dict(include_buffer=True)["parts"], agent.state_dict(include_buffer=False)["parts"]
    assert set(full) == set(agent.parts()) | {"collector", "episodes"}
    assert {"learner", "model", "trainer", "rollout_generator", "dyna"} <= set(full)
    for run_state in ("buffer", "model_buffer", "episodes"):
        assert full[run_state] is not None and saved[run_state] is None, run_state


def test_the_collector_counts_episodes_from_record_episode_statistics():
    collector = EnvCollector(lambda: gym.make("CartPole-v1", max_episode_steps=10), "CartPole-v1", n_envs=3, seed=0)
    collector.reset()
    for _ in range(25):
        t = collector.step(np.zeros(3, dtype=np.int64))
    assert collector.env_steps == 75
    # always pushing left ends every episode early or at the 10-step limit: lengths <= 10, one return per step
    assert collector.episodes >= 6 and all(1 <= n <= 10 for n in collector.recent_lengths)
    assert list(collector.recent_returns) == [float(n) for n in collector.recent_lengths]
    assert t.next_obs.shape == (3, 4)
