"""dynarl.planning: optimisers, the MPC controller, POPLIN proposals, the planning model; PETS/POPLIN agents
(bad input, planner resets, exact resume, save/load). Learning tests are in test_pets.py."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from dynarl.data.batch import Batch
from dynarl.errors import ConfigError, EnvError
from dynarl.learners.bc import BCLearner, BCLearnerConfig
from dynarl.models import DynamicsModel, DynamicsModelConfig
from dynarl.models.model_env import ModelEnv
from dynarl.planning.fast_model import PlanningModel
from dynarl.planning.mpc import MPCController, OpenLoopActions, PlannerConfig
from dynarl.planning.optimizers import OPTIMIZERS, OptimizerConfig, coloured_noise, make_optimizer, rank_values
from dynarl.planning.poplin import PolicyActionNoise, PolicyParamNoise


def box(n: int) -> gym.spaces.Box:
    """A flat Box space of n dims (learners are built from spaces)."""
    return gym.spaces.Box(-1.0, 1.0, (n,))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# small settings for loop-level agent tests (not learning tests)
TINY = {
    "model.members": 3,
    "model.hidden_sizes": (16, 16),
    "model.weight_decay": (0.0, 0.0, 0.0),
    "trainer.num_elites": 2,
    "trainer.max_epochs": 5,
    "planner.population_size": 20,
    "planner.particles": 2,
    "planner.horizon": 5,
    "planner.num_iterations": 2,
    "eval_episodes": 1,
    "quiet": True,
}

# ----------------------------------------------------------------------------------------------- optimisers

SETTINGS = {  # per optimiser: (config overrides, horizon, action dims, tolerance)
    "cem": (dict(population_size=300, num_iterations=10), 5, 2, 0.03),
    "icem": (dict(population_size=300, num_iterations=10, return_mean_elites=False), 5, 2, 0.05),
    "mppi": (dict(population_size=500, num_iterations=20, temperature=0.01, init_std=0.05), 5, 2, 0.05),
    "random_shooting": (dict(population_size=2000, num_iterations=3), 2, 1, 0.1),
}


def _optimizer(name, lower=-1.0, upper=1.0, dims=1, seed=0, **kw):
    cfg = OptimizerConfig(optimizer=name, **kw)
    lo, hi = torch.full((dims,), float(lower)), torch.full((dims,), float(upper))
    return make_optimizer(cfg, lo, hi, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimiser_finds_the_optimum_of_a_known_quadratic(name):
    kw, H, A, tol = SETTINGS[name]
    target = torch.linspace(-0.6, 0.6, H * A).reshape(H, A)

    def objective(x):  # J(x) = -||x - x*||^2, maximised at x* (inside the bounds)
        return -(x - target).square().sum(dim=(-2, -1))

    opt = _optimizer(name, dims=A, **kw)
    x = opt.optimize(objective, torch.zeros(H, A))
    assert x.shape == (H, A)
    assert (x - target).abs().max() < tol, (name, x, target)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_samples_stay_within_asymmetric_bounds_and_optimum_outside_goes_to_the_bound(name):
    kw, H, A, _ = SETTINGS[name]
    lo, hi = -0.5, 2.0
    seen = []

    def objective(x):  # maximised at 3 > upper bound
        seen.append(x.clone())
        return -(x - 3.0).square().sum(dim=(-2, -1))

    opt = _optimizer(name, lo, hi, dims=A, **kw)
    x = opt.optimize(objective, torch.full((H, A), 0.75))
    allx = torch.cat(seen)
    assert allx.min() >= lo and allx.max() <= hi
    assert x.min() >= lo and x.max() <= hi
    # it moves toward the bound (CEM's truncation shrinks its steps near the edge, so only approaches it)
    assert x.min() > 1.25 and x.mean() > 1.6


def test_cem_truncated_sampling_respects_bounds_near_the_edge():
    seen = []
    opt = _optimizer("cem", -1.0, 1.0, dims=1, population_size=1000, num_iterations=1)
    opt.optimize(lambda x: seen.append(x) or torch.zeros(x.shape[0]), torch.full((4, 1), 0.95))
    x = seen[0]
    assert x.min() >= -1 and x.max() <= 1
    # the spread is shrunk so that mean +- 2 std fits: every sample lies within 0.05 of the mean
    assert (x - 0.95).abs().max() <= 0.05 + 1e-6


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_nan_returns_rank_worst(name):
    kw, H, A, _ = SETTINGS[name]

    def objective(x):  # the higher the better, but everything above 0.2 is NaN (a model that blew up)
        v = x.sum(dim=(-2, -1))
        return torch.where(x.max(-1).values.max(-1).values > 0.2, torch.full_like(v, math.nan), v)

    opt = _optimizer(name, dims=A, **kw)
    x = opt.optimize(objective, torch.zeros(H, A))
    assert torch.isfinite(objective(x.unsqueeze(0))).all(), x
    assert x.max() <= 0.2 + 1e-6
    assert rank_values(torch.tensor([1.0, math.nan, math.inf, -math.inf])).tolist() == [1.0, -math.inf, -math.inf, -math.inf]


def test_icem_executes_the_best_elite_sequence_and_cem_the_mean_by_default():
    """iCEM (Pinneri et al. 2020, Algorithm 1) executes the best elite sequence found, CEM (PETS) the
    smoothed mean; ``return_mean_elites`` still chooses either for both."""
    target = torch.linspace(-0.5, 0.5, 4).reshape(4, 1)

    def value(x):
        return -(x - target).square().sum(dim=(-2, -1))

    def run(name, **kw):
        seen = []
        opt = _optimizer(name, dims=1, population_size=50, num_iterations=3, **kw)
        x = opt.optimize(lambda s: seen.append(s.clone()) or value(s), torch.zeros(4, 1))
        samples = torch.cat(seen)
        return x, samples, opt.last_best_value

    for name in ("icem", "cem"):
        x, samples, best_value = run(name, return_mean_elites=False)
        assert torch.equal(x, samples[value(samples).argmax()]) and value(x[None]).item() == pytest.approx(best_value)
        x, samples, _ = run(name, return_mean_elites=True)
        assert not (samples == x).all(dim=(-2, -1)).any()  # the mean, not a sample
    x, samples, best_value = run("icem")  # default: the best elite sequence
    assert torch.equal(x, samples[value(samples).argmax()]) and value(x[None]).item() == pytest.approx(best_value)
    x, samples, _ = run("cem")  # default: the mean
    assert not (samples == x).all(dim=(-2, -1)).any()
    assert OptimizerConfig().return_mean_elites is None


@pytest.mark.parametrize("override", ["planner.elite_fraction=0.0001", "planner.population_size=1", "planner.elite_fraction=0.004"])
def test_populations_without_elites_are_refused_in_one_line(tmp_path, override):
    from conftest import run_cli

    out = tmp_path / "run"
    proc = run_cli("train", "pets", override, "--out", str(out))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert override.split("=")[0] in proc.stderr and "invalid" in proc.stderr
    assert not out.exists()
    with pytest.raises(ConfigError, match="population_size"):  # the optimisers refuse it when built directly too
        _optimizer("cem", population_size=1)
    # the same fraction is fine when the population leaves an elite, and ignored by optimisers without elites
    assert _optimizer("cem", population_size=300, elite_fraction=0.004) is not None
    assert _optimizer("mppi", population_size=20, elite_fraction=0.0001) is not None


def test_optimisers_are_seeded():
    for name in OPTIMIZERS:
        kw, H, A, _ = SETTINGS[name]
        runs = [_optimizer(name, dims=A, seed=3, **kw).optimize(lambda x: -x.square().sum(dim=(-2, -1)), torch.zeros(H, A)) for _ in range(2)]
        assert torch.equal(runs[0], runs[1]), name


def test_coloured_noise_unit_variance_and_temporal_correlation():
    g = torch.Generator().manual_seed(0)
    like = torch.zeros(())
    white = coloured_noise((4000, 16, 2), 0.0, g, like)
    red = coloured_noise((4000, 16, 2), 2.0, g, like)
    assert red.shape == (4000, 16, 2)
    assert abs(float(red.var()) - 1.0) < 0.1 and abs(float(white.var()) - 1.0) < 0.1

    def lag1(x):
        return float((x[:, 1:] * x[:, :-1]).mean() / x.var())

    assert lag1(red) > 0.5 and abs(lag1(white)) < 0.05


# ----------------------------------------------------------------------------------------------- MPC controller


def _point_model(members=3):
    """A deterministic 1-d 'model' s' = s + a (exact): a linear layer with hand-set weights."""
    cfg = DynamicsModelConfig(kind="deterministic", members=members, hidden_sizes=(4,), weight_decay=(0, 0), activation="relu")
    model = DynamicsModel(cfg, 1, 1)
    with torch.no_grad():
        w0 = torch.zeros(members, 2, 4)
        w0[:, 1, 0], w0[:, 1, 1] = 1.0, -1.0  # relu(a) - relu(-a) = a
        model.net.layers[0].weight.copy_(w0)
        model.net.layers[0].bias.zero_()
        w1 = torch.zeros(members, 4, 1)
        w1[:, 0, 0], w1[:, 1, 0] = 1.0, -1.0
        model.net.layers[1].weight.copy_(w1)
        model.net.layers[1].bias.zero_()
    return model


