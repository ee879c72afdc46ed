"""MBPO and the Dyna-style loop: rollout schedule, model-buffer retention, real_ratio, termination inside
rollouts, the MVE target against a hand computation, exact resume, and bad input."""

import csv
import os
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import run_cli
from safetensors.torch import load_file

from dynarl.algos.dyna import rollout_length
from dynarl.algos.mbpo import MBPO, DynaDDPG, DynaTD3
from dynarl.data.batch import Batch
from dynarl.data.replay import ReplayBuffer
from dynarl.envs import get_task
from dynarl.errors import ConfigError
from dynarl.learners.ddpg import DDPGLearner, DDPGLearnerConfig
from dynarl.learners.sac import SACLearner, SACLearnerConfig
from dynarl.learners.value_expansion import ValueExpansion
from dynarl.models import DynamicsModel, DynamicsModelConfig
from dynarl.models.model_env import ModelEnv


def box(n: int) -> gym.spaces.Box:
    """A flat Box space of n dims (learners are built from spaces)."""
    return gym.spaces.Box(-1.0, 1.0, (n,))

# loop-level settings (not for learning): small networks, small model, frequent fits
SMALL = {
    "learning_starts": 200,
    "batch_size": 32,
    "learner.hidden_sizes": [32, 32],
    "model.members": 3,
    "model.hidden_sizes": [32, 32],
    "model.weight_decay": [0.0, 0.0, 0.0],
    "trainer.num_elites": 2,
    "trainer.max_epochs": 3,
    "rollout_batch_size": 64,
    "epoch_length": 100,
    "model_train_freq": 50,
    "updates_per_step": 2,
    "eval_every": 10_000,
    "eval_episodes": 1,
    "log_every": 100,
    "quiet": True,
}
SMALL_CLI = [f"{k}={v}".replace(" ", "") for k, v in SMALL.items()]


def small(cls=MBPO, env="Pendulum-v1", **overrides):
    return cls(env, **{**SMALL, **overrides})


# ------------------------------------------------------------------------------------------ schedule, buffer


def test_rollout_length_schedule_is_mbpos_linear_ramp():
    hopper = (20, 100, 1, 15)
    assert [rollout_length(e, hopper) for e in (0, 10, 20)] == [1, 1, 1]
    assert rollout_length(21, hopper) == 1  # 1 + 14/80 = 1.175, floored as MBPO's int()
    assert rollout_length(60, hopper) == 8  # halfway: 1 + 7
    assert rollout_length(100, hopper) == 15
    assert rollout_length(500, hopper) == 15
    assert all(rollout_length(e, (1, 15, 1, 1)) == 1 for e in range(40))  # InvertedPendulum


def test_rollout_length_follows_the_schedule_during_training():
    agent = small(rollout_schedule=[0, 2, 1, 3])
    lengths = {}
    for steps in (200, 300, 400, 500):
        agent.learn(steps)
        lengths[agent.epoch()] = agent.rollout_length
        assert agent.model_buffer.capacity == agent._model_capacity()
    assert lengths == {0: 1, 1: 2, 2: 3, 3: 3}
    # capacity = retain_epochs x rollouts per epoch (64 x 100 / 50) x k
    assert agent.model_buffer.capacity == 1 * 64 * 2 * 3


