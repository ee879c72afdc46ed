"""dynarl.envs: make_env errors, the continuous cart-pole, and exactness of every task's reward/termination."""

from __future__ import annotations

import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

from dynarl.envs import TaskSpec, get_task, make_env, registered_tasks
from dynarl.envs.spaces import BOX, require_space
from dynarl.errors import EnvError

EXPECTED_TASKS = {
    "Pendulum-v1",
    "InvertedPendulum-v5",
    "InvertedDoublePendulum-v5",
    "Reacher-v5",
    "Pusher-v5",
    "HalfCheetah-v5",
    "Hopper-v5",
    "Walker2d-v5",
    "Swimmer-v5",
    "Ant-v5",
    "Humanoid-v5",
    "dynarl/ContinuousCartPole-v0",
}
# Tasks where random actions end episodes quickly: the rollout must include real terminations.
MUST_TERMINATE = {
    "InvertedPendulum-v5",
    "InvertedDoublePendulum-v5",
    "Hopper-v5",
    "Walker2d-v5",
    "Ant-v5",
    "Humanoid-v5",
    "dynarl/ContinuousCartPole-v0",
}
NEVER_TERMINATE = {"Pendulum-v1", "Reacher-v5", "Pusher-v5", "HalfCheetah-v5", "Swimmer-v5"}
STEPS = 200


def _rollout(env_id: str, seed: int = 0, steps: int = STEPS, action_scale: float = 1.0, model_obs: bool = True):
    """Random-action transitions (obs, act, next_obs, reward, terminated), next_obs taken before any reset."""
    env = make_env(env_id, model_obs=model_obs)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    rows = []
    for _ in range(steps):
        act = (env.action_space.sample() * action_scale).astype(np.float32)
        next_obs, rew, term, trunc, _ = env.step(act)
        rows.append((obs, act, next_obs, float(rew), bool(term)))
        obs = next_obs
        if term or trunc:
            obs, _ = env.reset()
    env.close()
    o, a, n, r, t = (np.stack([row[i] for row in rows]) for i in range(5))
    return o, a, n, r, t


@pytest.fixture(scope="module")
def rollouts():
    return {env_id: _rollout(env_id) for env_id in sorted(EXPECTED_TASKS)}


def test_registered_tasks():
    assert set(registered_tasks()) == EXPECTED_TASKS
    assert registered_tasks() == sorted(registered_tasks())
    spec = get_task("HalfCheetah-v5")
    assert isinstance(spec, TaskSpec)
    assert spec.env_kwargs == {"exclude_current_positions_from_observation": False}
    assert get_task("CartPole-v1") is None
    with pytest.raises(Exception):
        spec.env_id = "x"  # frozen


@pytest.mark.parametrize("env_id", sorted(EXPECTED_TASKS))
def test_reward_and_termination_match_env(env_id, rollouts):
    task = get_task(env_id)
    o, a, n, r, t = rollouts[env_id]
    obs, act, nxt = (torch.as_tensor(x, dtype=torch.float64) for x in (o, a, n))
    pred = task.reward_fn(obs, act, nxt)
    assert pred.shape == (len(r),) and pred.dtype == torch.float64
    np.testing.assert_allclose(pred.numpy(), r, rtol=1e-4, atol=1e-4, err_msg=env_id)

    done = task.termination_fn(obs, act, nxt)
    assert done.dtype == torch.bool and done.shape == (len(t),)
    assert np.array_equal(done.numpy(), t), (env_id, np.nonzero(done.numpy() != t))
    if env_id in MUST_TERMINATE:
        assert t.any(), f"{env_id}: the rollout saw no termination"
    if env_id in NEVER_TERMINATE:
        assert not t.any()

    # float32 inputs: runs, keeps dtype, close to the env
    obs32, act32, nxt32 = (torch.as_tensor(x, dtype=torch.float32) for x in (o, a, n))
    pred32 = task.reward_fn(obs32, act32, nxt32)
    assert pred32.dtype == torch.float32 and torch.isfinite(pred32).all()
    assert task.termination_fn(obs32, act32, nxt32).dtype == torch.bool


# InvertedDoublePendulum's tip height is not in its standard observation: no standard termination
STANDARD_TERMINATION = sorted(EXPECTED_TASKS - {"InvertedDoublePendulum-v5"})


@pytest.mark.parametrize("env_id", STANDARD_TERMINATION)
def test_standard_observation_termination_matches_env(env_id):
    """MBPO's policy sees the standard observation: its termination function must match the env there."""
    o, a, n, r, t = _rollout(env_id, model_obs=False)
    fn = get_task(env_id).standard_termination()
    done = fn(*(torch.as_tensor(x, dtype=torch.float32) for x in (o, a, n)))
    assert np.array_equal(done.numpy(), t), (env_id, np.nonzero(done.numpy() != t))
    if env_id in MUST_TERMINATE:
        assert t.any()
    assert get_task("InvertedDoublePendulum-v5").standard_termination() is None