def _controller(reward_fn, horizon=4, **kw):
    model = _point_model()
    g = torch.Generator().manual_seed(0)
    cfg = PlannerConfig(**{"horizon": horizon, "particles": 3, "population_size": 200, "num_iterations": 5, "precision": "fp32", **kw})
    menv = ModelEnv(model, reward_fn=reward_fn, propagation="ts1", generator=g)
    return MPCController(menv, OpenLoopActions(torch.tensor([-1.0]), torch.tensor([1.0]), horizon), cfg, g)


def test_mpc_reaches_a_goal_and_first_action_is_executed():
    ctrl = _controller(lambda o, a, n: -(n[..., 0] - 2.0).square())
    a = ctrl.act(torch.tensor([0.0]))
    assert a.shape == (1,) and a.item() > 0.8  # drive right toward s = 2 at full speed
    assert ctrl._prev.shape == (4, 1)
    assert ctrl.rows_evaluated == 5 * 200 * 3 * 4  # iterations x population x particles x horizon


def test_warm_start_shifts_the_previous_solution_one_step():
    ctrl = _controller(lambda o, a, n: -(n[..., 0] - 2.0).square())
    inits = []
    optimize = ctrl.optimizer.optimize
    ctrl.optimizer.optimize = lambda f, init: inits.append(init.clone()) or optimize(f, init)
    ctrl.act(torch.tensor([0.0]))
    first = ctrl._prev.clone()
    ctrl.act(torch.tensor([0.5]))
    assert torch.equal(inits[0], torch.zeros(4, 1))  # cold start: centre of the bounds
    assert torch.equal(inits[1][:-1], first[1:]) and inits[1][-1].item() == 0.0  # shifted, centre appended
    ctrl.reset()
    ctrl.act(torch.tensor([0.0]))
    assert torch.equal(inits[2], torch.zeros(4, 1))  # reset clears the warm start


