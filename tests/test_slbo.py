"""SLBO (000 Algorithm 2): H-step segments stay inside episodes, the model step lowers eq. 5, the inner
loop drives the TRPO learner on model data, exact resume, and learning on Pendulum-v1."""

import pytest
import torch

from dynarl.algos.slbo import SLBO
from dynarl.errors import EnvError

torch.set_num_threads(1)

TINY = dict(
    n_collect=100, n_inner=2, n_model=5, n_policy=2, H=3, model_hidden_sizes=(32, 32), model_envs=4, model_horizon=20, model_batch_size=16,
    eval_every=10**9, log_every=10**9, checkpoint_every=10**9, quiet=True,
)  # fmt: skip


def test_segments_never_cross_an_episode_end():
    agent = SLBO("Pendulum-v1", env_kwargs={"max_episode_steps": 7}, **TINY)
    agent.collector.reset()
    agent.collect()
    starts = agent._segment_starts()
    ended = agent.data["ended"][: agent.size]
    H = agent.cfg.H
    assert len(starts) > 0
    for t in starts.tolist():
        assert ended[t : t + H - 1].sum() == 0  # an end only allowed at the segment's last transition
        # consecutive transitions chain: s_{t+1} is the previous next_obs
        torch.testing.assert_close(agent.data["obs"][t + 1 : t + H], agent.data["next_obs"][t : t + H - 1])
    # every start whose window holds no inner end is found (episodes of 7 steps: 5 of each 7 starts fit H=3)
    assert len(starts) == sum(1 for t in range(agent.size - H + 1) if ended[t : t + H - 1].sum() == 0)


def test_model_steps_lower_the_h_step_loss_and_policy_updates_run_in_the_model():
    torch.manual_seed(0)
    agent = SLBO("Pendulum-v1", **TINY)
    agent.collector.reset()
    agent.collect()
    d, n = agent.data, agent.size
    agent.model.fit_normalizers(d["obs"][:n], d["act"][:n], d["next_obs"][:n])
    starts = agent._segment_starts()
    first = [agent.model_step(starts).item() for _ in range(5)]
    for _ in range(200):
        last = agent.model_step(starts).item()
    assert last < 0.5 * sum(first) / 5
    rollout, returns = agent.model_rollout_data()
    assert rollout.obs.shape == (20, 4, 3) and returns.shape == (4,)
    before = [p.clone() for p in agent.learner.policy.parameters()]
    agent.learner.update(rollout)
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.learner.policy.parameters()))


def test_train_step_advances_real_steps_only_by_n_collect():
    agent = SLBO("Pendulum-v1", **TINY)
    agent.learn(200)
    assert agent.env_steps == 200 and agent.size == 200
    assert agent.learner.num_updates == 2 * 2 * 2  # outer x n_inner x n_policy


@pytest.mark.parametrize("env_id", ["HalfCheetah-v5", "Hopper-v5"])
def test_model_env_reward_and_termination_are_the_real_envs_on_slbo_observations(env_id):
    """SLBO acts on the model observation, where the task functions are exact: on the run's own real
    transitions the model env's reward function gives the env's reward and its termination the env's
    ``terminated`` (on the standard observation HalfCheetah's reward was off by up to 3 per step)."""
    agent = SLBO(env_id, seed=1, eval_episodes=1, env_kwargs={"max_episode_steps": 100}, **TINY)
    agent.learn(200)
    assert agent.observation_space.shape == (agent.obs_dim,) == agent.eval_env.observation_space.shape
    assert agent.obs_dim == {"HalfCheetah-v5": 18, "Hopper-v5": 12}[env_id]  # x kept (and raw qvel for Hopper)
    check = agent.reward_check(0)
    assert check["reward_fn_max_error"] < 1e-3 and check["termination_fn_agreement"] == 1.0, check
    assert agent._last_metrics["model/reward_fn_max_error"] < 1e-3  # logged every outer iteration
    if env_id == "Hopper-v5":
        assert agent.data["terminated"][: agent.size].sum() > 0  # random Hopper episodes end: terminations were checked


def test_needs_a_task_reward_and_continuous_actions():
    with pytest.raises(EnvError):
        SLBO("CartPole-v1")


def test_save_load_resume_equals_uninterrupted(tmp_path):
    kw = {**TINY, "seed": 2, "env_kwargs": {"max_episode_steps": 150}}  # episodes span the checkpoint
    straight = SLBO("Pendulum-v1", **kw).learn(300)
    first = SLBO("Pendulum-v1", **kw).learn(200)
    path = first.save(tmp_path / "slbo", include_buffer=True)
    resumed = SLBO.load(path).learn(300)
    for key in ("learner", "model", "model_opt"):
        from dynarl.checkpoint import _pack

        a, b = {}, {}
        _pack(straight.state_dict(False)["parts"][key], "", a)
        _pack(resumed.state_dict(False)["parts"][key], "", b)
        for k in a:
            assert torch.equal(a[k], b[k]), (key, k)
    assert torch.equal(straight.data["obs"][:300], resumed.data["obs"][:300])


@pytest.mark.slow
def test_slbo_learns_pendulum_from_few_real_samples():
    agent = SLBO("Pendulum-v1", seed=0, steps=4_000, eval_every=4_000, quiet=True)  # the preset, 4 outer iterations
    agent.learn()
    mean, std = agent.last_eval
    print(f"SLBO Pendulum-v1 4000 real steps: eval {mean:.1f} +- {std:.1f}, {agent.wall_seconds:.0f} s")
    assert mean >= -400.0
