"""The offline model-free learners: CQL's regulariser, IQL's expectile regression, AWAC's weights, against hand computations."""

import copy
import math

import gymnasium as gym
import pytest
import torch
from torch import nn
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from dynarl.data.batch import Batch
from dynarl.errors import DynarlError
from dynarl.learners.awac import AWACLearner, AWACLearnerConfig
from dynarl.learners.base import ActorCriticLearner
from dynarl.learners.cql import CQLLearner, CQLLearnerConfig
from dynarl.learners.iql import IQLLearner, IQLLearnerConfig, expectile_loss
from dynarl.learners.sac import SACLearner, SACLearnerConfig
from dynarl.nn.policies import TanhGaussianActor

CPU = torch.device("cpu")
SMALL = (16, 16)


def box(n: int) -> gym.spaces.Box:
    return gym.spaces.Box(-1.0, 1.0, (n,))


def _batch(n=8, obs_dim=3, act_dim=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(
        obs=torch.randn(n, obs_dim, generator=g),
        act=torch.rand(n, act_dim, generator=g) * 2 - 1,
        reward=torch.randn(n, generator=g),
        next_obs=torch.randn(n, obs_dim, generator=g),
        terminated=(torch.rand(n, generator=g) < 0.25).float(),
        truncated=torch.zeros(n),
    )


def _params(learner) -> list[torch.Tensor]:
    return [p.detach().clone() for m in learner.modules.values() for p in m.parameters()]


# --- TanhGaussianActor.log_prob --------------------------------------------------------------------


def test_log_prob_matches_forward_and_torch_distributions():
    torch.manual_seed(0)
    actor = TanhGaussianActor(3, 2, SMALL)
    obs = torch.randn(64, 3)
    act, logp = actor(obs)
    assert torch.allclose(actor.log_prob(obs, act), logp, atol=1e-3)
    mean, log_std = actor._mean_log_std(obs)
    fixed = torch.tensor([[0.3, -0.7]]).expand(64, 2)
    expected = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform()]).log_prob(fixed).sum(-1)
    assert torch.allclose(actor.log_prob(obs, fixed), expected, atol=1e-4)
    assert torch.isfinite(actor.log_prob(obs, torch.ones(64, 2))).all()  # boundary actions are clamped, not infinite


def test_sample_n_draws_what_forward_draws_on_repeated_states():
    actor = TanhGaussianActor(3, 2, SMALL)
    obs = torch.randn(5, 3)
    torch.manual_seed(4)
    act, logp = actor(obs.repeat_interleave(6, 0))
    torch.manual_seed(4)
    act_n, logp_n = actor.sample_n(obs, 6)
    assert act_n.shape == (5, 6, 2) and logp_n.shape == (5, 6)
    torch.testing.assert_close(act_n, act.view(5, 6, 2), rtol=0, atol=1e-6)
    torch.testing.assert_close(logp_n, logp.view(5, 6), rtol=0, atol=1e-5)
    assert act_n.std(1).min() > 0  # n different samples per state, not one repeated


# --- CQL -------------------------------------------------------------------------------------------


def test_cql_regularizer_against_hand_importance_sampled_logsumexp():
    torch.manual_seed(0)
    n, temp = 4, 0.5
    learner = CQLLearner(CQLLearnerConfig(hidden_sizes=(4,), cql_n_actions=n, cql_temperature=temp), box(2), box(2), CPU)
    b = _batch(n=3, obs_dim=2, act_dim=2)
    torch.manual_seed(7)
    gap, extras = learner.cql_regularizer(learner.critic(b.obs, b.act), b.obs, b.next_obs)
    torch.manual_seed(7)
    act, log_density = learner.cql_proposals(b.obs, b.next_obs)  # the same draws
    assert act.shape == (3, 3 * n, 2) and act.abs().max() <= 1.0
    assert torch.allclose(log_density[:, :n], torch.full((3, n), -2 * math.log(2.0)))  # uniform on [-1, 1]^2
    assert torch.allclose(log_density[:, n:2 * n], learner.actor.log_prob(b.obs.repeat_interleave(n, 0), act[:, n:2 * n].reshape(-1, 2)).view(3, n), atol=1e-3)
    assert torch.allclose(log_density[:, 2 * n:], learner.actor.log_prob(b.next_obs.repeat_interleave(n, 0), act[:, 2 * n:].reshape(-1, 2)).view(3, n), atol=1e-3)
    with torch.no_grad():  # T log (sum_j exp(Q(s, a_j)/T) / mu(a_j)) state by state, sample by sample, in float64
        soft_max = torch.zeros(2, 3, dtype=torch.float64)
        for i in range(3):
            for j in range(3 * n):
                q = learner.critic(b.obs[i:i + 1], act[i, j:j + 1]).double()[:, 0]
                soft_max[:, i] += torch.exp(q / temp) / torch.exp(log_density[i, j].double())
        soft_max = temp * torch.log(soft_max)
        q_data = learner.critic(b.obs, b.act).double()
    expected = soft_max.mean(1) - q_data.mean(1)
    assert gap.shape == (2,)
    assert torch.allclose(gap.double(), expected, atol=1e-5)
    assert torch.allclose(extras["q_ood"].double(), soft_max.mean(), atol=1e-5) and torch.allclose(extras["q_data"].double(), q_data.mean(), atol=1e-6)