def test_icem_keeps_shifted_elites_across_planning_steps():
    """iCEM: part of the last step's elites, shifted one step, are candidates in the next step's first
    iteration; a new episode forgets them; they survive a checkpoint."""
    ctrl = _controller(lambda o, a, n: -(n[..., 0] - 2.0).square(), optimizer="icem", population_size=100)
    first_iteration = []
    objective = ctrl.objective

    def spy(solutions):
        first_iteration.append(solutions.clone())
        return objective(solutions)

    ctrl.objective = spy
    ctrl.act(torch.tensor([0.0]))
    kept = ctrl.optimizer.kept.clone()
    n_keep = round(0.3 * math.ceil(0.1 * 100))
    assert kept.shape == (n_keep, 4, 1)
    first_iteration.clear()
    ctrl.act(torch.tensor([0.5]))
    shifted = torch.cat([kept[:, 1:], torch.zeros(n_keep, 1, 1)], dim=1)  # shift, centre of the bounds appended
    assert torch.equal(first_iteration[0][-n_keep:], shifted)

    state = ctrl.state_dict()
    ctrl.reset()
    assert ctrl.optimizer.kept is None
    ctrl.load_state_dict(state)
    assert torch.equal(ctrl.optimizer.kept, state["optimizer"]["kept"])


