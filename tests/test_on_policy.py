"""On-policy family: PPO clip objective, TRPO's KL bound, vector-env autoreset handling, exact resume, learning."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from dynarl.algos.on_policy import A2C, PPO, REINFORCE, TRPO
from dynarl.data.rollout import Rollout
from dynarl.learners.ppo import clipped_surrogate
from dynarl.learners.trpo import TRPOLearner, TRPOLearnerConfig


def box(n: int) -> gym.spaces.Box:
    """A flat Box space of n dims (learners are built from spaces)."""
    return gym.spaces.Box(-1.0, 1.0, (n,))

torch.set_num_threads(1)

TINY = dict(eval_every=10**9, log_every=10**9, checkpoint_every=10**9, quiet=True)


# --- PPO clipped surrogate -------------------------------------------------------------------------


def test_clipped_surrogate_values_and_gradients():
    ratio = torch.tensor([0.5, 1.0, 1.5, 0.5, 1.5, 1.1], requires_grad=True)
    adv = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, 2.0])
    out = clipped_surrogate(ratio, adv, 0.2)
    # A > 0: min(r A, clip(r) A) caps the gain at (1 + eps) A but keeps the full loss when r < 1 - eps
    # A < 0: caps at (1 - eps) A when r is small, keeps the full loss when r > 1 + eps
    torch.testing.assert_close(out, torch.tensor([0.5, 1.0, 1.2, -0.8, -1.5, 2.2]))
    out.sum().backward()
    # no gradient where the clipped term is the min (r outside the range on the side A favours)
    torch.testing.assert_close(ratio.grad, torch.tensor([1.0, 1.0, 0.0, 0.0, -1.0, 2.0]))


# --- TRPO trust region -------------------------------------------------------------------------------


def _random_rollout(learner, obs_dim, T=64, N=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(T, N, obs_dim, generator=g)
    act, log_prob, value = learner.step(obs.reshape(T * N, obs_dim))
    act = act.reshape(T, N, *act.shape[1:])
    reward = torch.randn(T, N, generator=g)
    ended = (torch.rand(T, N, generator=g) < 0.05).float()
    next_value = torch.cat([value.reshape(T, N)[1:], torch.zeros(1, N)])
    return Rollout(obs, act, log_prob.reshape(T, N), reward, ended * 0.5, ended, value.reshape(T, N), next_value)


@pytest.mark.parametrize("space", [spaces.Discrete(3), spaces.Box(-1.0, 1.0, (2,))])
@pytest.mark.parametrize("max_kl", [0.01, 0.001])
def test_trpo_step_satisfies_kl_bound(space, max_kl):
    torch.manual_seed(0)
    learner = TRPOLearner(TRPOLearnerConfig(max_kl=max_kl, hidden_sizes=(32, 32)), box(4), space, torch.device("cpu"))
    ro = _random_rollout(learner, 4)
    obs = ro.flat("obs")
    with torch.no_grad():
        before = learner.policy(obs)
    metrics = learner.update(ro)
    with torch.no_grad():
        after = learner.policy(obs)
        kl = learner.policy.kl(before, after).mean().item()
    assert metrics["line_search_accepted"].item() == 1.0
    assert 0.0 < kl <= max_kl * (1 + 1e-5), kl
    assert metrics["surrogate_improvement"].item() > 0
    # the quadratic model makes the full natural step land near the bound: not a vanishing step
    assert kl > 0.05 * max_kl


# --- vector env autoreset handling -------------------------------------------------------------------


def _collect(autoreset_mode, vec_env="sync", env="CartPole-v1", n_steps=40):
    agent = PPO(env, n_envs=3, n_steps=n_steps, autoreset_mode=autoreset_mode, vec_env=vec_env, env_kwargs={"max_episode_steps": 12}, seed=5, **{"learner.batch_size": 3 * n_steps}, **TINY)
    agent.collector.reset()
    agent.collect()
    ro = agent.rollout.finish(agent.learner.value_of(agent._obs_tensor(agent.collector.obs)))
    out = {f: getattr(ro, f).clone() for f in ("obs", "act", "log_prob", "reward", "terminated", "ended", "value", "next_value")}
    out["env_steps"] = agent.env_steps
    agent.close()
    return out, agent


def _reference(env_id, actions, seed, n_envs, max_episode_steps):
    """Step plain single envs by hand: the true (s, r, terminated, truncated, s'_final) sequence."""
    rows = []
    for i in range(n_envs):
        env = gym.make(env_id, max_episode_steps=max_episode_steps)
        obs, _ = env.reset(seed=seed + i)
        seq = []
        for a in actions[:, i]:
            nxt, r, term, trunc, _ = env.step(int(a))
            seq.append((obs, r, term, trunc, nxt))
            obs = env.reset()[0] if term or trunc else nxt
        rows.append(seq)
    return rows


@pytest.mark.parametrize("mode,vec_env", [("next_step", "sync"), ("same_step", "sync"), ("disabled", "sync"), ("next_step", "async"), ("same_step", "async")])
def test_autoreset_modes_give_true_transitions(mode, vec_env):
    got, agent = _collect(mode, vec_env)
    assert got["env_steps"] == 3 * 40  # every step is a real transition: none spent on an ignored action
    ref = _reference("CartPole-v1", got["act"].numpy(), 5, 3, 12)
    truncations = 0
    for i in range(3):
        for t, (obs, r, term, trunc, final) in enumerate(ref[i]):
            np.testing.assert_allclose(got["obs"][t, i].numpy(), obs, rtol=0, atol=1e-6)
            assert got["reward"][t, i].item() == r
            assert got["terminated"][t, i].item() == float(term)
            assert got["ended"][t, i].item() == float(term or trunc)
            if trunc and not term:
                truncations += 1
                # a truncated step bootstraps from V of the true final observation, not the reset one
                v_final = agent.learner.value_of(torch.as_tensor(final[None], dtype=torch.float32)).item()
                assert got["next_value"][t, i].item() == pytest.approx(v_final, abs=1e-6)
            elif t + 1 < len(ref[i]) and not term:
                assert got["next_value"][t, i].item() == pytest.approx(got["value"][t + 1, i].item())
    assert truncations > 0  # the 12-step limit must have cut some episodes


def test_autoreset_modes_agree_with_each_other():
    a, _ = _collect("next_step")
    b, _ = _collect("same_step")
    c, _ = _collect("same_step", "async")
    for k in a:
        if k != "env_steps":
            torch.testing.assert_close(a[k], b[k])
            torch.testing.assert_close(a[k], c[k])


# --- exact resume -------------------------------------------------------------------------------------


def _tensors(agent):
    from dynarl.checkpoint import _pack

    tensors = {}
    _pack(agent.learner.state_dict(), "", tensors)
    return tensors


@pytest.mark.parametrize(
    "algo,env,kw",
    [
        (PPO, "CartPole-v1", dict(n_envs=2, n_steps=64, autoreset_mode="next_step", env_kwargs={"max_episode_steps": 50}, **{"learner.batch_size": 64})),
        (PPO, "Pendulum-v1", dict(n_envs=2, n_steps=64, autoreset_mode="same_step", normalize_obs=True, normalize_reward=True, env_kwargs={"max_episode_steps": 50})),
        (TRPO, "CartPole-v1", dict(n_envs=2, n_steps=64, vec_env="async", env_kwargs={"max_episode_steps": 50})),
    ],
)
def test_save_load_resume_equals_uninterrupted(tmp_path, algo, env, kw):
    kw = {**kw, "learner.hidden_sizes": (16, 16), "seed": 3, **TINY}
    per_iter = kw["n_envs"] * kw["n_steps"]
    straight = algo(env, **kw).learn(4 * per_iter)
    first = algo(env, **kw).learn(2 * per_iter)  # stops mid-episode in several envs
    path = first.save(tmp_path / "agent", include_buffer=True)
    first.close()
    resumed = algo.load(path).learn(4 * per_iter)
    a, b = _tensors(straight), _tensors(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    np.testing.assert_array_equal(straight.collector.obs, resumed.collector.obs)
    np.testing.assert_array_equal(straight.obs_rms.mean, resumed.obs_rms.mean)
    assert list(straight.collector.recent_returns) == list(resumed.collector.recent_returns)
    assert (straight.env_steps, straight.episodes) == (resumed.env_steps, resumed.episodes)
    straight.close()
    resumed.close()


def test_continuous_actions_are_clipped_to_bounds_and_predict_works():
    agent = PPO("Pendulum-v1", n_envs=2, n_steps=16, **{"learner.batch_size": 32}, **TINY)
    agent.learn(32)
    act, _ = agent.predict(np.zeros(3, dtype=np.float32))
    assert act.shape == (1,) and -2.0 <= act[0] <= 2.0
    assert agent.actions.to_env(np.array([[5.0], [-5.0]], dtype=np.float32)).tolist() == [[2.0], [-2.0]]
    agent.close()


def test_cli_trains_ppo(tmp_path):
    from conftest import run_cli

    out = tmp_path / "run"
    proc = run_cli("train", "ppo", "--env", "CartPole-v1", "--steps", "512", "--out", str(out), "n_envs=2", "n_steps=128", "eval_every=512", "eval_episodes=1", "checkpoint_every=256", "quiet=true")
    assert proc.returncode == 0, proc.stderr
    assert (out / "summary.json").exists()
    proc = run_cli("resume", str(out), "--steps", "1024")
    assert proc.returncode == 0, proc.stderr


# --- learning (CPU, fixed seed, the presets) -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("cls,steps,bar", [(PPO, 100_000, 475.0), (TRPO, 100_000, 400.0), (A2C, 200_000, 400.0), (REINFORCE, 200_000, 195.0)])
def test_cartpole_learns(cls, steps, bar):
    agent = cls("CartPole-v1", seed=0, steps=steps, eval_every=steps, eval_episodes=10, quiet=True)
    agent.learn()
    mean, std = agent.last_eval
    agent.close()
    print(f"{cls.name} CartPole-v1 {agent.env_steps} steps: eval {mean:.1f} +- {std:.1f}, {agent.wall_seconds:.0f} s")
    assert mean >= bar, f"{cls.name.upper()} reached {mean:.1f} after {agent.env_steps} steps (bar {bar})"