@pytest.mark.parametrize("env_id", sorted(EXPECTED_TASKS))
def test_batched_shapes(env_id, rollouts):
    task = get_task(env_id)
    o, a, n, r, t = rollouts[env_id]
    P, N = 3, 8
    obs, act, nxt = (torch.as_tensor(x[: P * N], dtype=torch.float32).reshape(P, N, -1) for x in (o, a, n))
    rew = task.reward_fn(obs, act, nxt)
    done = task.termination_fn(obs, act, nxt)
    assert rew.shape == (P, N) and done.shape == (P, N)
    flat = task.reward_fn(*(x.reshape(P * N, -1) for x in (obs, act, nxt)))
    torch.testing.assert_close(rew.reshape(-1), flat)


def test_model_obs_shapes():
    assert make_env("HalfCheetah-v5").observation_space.shape == (17,)
    assert make_env("HalfCheetah-v5", model_obs=True).observation_space.shape == (18,)
    assert make_env("Ant-v5", model_obs=True).observation_space.shape == (108,)
    env = make_env("Humanoid-v5", model_obs=True)
    assert env.observation_space.shape == (351,)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (351,)
    assert make_env("InvertedDoublePendulum-v5", model_obs=True).observation_space.shape == (13,)


def test_hopper_raw_velocities_decide_health():
    """The Hopper health check uses |qvel| < 100 on raw velocities; model_obs exposes them."""
    task = get_task("Hopper-v5")
    o, a, n, _, _ = _rollout("Hopper-v5", steps=5)
    nxt = torch.as_tensor(n, dtype=torch.float64).clone()
    nxt[:, 1], nxt[:, 2] = 1.25, 0.0  # healthy height and angle
    nxt[:, 6:] = 0.0
    assert not task.termination_fn(None, None, nxt).any()
    nxt[0, -1] = 150.0
    assert task.termination_fn(None, None, nxt)[0]


def test_make_env_unknown_id_suggests_close_match():
    with pytest.raises(EnvError, match=r"Pendulum-v9.*Did you mean: .*Pendulum-v1.*dynarl list") as info:
        make_env("Pendulum-v9")
    assert isinstance(info.value, ValueError)
    with pytest.raises(EnvError, match="HalfCheetah-v5"):
        make_env("halfcheetah-v5")
    with pytest.raises(EnvError, match="unknown environment 'NoSuchThing-v0'"):
        make_env("NoSuchThing-v0")


def test_make_env_bad_kwarg():
    with pytest.raises(EnvError, match=r"Pendulum-v1.*not_an_arg"):
        make_env("Pendulum-v1", not_an_arg=3)


def test_make_env_missing_mujoco(monkeypatch):
    def fail(*args, **kwargs):
        raise gym.error.DependencyNotInstalled("No module named 'mujoco'")

    monkeypatch.setattr(gym, "make", fail)
    with pytest.raises(EnvError, match=r'Hopper-v5.*pip install "dynarl\[mujoco\]"'):
        make_env("Hopper-v5")


def test_make_env_model_obs_errors():
    with pytest.raises(EnvError, match="CartPole-v1"):
        make_env("CartPole-v1", model_obs=True)
    with pytest.raises(EnvError, match="exclude_current_positions_from_observation"):
        make_env("HalfCheetah-v5", model_obs=True, exclude_current_positions_from_observation=True)


def _require_box(env, algo: str) -> None:
    require_space(env.spec.id, env.observation_space, env.action_space, algo, actions=(BOX,), observations=(BOX,))


def test_require_space_names_the_fix():
    env = make_env("CartPole-v1")
    with pytest.raises(EnvError, match=r"SAC takes Box \(flat\) actions, but CartPole-v1 has Discrete\(2\); use a discrete-action algorithm \(DQN"):
        _require_box(env, "SAC")
    _require_box(make_env("Pendulum-v1"), "SAC")


def test_continuous_cartpole():
    import dynarl.envs.cartpole as cp

    cp.register()  # idempotent
    assert "dynarl/ContinuousCartPole-v0" in gym.registry
    env = make_env("dynarl/ContinuousCartPole-v0")
    _require_box(env, "PETS")
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    assert env.spec.max_episode_steps == 200

    def episode(seed):
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for _ in range(10):
            out.append(env.step(np.array([0.3], np.float32))[0])
        return np.stack(out)

    np.testing.assert_array_equal(episode(7), episode(7))
    assert not np.array_equal(episode(7), episode(8))

    # Pushing one way makes it fall: terminated with reward 1 on that step.
    env.reset(seed=0)
    for step in range(200):
        obs, rew, term, trunc, _ = env.step(np.array([5.0], np.float32))  # clipped to 1
        assert rew == 1.0
        if term:
            break
    assert term and not trunc and step < 100
    assert abs(obs[2]) > np.deg2rad(12) or abs(obs[0]) > 2.4

    # Saturation: an action beyond the bounds acts as the bound.
    a, b = gym.make("dynarl/ContinuousCartPole-v0"), gym.make("dynarl/ContinuousCartPole-v0")
    a.reset(seed=1), b.reset(seed=1)
    np.testing.assert_array_equal(a.step(np.array([3.0], np.float32))[0], b.step(np.array([1.0], np.float32))[0])