def test_mpc_nan_particles_rank_worst():
    def reward(o, a, n):  # pushing right pays more, but the model "blows up" (NaN) there
        r = n[..., 0]
        return torch.where(a[..., 0] > 0.0, torch.full_like(r, math.nan), r)

    ctrl = _controller(reward, horizon=3)
    ctrl._start = torch.zeros(1, 1)
    values = ctrl.objective(torch.tensor([[[0.5]] * 3, [[-0.5]] * 3]))
    assert values[0].isnan() and torch.isfinite(values[1])
    a = ctrl.act(torch.tensor([0.0]))
    assert a.item() <= 0.0


def test_mpc_terminated_particles_stop_earning():
    def reward(o, a, n):
        return torch.ones(n.shape[:-1])

    model = _point_model()
    g = torch.Generator().manual_seed(0)
    cfg = PlannerConfig(horizon=5, particles=2, population_size=10, num_iterations=1, precision="fp32")
    menv = ModelEnv(model, reward_fn=reward, termination_fn=lambda o, a, n: n[..., 0] >= 2.0, generator=g)
    ctrl = MPCController(menv, OpenLoopActions(torch.tensor([-1.0]), torch.tensor([1.0]), 5), cfg, g)
    ctrl._start = torch.zeros(1, 1)
    values = ctrl.objective(torch.stack([torch.ones(5, 1), -torch.ones(5, 1)]))
    assert values.tolist() == [2.0, 5.0]  # +1, +1 (terminates at s = 2, counted), then nothing


def test_discount_in_objective():
    ctrl = _controller(lambda o, a, n: torch.ones(n.shape[:-1]), horizon=3, gamma=0.5)
    ctrl._start = torch.zeros(1, 1)
    assert ctrl.objective(torch.zeros(2, 3, 1)).tolist() == [1.75, 1.75]


# ----------------------------------------------------------------------------------------------- planning model