def test_model_buffer_keeps_the_last_retain_epochs_of_rollouts():
    agent = small(retain_epochs=2)
    cap = 2 * 64 * (100 // 50) * 1
    assert agent.model_buffer.capacity == cap
    agent.learn(200)  # first fit + one round of rollouts (64 rows, length 1, Pendulum never terminates)
    assert len(agent.model_buffer) == 64
    agent.learn(400)  # fits at 200, 250, ..., 400: five rounds, 320 rows into 256 slots
    assert agent.rollouts.added == 5 * 64
    assert len(agent.model_buffer) == cap
    # the FIFO kept the newest rollouts: the last round is the last 64 rows written
    last = agent.model_buffer.recent(64)["obs"]
    agent2 = small(retain_epochs=2)
    agent2.learn(400)
    assert torch.equal(last, agent2.model_buffer.recent(64)["obs"])  # and it is deterministic


def test_replay_buffer_add_batch_and_resize_keep_the_newest_rows():
    buf = ReplayBuffer(5, 2, 1, torch.device("cpu"))
    rows = lambda lo, hi: {  # noqa: E731
        "obs": torch.arange(lo, hi, dtype=torch.float32).unsqueeze(1).repeat(1, 2),
        "act": torch.zeros(hi - lo, 1),
        "reward": torch.arange(lo, hi, dtype=torch.float32),
        "next_obs": torch.zeros(hi - lo, 2),
        "terminated": torch.zeros(hi - lo),
        "truncated": torch.zeros(hi - lo),
    }
    buf.add_batch(rows(0, 3))
    buf.add_batch(rows(3, 7))
    assert len(buf) == 5 and buf.recent(5)["reward"].tolist() == [2, 3, 4, 5, 6]
    small_buf = buf.resized(3)
    assert small_buf.recent(3)["reward"].tolist() == [4, 5, 6]
    big = buf.resized(8)
    assert len(big) == 5 and big.recent(8)["reward"].tolist() == [2, 3, 4, 5, 6]
    buf.add_batch(rows(10, 20))  # more rows than the capacity: the newest 5 stay
    assert buf.recent(5)["reward"].tolist() == [15, 16, 17, 18, 19]


def test_real_ratio_mixes_real_and_model_rows():
    agent = small(real_ratio=0.25, batch_size=64)
    agent.learn(250)
    batch = agent.sample_batch()
    assert batch.obs.shape == (64, 3)
    # rollouts start from real states, so tell the rows apart by s' (imagined in the model rows)
    real_next = agent.buffer.storage["next_obs"][: len(agent.buffer)]
    model_next = agent.model_buffer.storage["next_obs"][: len(agent.model_buffer)]

    def member(rows, pool):
        return (rows[:, None, :] == pool[None]).all(-1).any(1)

    assert member(batch.next_obs[:16], real_next).all()  # 0.25 x 64 real rows first
    assert member(batch.next_obs[16:], model_next).all() and not member(batch.next_obs[16:], real_next).any()
    # before any rollout every row is real
    fresh = small(real_ratio=0.25, batch_size=64)
    fresh.learn(100)
    assert member(fresh.sample_batch().next_obs, fresh.buffer.storage["next_obs"][:100]).all()


def test_termination_inside_rollouts():
    """Terminated model steps are stored as terminal, and nothing after them is: no row starts from a
    state the task's termination function calls terminal."""
    agent = small(env="InvertedPendulum-v5", rollout_action="random", rollout_schedule=[0, 0, 5, 5], rollout_batch_size=256)
    agent.learn(200)  # one fit, one round of 256 rollouts of 5 steps
    rows = agent.model_buffer.recent(len(agent.model_buffer))
    term_fn = get_task("InvertedPendulum-v5").standard_termination()
    assert rows["terminated"].bool().equal(term_fn(rows["obs"], rows["act"], rows["next_obs"]))
    assert rows["terminated"].any(), "random actions for 5 steps should topple some rollouts"
    assert not term_fn(None, None, rows["obs"]).any()
    assert agent.rollouts.added < 5 * 256  # steps after termination were dropped


# ------------------------------------------------------------------------------------------ MVE


def _deterministic_model(obs_dim, act_dim, seed=0):
    cfg = DynamicsModelConfig(kind="deterministic", members=3, hidden_sizes=(16,), weight_decay=(0.0, 0.0), learn_reward=True)
    model = DynamicsModel(cfg, obs_dim, act_dim, generator=torch.Generator().manual_seed(seed))
    model.elite_idx = torch.tensor([0, 2])
    return model


def _batch(n, obs_dim, act_dim, seed=1):
    g = torch.Generator().manual_seed(seed)
    return Batch(
        obs=torch.randn(n, obs_dim, generator=g),
        act=torch.rand(n, act_dim, generator=g) * 2 - 1,
        reward=torch.randn(n, generator=g),
        next_obs=torch.randn(n, obs_dim, generator=g),
        terminated=(torch.rand(n, generator=g) < 0.2).float(),
        truncated=torch.zeros(n),
    )


def _expected_next(model, obs, act):
    pred = model.predict(obs, act, model.elite_idx)  # [E, N, ...] from the elites, averaged
    return pred["next_obs_mean"].mean(0), pred["reward_mean"].mean(0)


def test_mve_target_equals_hand_computed_h_step_target():
    """003: y = r_0 + gamma d_0 (r^_1 + gamma d_1 (r^_2 + gamma d_2 Q'(s^_3, mu'(s^_3)))) for H = 3 (DDPG)."""
    torch.manual_seed(0)
    obs_dim, act_dim, H = 3, 2, 3
    learner = DDPGLearner(DDPGLearnerConfig(hidden_sizes=(16, 16), gamma=0.9), box(obs_dim), box(act_dim), torch.device("cpu"))
    model = _deterministic_model(obs_dim, act_dim)
    term = lambda o, a, n: n[..., 0] > 0.5  # noqa: E731  a known termination that fires on some rows
    ValueExpansion(learner, ModelEnv(model, termination_fn=term, propagation="expectation"), H)
    batch = _batch(64, obs_dim, act_dim)

    with torch.no_grad():
        gamma, y_parts = 0.9, []
        s, alive = batch.next_obs, 1.0 - batch.terminated
        ret, disc = batch.reward.clone(), gamma * alive
        for _ in range(H - 1):
            a = learner.actor_target(s)
            s_next, r = _expected_next(model, s, a)
            ret = ret + disc * r
            done = term(s, a, s_next).float()
            disc = disc * gamma * (1 - done)
            s = torch.where(disc.unsqueeze(-1) > 0, s_next, s)
            y_parts.append(done)
        expected = ret + disc * learner.critic_target(s, learner.actor_target(s))[0]
    assert torch.cat(y_parts).any(), "the test should exercise a model termination"
    torch.testing.assert_close(learner.td_target(batch), expected, rtol=1e-5, atol=1e-5)


def test_mve_with_sac_adds_the_soft_bonus_and_h1_is_the_one_step_target():
    obs_dim, act_dim = 3, 2
    torch.manual_seed(0)
    learner = SACLearner(SACLearnerConfig(hidden_sizes=(16, 16), init_alpha=0.5), box(obs_dim), box(act_dim), torch.device("cpu"))
    model = _deterministic_model(obs_dim, act_dim)
    never = lambda o, a, n: torch.zeros(n.shape[:-1], dtype=torch.bool)  # noqa: E731
    batch = _batch(32, obs_dim, act_dim)

    torch.manual_seed(5)
    one_step = learner.td_target(batch)
    ValueExpansion(learner, ModelEnv(model, termination_fn=never, propagation="expectation"), 1)
    torch.manual_seed(5)
    torch.testing.assert_close(learner.td_target(batch), one_step)

    ValueExpansion(learner, ModelEnv(model, termination_fn=never, propagation="expectation"), 2)
    torch.manual_seed(5)
    got = learner.td_target(batch)
    torch.manual_seed(5)  # replay the same draws by hand: a_1 ~ pi(s_1), then a_2 ~ pi(s^_2) in next_value
    with torch.no_grad():
        g, alpha = learner.cfg.gamma, 0.5
        a1, logp1 = learner.actor(batch.next_obs)
        s2, r1 = _expected_next(model, batch.next_obs, a1)
        a2, logp2 = learner.actor(s2)
        v2 = learner.critic_target(s2, a2).min(0).values - alpha * logp2
        d0 = 1 - batch.terminated
        expected = batch.reward + g * d0 * (r1 - alpha * logp1 + g * v2)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_mve_option_trains_inside_mbpo():
    agent = small(mve_horizon=3)
    assert agent.learner.value_expansion is not None and agent.learner.value_expansion.horizon == 3
    agent.learn(300)
    assert agent.learner.num_updates > 0 and agent.all_finite()


# ------------------------------------------------------------------------------------------ learners, diagnostics


@pytest.mark.parametrize("cls", [DynaTD3, DynaDDPG])
@pytest.mark.parametrize("source", ["buffer", "random"])
def test_dyna_loop_with_other_learners_and_action_sources(cls, source):
    agent = small(cls, rollout_action=source, rollout_schedule=[0, 0, 2, 2])
    agent.learn(300)
    assert agent.learner.num_updates == (300 - 200 + 1) * 2
    assert len(agent.model_buffer) > 0 and agent.all_finite()


def test_per_epoch_diagnostics_are_logged(tmp_path):
    agent = small(eval_every=100)
    agent.learn(400, run_dir=tmp_path / "run")
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    last = rows[-1]
    for key in ("model/model_holdout_mse", "model/eps_m_tv", "model/eps_m_l1", "model/eps_pi", "model/model_return", "model/model_return_gap", "model/rollout_length", "model/real_transitions", "model/model_transitions", "eval/mean_reward", "rollout/ep_len_mean", "time/steps_per_second"):
        assert last[key] not in ("", None), key
        assert np.isfinite(float(last[key])), key
    assert float(last["model/real_transitions"]) == 400
    gap = float(last["model/model_return"]) - float(last["eval/mean_reward"])
    assert abs(gap - float(last["model/model_return_gap"])) < 1e-3
    assert float(last["model/eps_pi"]) > 0  # the policy moved during the epoch


# ------------------------------------------------------------------------------------------ resume, bad input


def _final(run, step):
    return load_file(run / "checkpoints" / f"step_{step:09d}.safetensors")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path, precision):
    """Also with bf16 rollouts: the bf16 copy of the model is re-cast from the restored weights."""
    args = lambda out: ["train", "mbpo", "--env", "Pendulum-v1", "--steps", "600", "--seed", "3", "--out", str(out), *SMALL_CLI, "checkpoint_every=250", "eval_every=200", f"rollout_precision={precision}"]  # noqa: E731
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    proc = subprocess.Popen([sys.executable, "-m", "dynarl.cli", *args(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    target = killed / "checkpoints" / "step_000000250.safetensors"  # epoch 0 ends at step 300: mid-epoch
    deadline = time.time() + 300
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert target.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no checkpoint in time"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if (killed / "summary.json").exists():
        pytest.fail("the run finished before the kill; the test needs a slower run")
    assert run_cli("resume", str(killed)).returncode == 0
    assert run_cli(*args(whole)).returncode == 0
    a, b = _final(killed, 600), _final(whole, 600)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # learner, model, both buffers, generators
    drop = {"time/wall_seconds", "time/steps_per_second", "time/seconds_model_train", "time/seconds_rollout", "time/seconds_policy_update"}
    read = lambda run: [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(open(run / "metrics.csv", newline=""))]  # noqa: E731
    assert read(killed) == read(whole)


def test_unknown_termination_needs_learned_termination():
    with pytest.raises(ConfigError, match="learned_termination=true"):
        small(env="MountainCarContinuous-v0")
    agent = small(env="MountainCarContinuous-v0", learned_termination=True)
    assert agent.model.cfg.learn_termination
    agent.learn(250)
    assert len(agent.model_buffer) > 0


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"rollout_schedule": [20, 10, 1, 15]}, "rollout_schedule"),
        ({"rollout_schedule": [1, 2, 3]}, "rollout_schedule"),
        ({"real_ratio": 1.5}, "real_ratio"),
        ({"model.learn_reward": False}, "learn_reward"),
        ({"trainer.num_elites": 9}, "num_elites"),
        ({"rollout_action": "planner"}, "rollout_action"),
    ],
)
def test_bad_config_is_a_clear_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        small(**overrides)


def test_cli_bad_input_exits_2_without_traceback():
    proc = run_cli("train", "mbpo", "--env", "CartPole-v1", "quiet=true")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "continuous" in proc.stderr.lower()