def test_cql_pushdown_states_can_differ_from_pushed_up_pairs():
    torch.manual_seed(0)
    learner = CQLLearner(CQLLearnerConfig(hidden_sizes=SMALL), box(3), box(2), CPU)
    b, other = _batch(), _batch(n=5, seed=1)
    q_data = learner.critic(b.obs, b.act)
    torch.manual_seed(3)
    gap_other, extras = learner.cql_regularizer(q_data, other.obs, other.next_obs)  # COMBO: push down at other (model) states
    torch.manual_seed(3)
    q_ood_other = learner.cql_logsumexp(other.obs, *learner.cql_proposals(other.obs, other.next_obs)).mean(1)
    assert torch.allclose(gap_other, q_ood_other - q_data.mean(1), atol=1e-6)


@pytest.mark.parametrize("lagrange", [False, True])
def test_cql_critic_loss_is_twice_sacs_bellman_plus_weighted_gap(lagrange):
    torch.manual_seed(0)
    cfg = CQLLearnerConfig(hidden_sizes=SMALL, cql_alpha=2.0, lagrange=lagrange, target_action_gap=3.0)
    learner = CQLLearner(cfg, box(3), box(2), CPU)
    if lagrange:
        with torch.no_grad():
            learner.log_alpha_prime.fill_(math.log(0.5))
    b = _batch()
    torch.manual_seed(5)
    loss, _ = learner.critic_loss(b)
    torch.manual_seed(5)
    bellman, _ = ActorCriticLearner.critic_loss(learner, b)  # SAC's, drawn in the same order
    gap, _ = learner.cql_regularizer(learner.critic(b.obs, b.act), b.obs, b.next_obs)
    expected = 2 * bellman + (2.0 * 0.5 * (gap - 3.0)).sum() if lagrange else 2 * bellman + 2.0 * gap.sum()  # the full MSE: twice SAC's J_Q
    assert torch.allclose(loss, expected, atol=1e-5)


def test_cql_with_alpha_zero_is_sac_exactly():
    b = _batch()
    torch.manual_seed(0)
    sac = SACLearner(SACLearnerConfig(hidden_sizes=SMALL), box(3), box(2), CPU)
    torch.manual_seed(0)
    cql = CQLLearner(CQLLearnerConfig(hidden_sizes=SMALL, cql_alpha=0.0, actor_lr=3e-4), box(3), box(2), CPU)
    for k in range(3):
        torch.manual_seed(10 + k)
        m_sac = sac.update(b)
        torch.manual_seed(10 + k)
        m_cql = cql.update(b)
        assert torch.equal(m_sac["critic_loss"], m_cql["critic_loss"]) and torch.equal(m_sac["actor_loss"], m_cql["actor_loss"])
    for p, q in zip(_params(sac), _params(cql)):
        assert torch.equal(p, q)


