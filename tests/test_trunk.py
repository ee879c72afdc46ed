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


# --- the dataset source and the gradient-step clock ---------------------------------------------------------------

from dataclasses import dataclass, field  # noqa: E402

import torch  # noqa: E402

from dynarl.algos.base import Algorithm  # noqa: E402
from dynarl.config import RunConfig  # noqa: E402
from dynarl.learners.bc import BCLearner, BCLearnerConfig  # noqa: E402
from dynarl.sources.dataset import DatasetSource  # noqa: E402


def _expert_pairs(n: int = 2_000) -> dict:
    """(s, a) pairs of a fixed linear Pendulum controller, a = clip(-0.8 sin(theta) - 0.3 theta_dot) in [-1, 1]."""
    rng = np.random.default_rng(0)
    theta, dot = rng.uniform(-np.pi, np.pi, n), rng.uniform(-8, 8, n)
    obs = np.stack([np.cos(theta), np.sin(theta), dot], 1).astype(np.float32)
    return {"obs": obs, "act": np.clip(-0.8 * obs[:, 1:2] - 0.3 * obs[:, 2:3], -1, 1).astype(np.float32)}


@dataclass
class _ImitationConfig(RunConfig):
    algo: str = "imitation_test"
    eval_every: int = 100
    log_every: int = 50
    checkpoint_every: int = 100
    eval_episodes: int = 1
    quiet: bool = True
    learner: BCLearnerConfig = field(default_factory=lambda: BCLearnerConfig(hidden_sizes=(32, 32), batch_size=64))


class _Imitation(Algorithm):
    """A dataset source and a learner, on the gradient-step clock (what the offline algorithms are built from)."""

    name, config_cls, clock = "imitation_test", _ImitationConfig, "gradient_steps"

    def _setup(self):
        env = self.eval_env
        self.check_spaces(env.observation_space, env.action_space)
        self.dataset = DatasetSource(_expert_pairs(), self.device, name="pendulum-expert")
        self.learner = BCLearner(self.cfg.learner, self.observation_space, self.action_space, self.device)
        self.learner.fit_normalizer(self.dataset.obs)

    def parts(self):
        return {"learner": self.learner, "dataset": self.dataset}

    def train_step(self):
        self._last_metrics = self.learner.update(self.dataset.sample(self.cfg.learner.batch_size))

    def policy_action(self, obs, deterministic=True):
        obs_t = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        act = self.learner.act(obs_t[None] if obs_t.dim() == 1 else obs_t).numpy()
        return self.actions.to_env(act[0] if obs_t.dim() == 1 else act)


def test_a_dataset_source_on_the_gradient_step_clock(tmp_path):
    agent = _Imitation(config=_ImitationConfig(env="Pendulum-v1"))
    agent.learn(200, run_dir=tmp_path / "run")
    assert agent.gradient_steps == 200 and agent.env_steps == 0 and agent.steps() == 200
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[0] == "gradient_steps" and [r["gradient_steps"] for r in rows] == ["50", "100", "150", "200"]
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step_000000100.safetensors", "step_000000200.safetensors"]
    # resume from the state at 100 gradient steps equals the straight run
    half = _Imitation(config=_ImitationConfig(env="Pendulum-v1")).learn(100).state_dict()  # before another agent reseeds torch
    resumed = _Imitation(config=_ImitationConfig(env="Pendulum-v1"))
    resumed.load_state_dict(half)
    resumed.learn(200)
    for (k, a), b in zip(agent.learner.policy.state_dict().items(), resumed.learner.policy.state_dict().values()):
        assert torch.equal(a, b), k
    # other data under the same checkpoint is refused
    other = _Imitation(config=_ImitationConfig(env="Pendulum-v1"))
    other.dataset.data["act"][0] += 1.0
    with pytest.raises(ValueError, match="trained on other data"):
        other.load_state_dict(half)


def test_a_bad_dataset_is_a_clear_error():
    from dynarl.errors import DynarlError

    with pytest.raises(DynarlError, match="needs at least observations and actions"):
        DatasetSource({"obs": np.zeros((3, 2))}, torch.device("cpu"))
    with pytest.raises(DynarlError, match="act has 2 rows but obs has 3"):
        DatasetSource({"obs": np.zeros((3, 2)), "act": np.zeros((2, 1))}, torch.device("cpu"))
    with pytest.raises(DynarlError, match="NaN or inf"):
        DatasetSource({"obs": np.full((3, 2), np.nan), "act": np.zeros((3, 1))}, torch.device("cpu"))