def test_cartpole_matches_gymnasium_physics():
    """A full-force push equals CartPole-v1's discrete action 1."""
    ours, ref = gym.make("dynarl/ContinuousCartPole-v0"), gym.make("CartPole-v1")
    ours.reset(seed=3), ref.reset(seed=3)
    for k in range(20):
        act = k % 2
        o1 = ours.step(np.array([1.0 if act else -1.0], np.float32))[0]
        o2 = ref.step(act)[0]
        np.testing.assert_allclose(o1, o2, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------------- Gymnasium's checker

# every env dynarl makes: each task with the standard and the model observation, plus the envs of the
# model-free examples (discrete CartPole for PPO); skip_render_check keeps it fast
CHECKED_ENVS = [(env_id, model_obs) for env_id in sorted(EXPECTED_TASKS) for model_obs in (False, True)] + [("CartPole-v1", False)]


@pytest.mark.parametrize("env_id,model_obs", CHECKED_ENVS)
def test_gymnasium_check_env_and_spec_recreation(env_id, model_obs):
    """Gymnasium's own ``check_env`` passes, and ``gymnasium.make(env.spec)`` (what vector envs built from a
    spec and Minari's recorded env spec use) rebuilds the same env, model-observation wrappers included."""
    from gymnasium.envs.registration import EnvSpec
    from gymnasium.utils.env_checker import check_env

    env = make_env(env_id, model_obs=model_obs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checker's advice (infinite Box bounds, asymmetric actions)
        check_env(env, skip_render_check=True)
    for spec in (env.spec, EnvSpec.from_json(env.spec.to_json())):  # in-process and through JSON
        again = gym.make(spec)
        assert again.observation_space == env.observation_space
        assert [w.name for w in again.spec.additional_wrappers] == [w.name for w in env.spec.additional_wrappers]
        if model_obs and get_task(env_id).wrappers:
            assert again.spec.additional_wrappers, "the model_obs wrappers must be recorded in env.spec"
        o1, _ = env.reset(seed=3)
        o2, _ = again.reset(seed=3)
        a = env.action_space.sample()
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(env.step(a)[0], again.step(a)[0])
        again.close()
    env.close()


@pytest.mark.parametrize("env_id,model_obs", [("Pendulum-v1", False), ("Hopper-v5", False), ("Hopper-v5", True)])
def test_gymnasium_check_env_on_the_on_policy_vector_sub_envs(env_id, model_obs):
    """The on-policy loop's sub-envs (make_env wrapped in its EpisodeRecorder) pass check_env too."""
    from functools import partial

    from gymnasium.utils.env_checker import check_env

    from dynarl.envs import make_env
    from dynarl.envs.vector import make_vector_env

    envs = make_vector_env(partial(make_env, env_id, model_obs=model_obs), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(envs.envs[0], skip_render_check=True)
    assert gym.make(envs.envs[0].spec).observation_space == envs.single_observation_space
    envs.close()


def test_append_sim_quantities_names_its_quantities():
    from dynarl.envs.wrappers import SIM_QUANTITIES, AppendSimQuantities

    with pytest.raises(ValueError, match="unknown sim quantities 'nope'.*ant_torso_x"):
        AppendSimQuantities(gym.make("Ant-v5"), "nope")
    assert set(SIM_QUANTITIES) == {"inverted_double_pendulum", "ant_torso_x", "humanoid_mass_centre_x"}


# ----------------------------------------------------------------------------------------------- Atari ids


def test_ale_ids_without_ale_py_say_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ale_py", None)  # importing it raises ImportError, as when not installed
    for env_id in ("ALE/Pong-v5", "ALE/NoSuchGame-v5", "PongNoFrameskip-v4"):
        with pytest.raises(EnvError, match=rf"unknown environment '{env_id}': Atari ids \(ALE/...\) .*pip install ale-py") as info:
            make_env(env_id)
        assert "\n" not in str(info.value)


def test_ale_ids_import_ale_py_to_register_them(monkeypatch, tmp_path):
    """Gymnasium >= 1.0 knows Atari ids only after ``import ale_py``: make_env does that import itself."""
    fake = tmp_path / "ale_py.py"
    fake.write_text('import gymnasium\ngymnasium.register("ALE/Fake-v5", entry_point="gymnasium.envs.classic_control:PendulumEnv")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ale_py", raising=False)
    try:
        env = make_env("ALE/Fake-v5")
        assert env.spec.id == "ALE/Fake-v5"
        with pytest.raises(EnvError, match="unknown environment 'ALE/NoSuchGame-v5'"):
            make_env("ALE/NoSuchGame-v5")  # ale-py there, the game not: the ordinary message
    finally:
        gym.registry.pop("ALE/Fake-v5", None)
        sys.modules.pop("ale_py", None)