def test_cql_deterministic_backup_drops_only_the_entropy_bonus():
    b = _batch()
    torch.manual_seed(0)
    soft = CQLLearner(CQLLearnerConfig(hidden_sizes=SMALL, gamma=0.9), box(3), box(2), CPU)
    plain = CQLLearner(CQLLearnerConfig(hidden_sizes=SMALL, gamma=0.9, deterministic_backup=True), box(3), box(2), CPU)
    plain.load_state_dict(soft.state_dict())
    torch.manual_seed(3)
    y = plain.td_target(b)
    torch.manual_seed(3)
    with torch.no_grad():
        a, log_prob = soft.actor(b.next_obs)
        q_next = soft.critic_target(b.next_obs, a).min(0).values
    assert torch.allclose(y, b.reward + 0.9 * (1 - b.terminated) * q_next)
    torch.manual_seed(3)
    assert torch.allclose(soft.td_target(b), b.reward + 0.9 * (1 - b.terminated) * (q_next - soft.log_alpha.exp() * log_prob))


@pytest.mark.parametrize("threshold, grows", [(-100.0, True), (1e4, False)])
def test_cql_lagrange_multiplier_moves_toward_the_threshold(threshold, grows):
    torch.manual_seed(0)
    learner = CQLLearner(CQLLearnerConfig(hidden_sizes=SMALL, lagrange=True, target_action_gap=threshold, cql_alpha_lr=1e-2), box(3), box(2), CPU)
    m = learner.update(_batch())
    alpha_prime = learner.log_alpha_prime.exp().item()
    assert (alpha_prime > 1.0) if grows else (alpha_prime < 1.0)  # gap above the threshold: more weight; below: less
    assert set(m) >= {"cql_loss", "cql_alpha", "q_ood", "q_data", "cql_alpha_loss"}


def _bandit_q(cql_alpha: float) -> tuple[torch.Tensor, dict]:
    """Q at a = -0.9, 0.5, 0.9 after 300 updates on a one-state bandit: behaviour a ~ N(0.5, 0.05), reward -(a - 0.5)^2."""
    torch.manual_seed(0)
    learner = CQLLearner(CQLLearnerConfig(hidden_sizes=(32, 32), critic_lr=1e-3, cql_alpha=cql_alpha), box(1), box(1), CPU)
    g = torch.Generator().manual_seed(1)
    act = (0.5 + 0.05 * torch.randn(256, 1, generator=g)).clamp(-1, 1)
    data = Batch(obs=torch.zeros(256, 1), act=act, reward=-(act[:, 0] - 0.5).pow(2), next_obs=torch.zeros(256, 1),
                 terminated=torch.ones(256), truncated=torch.zeros(256))
    for _ in range(300):
        m = learner.update(data)
    assert learner.all_finite()
    with torch.no_grad():
        return learner.critic(torch.zeros(3, 1), torch.tensor([[-0.9], [0.5], [0.9]])).min(0).values, m


def test_cql_is_conservative_on_a_one_state_bandit():
    q, m = _bandit_q(5.0)
    assert q[0] < q[1] - 0.5 and q[2] < q[1], q  # out-of-data actions are pushed well below the data's value (~0)
    assert abs(m["q_data"].item()) < 1.0  # the data's own Q stays near its reward
    q_sac, _ = _bandit_q(0.0)
    assert not q_sac[0] < q_sac[1] - 0.5, q_sac  # plain SAC's critic on the same data has no such margin


# --- IQL -------------------------------------------------------------------------------------------


def test_expectile_loss_hand_values():
    u = torch.tensor([-2.0, 1.0])
    assert torch.isclose(expectile_loss(u, 0.7), torch.tensor((0.3 * 4 + 0.7 * 1) / 2))
    assert torch.isclose(expectile_loss(u, 0.5), 0.5 * u.pow(2).mean())  # tau = 1/2: half the MSE


class _FixedQ(nn.Module):
    """Twin Q'(s, a) = (5 a^2 + a, 5 a^2 + a + 1): the min is 5 a^2 + a."""

    def forward(self, obs, act):
        q = 5 * act[:, 0].pow(2) + act[:, 0]
        return torch.stack([q, q + 1])


def _expectile(x: torch.Tensor, tau: float) -> float:
    """The tau-expectile of x by bisection on sum |tau - 1(x < v)| (x - v) = 0."""
    lo, hi = x.min().item(), x.max().item()
    for _ in range(60):
        v = (lo + hi) / 2
        if ((tau - (x < v).float()).abs() * (x - v)).sum() > 0:
            lo = v
        else:
            hi = v
    return (lo + hi) / 2


