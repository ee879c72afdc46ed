"""MOPO's reward penalties (dynarl.models.penalties) against hand computation on a tiny ensemble."""

import math

import pytest
import torch

from dynarl.errors import ConfigError
from dynarl.models import DynamicsModel, DynamicsModelConfig
from dynarl.models.penalties import INCLUDES_REWARD, PENALTIES, aleatoric, disagreement, ensemble_outputs, penalized_reward, tv_bound

# 3 members, B = 2 rows, D = 2 dims; [members, B, D]
#
# row 0: mu_0 = (1, 0), mu_1 = (3, 0), mu_2 = (2, 3)   -> mu_bar = (2, 1)
#        var_0 = (1, 1), var_1 = (4, 1), var_2 = (2, 1)
#        mu_i - mu_bar: (-1, -1), (1, -1), (0, 2)
# row 1: mu_0 = (0, 0), mu_1 = (0, 0), mu_2 = (3, 0)   -> mu_bar = (1, 0)
#        var_i = (0.5, 0.5) for every member
#        mu_i - mu_bar: (-1, 0), (-1, 0), (2, 0)
MEAN = torch.tensor(
    [
        [[1.0, 0.0], [0.0, 0.0]],
        [[3.0, 0.0], [0.0, 0.0]],
        [[2.0, 3.0], [3.0, 0.0]],
    ],
    dtype=torch.float64,
)
VAR = torch.tensor(
    [
        [[1.0, 1.0], [0.5, 0.5]],
        [[4.0, 1.0], [0.5, 0.5]],
        [[2.0, 1.0], [0.5, 0.5]],
    ],
    dtype=torch.float64,
)


def test_aleatoric_by_hand():
    # ||Sigma_i||_F = sqrt(sum_d var^2)
    # row 0: sqrt(1 + 1) = sqrt 2, sqrt(16 + 1) = sqrt 17, sqrt(4 + 1) = sqrt 5 -> max sqrt 17
    # row 1: sqrt(0.25 + 0.25) = sqrt 0.5 for all three
    torch.testing.assert_close(aleatoric(MEAN, VAR), torch.tensor([math.sqrt(17), math.sqrt(0.5)], dtype=torch.float64))
    # MOPO's code: ||sigma_i||_2 = sqrt(sum_d var)
    # row 0: sqrt 2, sqrt 5, sqrt 3 -> sqrt 5; row 1: sqrt(0.5 + 0.5) = 1
    torch.testing.assert_close(aleatoric(MEAN, VAR, norm="std"), torch.tensor([math.sqrt(5), 1.0], dtype=torch.float64))


def test_disagreement_by_hand():
    # row 0: ||(-1, -1)|| = sqrt 2, ||(1, -1)|| = sqrt 2, ||(0, 2)|| = 2 -> 2
    # row 1: 1, 1, 2 -> 2
    torch.testing.assert_close(disagreement(MEAN, VAR), torch.tensor([2.0, 2.0], dtype=torch.float64))


def test_tv_bound_by_hand():
    # sum_d (mu_i,d - mu_bar,d)^2 / var_i,d
    # row 0: 1/1 + 1/1 = 2, 1/4 + 1/1 = 1.25, 0/2 + 4/1 = 4 -> max 4, mean 7.25 / 3
    # row 1: 1/0.5 = 2, 2, 4/0.5 = 8                          -> max 8, mean 12 / 3 = 4
    torch.testing.assert_close(tv_bound(MEAN, VAR), torch.tensor([4.0, 8.0], dtype=torch.float64))
    torch.testing.assert_close(tv_bound(MEAN, VAR, reduce="mean"), torch.tensor([7.25 / 3, 4.0], dtype=torch.float64))


def test_penalty_table_and_shapes():
    assert set(PENALTIES) == {"aleatoric", "disagreement", "tv_bound"} == set(INCLUDES_REWARD)
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(5, 7, 3, generator=g)
    var = torch.rand(5, 7, 3, generator=g) + 0.1
    for name, fn in PENALTIES.items():
        u = fn(mean, var)
        assert u.shape == (7,), name
        assert u.dtype == torch.float32 and bool((u >= 0).all()), name
    # any batch shape between members and D
    assert tv_bound(mean.view(5, 7, 1, 3), var.view(5, 7, 1, 3)).shape == (7, 1)
    with pytest.raises(ValueError):
        disagreement(mean, var[:, :, :2])
    with pytest.raises(ConfigError):
        tv_bound(mean, var, reduce="sum")
    with pytest.raises(ConfigError):
        aleatoric(mean, var, norm="l1")