@pytest.mark.parametrize("learn_reward", [False, True])
def test_planning_model_matches_predict_fp32_and_bf16_close(learn_reward):
    torch.manual_seed(0)
    cfg = DynamicsModelConfig(members=5, hidden_sizes=(64, 64, 64), weight_decay=(0,) * 4, learn_reward=learn_reward, learn_termination=True)
    model = DynamicsModel(cfg, 4, 2)
    obs, act, nxt = torch.randn(500, 4) * 3 + 1, torch.rand(500, 2), torch.randn(500, 4)
    model.fit_normalizers(obs, act, nxt, torch.randn(500) if learn_reward else None)
    members = torch.tensor([0, 2, 3])
    o, a = torch.randn(3, 50, 4) * 3 + 1, torch.rand(3, 50, 2)
    ref = model.predict(o, a, members)
    fast32 = PlanningModel(model, "fp32").predict(o, a, members)
    fast16 = PlanningModel(model, "bf16").predict(o, a, members)
    assert ref.keys() == fast32.keys() == fast16.keys()
    for k in ref:
        torch.testing.assert_close(fast32[k], ref[k], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(fast16[k], ref[k], rtol=0.05, atol=0.05)
    # weights changed in place (a training step) -> the cache is rebuilt
    pm = PlanningModel(model, "fp32")
    pm.predict(o, a, members)
    with torch.no_grad():
        model.net.layers[1].weight.mul_(1.5)
    torch.testing.assert_close(pm.predict(o, a, members)["next_obs_mean"], model.predict(o, a, members)["next_obs_mean"], rtol=1e-4, atol=1e-4)


def test_planning_model_bf16_keeps_small_deltas_of_large_observations():
    # observations far from zero with a small spread: normalised before the cast, bf16 keeps their detail
    torch.manual_seed(0)
    model = DynamicsModel(DynamicsModelConfig(members=3, hidden_sizes=(64, 64), weight_decay=(0,) * 3), 2, 1)
    obs = 10 + 0.1 * torch.randn(500, 2)
    act = torch.rand(500, 1)
    model.fit_normalizers(obs, act, obs + 0.01 + 1e-2 * torch.randn(500, 2))
    o, a = 10 + 0.1 * torch.randn(3, 50, 2), torch.rand(3, 50, 1)
    ref = model.predict(o, a)["next_obs_mean"]
    fast = PlanningModel(model, "bf16").predict(o, a)["next_obs_mean"]
    delta_ref, delta_fast = ref - o, fast - o
    assert (delta_fast - delta_ref).abs().max() < 0.05 * delta_ref.std()


# ----------------------------------------------------------------------------------------------- BC and POPLIN proposals


def test_bc_learner_fits_a_linear_expert():
    torch.manual_seed(0)
    learner = BCLearner(BCLearnerConfig(hidden_sizes=(32,), lr=3e-3), box(3), box(2), torch.device("cpu"))
    obs = torch.randn(1000, 3) * 4
    act = torch.tanh(obs @ torch.tensor([[0.3, -0.2], [0.1, 0.2], [-0.25, 0.05]]))
    learner.fit_normalizer(obs)
    first = None
    for i in range(400):
        idx = torch.randint(0, 1000, (128,))
        z = torch.zeros(128)
        m = learner.update(Batch(obs[idx], act[idx], z, obs[idx], z, z))
        first = first if first is not None else float(m["bc_loss"])
    with torch.no_grad():
        final = float(learner.loss(obs, act))
    assert final < 0.01 < first and learner.all_finite()


def test_poplin_proposals():
    from dynarl.nn.bc_policy import BCPolicy

    torch.manual_seed(0)
    policy = BCPolicy(3, 2, (8, 8))
    lo, hi = torch.tensor([-2.0, 0.0]), torch.tensor([2.0, 1.0])
    obs = torch.randn(6, 3)  # N = 3 candidates x P = 2 particles
    expected = lo + (policy(obs) + 1) * (hi - lo) / 2

    p = PolicyParamNoise(policy, lo, hi)
    params = p.prepare(torch.zeros(3, p.upper.numel()))
    with torch.no_grad():
        torch.testing.assert_close(p.actions(params, obs, 0, 2), expected)  # omega = 0: the policy itself
        moved = p.actions(p.prepare(torch.randn(3, p.upper.numel()) * 0.3), obs, 0, 2)
    assert not torch.allclose(moved, expected) and (moved >= lo).all() and (moved <= hi).all()

    a = PolicyActionNoise(policy, lo, hi, horizon=4, noise_bound=0.5)
    assert torch.equal(a.upper, torch.tensor([1.0, 0.25]))
    delta = torch.zeros(3, 4, 2)
    delta[:, 1] = 10.0
    with torch.no_grad():
        torch.testing.assert_close(a.actions(delta, obs, 0, 2), expected)
        assert torch.equal(a.actions(delta, obs, 1, 2), hi.expand(6, 2))  # clipped to the bounds
    assert torch.equal(a.shift(torch.ones(4, 2), obs[0])[-1], torch.zeros(2))


# ----------------------------------------------------------------------------------------------- agents


def test_bad_input_is_clear():
    from dynarl.algos.pets import PETS

    with pytest.raises(ConfigError, match="learned_reward=true"):
        PETS("MountainCarContinuous-v0", **TINY)
    with pytest.raises(EnvError, match="continuous"):
        PETS("CartPole-v1", **TINY)
    with pytest.raises(ConfigError, match="planner.population_size"):
        PETS("Pendulum-v1", **{**TINY, "planner.population_size": 0})
    with pytest.raises(ConfigError, match="num_elites"):
        PETS("Pendulum-v1", **{**TINY, "trainer.num_elites": 5})
    with pytest.raises(ConfigError, match="propagation"):
        PETS("Pendulum-v1", **{**TINY, "planner.propagation": "ts_2"})


def test_learned_reward_on_a_task_without_reward_function():
    from dynarl.algos.pets import PETS

    agent = PETS("MountainCarContinuous-v0", learned_reward=True, **{**TINY, "steps": 30, "random_trials": 1})
    assert agent.model.cfg.learn_reward and agent.controller.model_env.reward_fn is None
    agent.collector.reset()
    for _ in range(20):
        agent.train_step()
    assert agent.buffer.size == 20
    agent._fit_model()  # a 999-step random trial is too long for a unit test: fit now
    a, _ = agent.predict(agent.collector.obs[0])
    assert a.shape == (1,) and np.isfinite(a).all()


def test_planner_state_resets_between_episodes_and_evaluation_is_deterministic():
    from dynarl.algos.pets import PETS

    agent = PETS("dynarl/ContinuousCartPole-v0", **TINY)
    agent.collector.reset()
    while agent.episodes < 1:  # random trial
        agent.train_step()
    assert agent.model_fits == 1
    agent.train_step()
    assert agent.controller._prev is not None
    resets = []
    reset = agent.controller.reset
    agent.controller.reset = lambda seed=None: resets.append(agent.env_steps) or reset(seed)
    start = agent.episodes
    while agent.episodes == start:
        agent.train_step()
    assert resets == [agent.env_steps] and agent.controller._prev is None  # reset at the episode's end
    assert agent.model_fits == 2  # and the model was retrained after the trial

    agent.predict(agent.collector.obs[0])
    assert agent.eval_controller._prev is not None
    agent.eval_env.reset(seed=5)
    assert agent.eval_controller._prev is None  # every evaluation episode starts cold
    from dynarl.run.evaluate import evaluate

    first, second = (evaluate(agent.eval_env, agent.policy_action, 2, agent.cfg.seed) for _ in range(2))
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("algo", ["pets", "poplin_a", "poplin_p"])
def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path, algo):
    from dynarl.algos import get_algorithm

    cls = get_algorithm(algo)
    over = {**TINY, "steps": 260, "eval_every": 1000, "random_trials": 1, "env": "dynarl/ContinuousCartPole-v0"}
    whole = cls(**over).learn()
    part = cls(**over).learn(130)  # stops mid-episode
    assert 0 < part.collector.episode_lengths[0]
    path = part.save(tmp_path / "agent", include_buffer=True)
    resumed = cls.load(path).learn()
    a, b = whole.state_dict()["parts"], resumed.state_dict()["parts"]
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert torch.equal(a["buffer"]["data"]["act"], b["buffer"]["data"]["act"])
    assert torch.equal(a["controller"]["prev"], b["controller"]["prev"])
    assert whole.episodes == resumed.episodes and whole.model_fits == resumed.model_fits
    if algo != "pets":
        for k, v in whole.learner.policy.state_dict().items():
            assert torch.equal(v, resumed.learner.policy.state_dict()[k]), k
        assert whole.learner.num_updates > 0


def test_truncated_normal_moments():
    from dynarl.planning.optimizers import truncated_normal

    z = truncated_normal((200_000,), torch.Generator().manual_seed(0), torch.zeros(()))
    assert z.min() >= -2 and z.max() <= 2
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 0.8796) < 0.01  # std of N(0, 1) truncated to [-2, 2]