@pytest.mark.parametrize("tau", [0.5, 0.9])
def test_iql_value_regresses_on_the_expectile_of_the_target_q(tau):
    torch.manual_seed(0)
    learner = IQLLearner(IQLLearnerConfig(hidden_sizes=SMALL, expectile=tau, value_lr=1e-2), box(1), box(1), CPU)
    learner.critic_target = _FixedQ()
    obs, act = torch.zeros(16, 1), torch.linspace(-1, 1, 16).unsqueeze(1)
    for _ in range(600):
        loss, _ = learner.value_loss(obs, act)
        learner._step("value", loss)
    q = 5 * act[:, 0].pow(2) + act[:, 0]
    v = learner.value(obs[:1]).item()
    expected = q.mean().item() if tau == 0.5 else _expectile(q, tau)  # tau = 1/2: plain MSE regression on the mean of Q
    assert abs(v - expected) < 0.02, (v, expected)
    if tau > 0.5:
        assert v > q.mean().item() + 0.5


def test_iql_q_target_uses_value_of_next_state_and_per_row_discount():
    torch.manual_seed(0)
    learner = IQLLearner(IQLLearnerConfig(hidden_sizes=SMALL, gamma=0.9), box(3), box(2), CPU)
    b = _batch()
    next_v = torch.randn(8)
    loss, _ = learner.critic_loss(b, next_v)
    q = learner.critic(b.obs, b.act)
    y = b.reward + 0.9 * (1 - b.terminated) * next_v
    assert torch.allclose(loss, (q - y).pow(2).mean(), atol=1e-6)
    discount = torch.rand(8)
    loss_n, _ = learner.critic_loss(b.replace(discount=discount), next_v)
    assert torch.allclose(loss_n, (q - (b.reward + discount * (1 - b.terminated) * next_v)).pow(2).mean(), atol=1e-6)


@pytest.mark.parametrize("actor", ["gaussian", "deterministic"])
def test_iql_actor_loss_is_clamped_advantage_weighted_cloning(actor):
    torch.manual_seed(0)
    learner = IQLLearner(IQLLearnerConfig(hidden_sizes=SMALL, beta=3.0, actor=actor), box(3), box(2), CPU)
    b = _batch()
    adv = torch.tensor([-1.0, 0.0, 0.5, 1.0, 1.6, 2.0, -0.2, 3.0])
    loss, mean_weight = learner.actor_loss(b.obs, b.act, adv)
    w = torch.tensor([min(math.exp(3.0 * a), 100.0) for a in adv.tolist()])
    bc = -learner.actor.log_prob(b.obs, b.act) if actor == "gaussian" else (learner.actor(b.obs) - b.act).pow(2).sum(-1)
    assert torch.allclose(loss, (w * bc).mean(), rtol=1e-5) and torch.isclose(mean_weight, w.mean())


def test_iql_actor_lr_cosine_decay():
    learner = IQLLearner(IQLLearnerConfig(hidden_sizes=SMALL, actor_lr=1e-3, actor_lr_decay_steps=4), box(3), box(2), CPU)
    lrs = []
    for _ in range(6):
        learner.update(_batch())
        lrs.append(learner.optimizers["actor"].param_groups[0]["lr"])
    expected = [1e-3 * 0.5 * (1 + math.cos(math.pi * min(t, 4) / 4)) for t in range(6)]
    assert lrs == pytest.approx(expected)


# --- AWAC ------------------------------------------------------------------------------------------


def test_awac_weights_and_target_by_hand():
    torch.manual_seed(0)
    learner = AWACLearner(AWACLearnerConfig(hidden_sizes=SMALL, awac_lambda=0.01, gamma=0.9), box(3), box(2), CPU)
    b = _batch(n=64)
    torch.manual_seed(4)
    weights, adv = learner.advantage_weights(b.obs, b.act)
    torch.manual_seed(4)
    with torch.no_grad():
        v = learner.critic(b.obs, learner.actor(b.obs)[0]).min(0).values
        a = learner.critic(b.obs, b.act).min(0).values - v
    expected = torch.exp(a / 0.01).clamp(max=100.0)
    assert torch.allclose(adv, a) and torch.allclose(weights, expected)
    assert (weights == 100.0).any() and (weights < 100.0).any()  # both sides of the clamp are exercised
    torch.manual_seed(6)
    y = learner.td_target(b)
    torch.manual_seed(6)
    with torch.no_grad():
        y_hand = b.reward + 0.9 * (1 - b.terminated) * learner.critic_target(b.next_obs, learner.actor(b.next_obs)[0]).min(0).values
    assert torch.allclose(y, y_hand)  # no entropy bonus
    torch.manual_seed(8)
    loss, mean_weight, _ = learner.actor_loss(b.obs, b.act)
    torch.manual_seed(8)
    w, _ = learner.advantage_weights(b.obs, b.act)
    assert torch.allclose(loss, -(learner.actor.log_prob(b.obs, b.act) * w).mean()) and torch.isclose(mean_weight, w.mean())