def test_identical_members_have_no_disagreement():
    g = torch.Generator().manual_seed(1)
    one = torch.randn(1, 4, 3, generator=g, dtype=torch.float64)
    mean = one.expand(6, 4, 3).clone()
    var = torch.rand(6, 4, 3, generator=g, dtype=torch.float64) + 0.1
    zero = torch.zeros(4, dtype=torch.float64)
    # the ensemble mean of equal numbers can be off by a rounding error, no more
    torch.testing.assert_close(disagreement(mean, var), zero, atol=1e-12, rtol=0)
    torch.testing.assert_close(tv_bound(mean, var), zero, atol=1e-12, rtol=0)
    torch.testing.assert_close(tv_bound(mean, var, reduce="mean"), zero, atol=1e-12, rtol=0)
    # the aleatoric penalty does not look at the means: still the largest ||Sigma_i||_F
    torch.testing.assert_close(aleatoric(mean, var), torch.linalg.vector_norm(var, dim=-1).max(0).values)


def test_tiny_and_zero_variances_stay_finite():
    # dyadic means: the ensemble mean is exact, so identical members give exactly 0 even at zero variance
    mean = torch.tensor([[[0.5, 1.0]], [[0.5, 1.0]], [[0.5, 1.0]]])
    for var in (torch.zeros(3, 1, 2), torch.full((3, 1, 2), 1e-30)):
        for name, fn in PENALTIES.items():
            assert torch.equal(fn(mean, var), torch.zeros(1)), name
    # members that disagree with a (near) zero variance: a large but finite tv_bound, not inf or NaN
    mean = torch.tensor([[[0.0, 0.0]], [[1.0, 0.0]], [[2.0, 0.0]]])
    for var in (torch.zeros(3, 1, 2), torch.full((3, 1, 2), 1e-30)):
        u = tv_bound(mean, var)
        assert bool(torch.isfinite(u).all()) and float(u) > 1e11
        assert float(disagreement(mean, var)) == 1.0
        assert bool(torch.isfinite(aleatoric(mean, var)).all()) and bool(torch.isfinite(aleatoric(mean, var, norm="std")).all())


def test_penalized_reward():
    reward = torch.tensor([1.0, -2.0, 0.5])
    u = torch.tensor([0.5, 2.0, 0.0])
    # r - lambda u with lambda = 2: 1 - 1 = 0, -2 - 4 = -6, 0.5 - 0 = 0.5
    torch.testing.assert_close(penalized_reward(reward, u, 2.0), torch.tensor([0.0, -6.0, 0.5]))
    # lambda = 0: the rewards unchanged bit for bit, even where u is inf or NaN
    g = torch.Generator().manual_seed(2)
    r = torch.randn(100, generator=g)
    wild = torch.rand(100, generator=g) * 1e6
    wild[0], wild[1] = float("inf"), float("nan")
    assert torch.equal(penalized_reward(r, wild, 0.0), r)
    assert torch.equal(penalized_reward(r, wild, 0), r)
    for bad in (-0.5, -1e-9, float("nan")):
        with pytest.raises(ConfigError, match="penalty_coef"):
            penalized_reward(reward, u, bad)
    assert issubclass(ConfigError, ValueError)
    with pytest.raises(ValueError, match="same shape"):
        penalized_reward(reward.unsqueeze(-1), u, 1.0)


def test_on_a_dynamics_model_prediction():
    cfg = DynamicsModelConfig(members=4, hidden_sizes=(8, 8), weight_decay=(0.0, 0.0, 0.0), learn_reward=True)
    g = torch.Generator().manual_seed(3)
    model = DynamicsModel(cfg, obs_dim=3, act_dim=2, generator=g)
    obs, act = torch.randn(6, 3, generator=g), torch.randn(6, 2, generator=g)
    model.fit_normalizers(obs, act, obs + 0.1 * torch.randn(6, 3, generator=g), torch.randn(6, generator=g))
    pred = model.predict(obs, act)
    mean, var = ensemble_outputs(pred, include_reward=True)
    assert mean.shape == var.shape == (4, 6, 4)
    # the reward is appended after the next state
    assert torch.equal(mean[..., 3], pred["reward_mean"]) and torch.equal(var[..., :3], pred["next_obs_var"])
    for name, fn in PENALTIES.items():
        m, v = ensemble_outputs(pred, include_reward=INCLUDES_REWARD[name])
        u = fn(m, v)
        assert u.shape == (6,) and bool(torch.isfinite(u).all()), name
    # next states or deltas: every member adds the same obs, so the disagreement is the same
    m, v = ensemble_outputs(pred, include_reward=False)
    torch.testing.assert_close(disagreement(m, v), disagreement(m - obs, v))
    torch.testing.assert_close(tv_bound(m, v), tv_bound(m - obs, v))
    # a model with the task's reward function has no reward head
    model = DynamicsModel(DynamicsModelConfig(members=2, hidden_sizes=(8,), weight_decay=(0.0, 0.0)), obs_dim=3, act_dim=2)
    with pytest.raises(ValueError, match="learn_reward"):
        ensemble_outputs(model.predict(obs, act), include_reward=True)