# --- every learner ---------------------------------------------------------------------------------

LEARNERS = {
    "cql": lambda: CQLLearner(CQLLearnerConfig(hidden_sizes=SMALL, cql_n_actions=4), box(3), box(2), CPU),
    "cql_lagrange": lambda: CQLLearner(CQLLearnerConfig(hidden_sizes=SMALL, cql_n_actions=4, lagrange=True), box(3), box(2), CPU),
    "iql": lambda: IQLLearner(IQLLearnerConfig(hidden_sizes=SMALL), box(3), box(2), CPU),
    "iql_deterministic": lambda: IQLLearner(IQLLearnerConfig(hidden_sizes=SMALL, actor="deterministic", actor_lr_decay_steps=10), box(3), box(2), CPU),
    "awac": lambda: AWACLearner(AWACLearnerConfig(hidden_sizes=SMALL), box(3), box(2), CPU),
}


@pytest.mark.parametrize("name", list(LEARNERS))
def test_updates_stay_finite_and_state_dict_round_trip_gives_the_same_next_update(name):
    torch.manual_seed(0)
    learner = LEARNERS[name]()
    for k in range(5):
        metrics = learner.update(_batch(seed=k))
    assert learner.all_finite() and all(torch.isfinite(v).all() for v in metrics.values())
    assert all(not v.requires_grad for v in metrics.values())
    state = copy.deepcopy(learner.state_dict())
    torch.manual_seed(123)
    restored = LEARNERS[name]()
    restored.load_state_dict(state)
    assert restored.num_updates == 5
    b = _batch(seed=99)
    torch.manual_seed(1)
    m1 = learner.update(b)
    torch.manual_seed(1)
    m2 = restored.update(b)
    for k in m1:
        assert torch.equal(m1[k], m2[k]), k
    for p, q in zip(_params(learner), _params(restored)):
        assert torch.equal(p, q)
    for deterministic in (False, True):
        a = learner.act(torch.randn(7, 3), deterministic)
        assert a.shape == (7, 2) and a.abs().max() <= 1.0


@pytest.mark.parametrize("cls, cfg", [(CQLLearner, CQLLearnerConfig), (IQLLearner, IQLLearnerConfig), (AWACLearner, AWACLearnerConfig)])
def test_discrete_actions_are_refused(cls, cfg):
    with pytest.raises(DynarlError, match="Box action space"):
        cls(cfg(hidden_sizes=SMALL), box(3), gym.spaces.Discrete(3), CPU)


@pytest.mark.parametrize("learner_cls, cfg_cls", [(CQLLearner, CQLLearnerConfig), (IQLLearner, IQLLearnerConfig)])
def test_compiled_bf16_updates_follow_the_eager_ones(learner_cls, cfg_cls):
    """``precision=bf16 compile=true`` (the fastest CPU setting, benchmarks/offline_speed.py) runs the same update
    as eager bf16: with inductor drawing its random numbers as eager torch does, the losses of five successive
    updates agree to bf16 precision."""
    import torch._inductor.config as inductor_config

    losses = []
    for compile_ in (False, True):
        torch.manual_seed(0)
        learner = learner_cls(cfg_cls(hidden_sizes=SMALL, precision="bf16", compile=compile_), box(3), box(2), CPU)
        torch.manual_seed(1)
        with inductor_config.patch(fallback_random=True):
            metrics = [learner.update(_batch(n=32, seed=k)) for k in range(5)]
        losses.append(torch.stack([torch.stack([m["critic_loss"], m["actor_loss"]]) for m in metrics]))
    torch.testing.assert_close(losses[1], losses[0], rtol=2e-2, atol=2e-2)
    assert losses[0].std(0).min() > 0.05  # the losses move over the five updates: the comparison is not of constants
