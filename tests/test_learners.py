import math

import gymnasium as gym
import pytest
import torch
from state_compare import assert_updates_agree
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform
from torch.utils._python_dispatch import TorchDispatchMode

from dynarl.data.batch import Batch
from dynarl.learners import DDPGLearner, DDPGLearnerConfig, SACLearner, SACLearnerConfig, TD3Learner, TD3LearnerConfig
from dynarl.learners.base import soft_update
from dynarl.learners.dqn import DQNLearner, DQNLearnerConfig
from dynarl.nn.mlp import EnsembleMLP, mlp
from dynarl.nn.policies import TanhGaussianActor


def box(n: int) -> gym.spaces.Box:
    """A flat Box space of n dims (learners are built from spaces)."""
    return gym.spaces.Box(-1.0, 1.0, (n,))

CPU = torch.device("cpu")


def _batch(n=8, obs_dim=3, act_dim=1):
    g = torch.Generator().manual_seed(0)
    return Batch(
        obs=torch.randn(n, obs_dim, generator=g),
        act=torch.rand(n, act_dim, generator=g) * 2 - 1,
        reward=torch.randn(n, generator=g),
        next_obs=torch.randn(n, obs_dim, generator=g),
        terminated=torch.tensor([1.0, 0, 0, 0, 1, 0, 0, 0])[:n],
        truncated=torch.tensor([0.0, 1, 0, 0, 1, 0, 1, 0])[:n],
    )


def test_sac_target_bootstraps_through_truncation_and_stops_at_termination():
    torch.manual_seed(0)
    learner = SACLearner(SACLearnerConfig(gamma=0.9, init_alpha=0.5), box(3), box(1), CPU)
    b = _batch()
    torch.manual_seed(1)
    y = learner.td_target(b)
    torch.manual_seed(1)
    a2, logp2 = learner.actor(b.next_obs)
    q2 = learner.critic_target(b.next_obs, a2)
    expected = b.reward + 0.9 * (1 - b.terminated) * (torch.minimum(q2[0], q2[1]) - 0.5 * logp2)
    assert torch.allclose(y, expected, atol=1e-6)
    assert torch.allclose(y[b.terminated == 1], b.reward[b.terminated == 1])  # no bootstrap at termination
    trunc_only = (b.truncated == 1) & (b.terminated == 0)
    assert not torch.allclose(y[trunc_only], b.reward[trunc_only])  # truncation still bootstraps


def test_td3_target_uses_min_of_twin_targets_and_clipped_smoothing():
    torch.manual_seed(0)
    learner = TD3Learner(TD3LearnerConfig(gamma=0.9, target_noise=10.0, noise_clip=0.3), box(3), box(1), CPU)
    b = _batch()
    mu = learner.actor_target(b.next_obs)
    acts = torch.stack([learner.target_action(b.next_obs) for _ in range(200)])
    assert (acts - mu).abs().max() <= 0.3 + 1e-6 and acts.abs().max() <= 1.0  # clip(N, -c, c), then action bounds
    torch.manual_seed(3)
    y = learner.td_target(b)
    torch.manual_seed(3)
    q = learner.critic_target(b.next_obs, learner.target_action(b.next_obs))
    assert torch.allclose(y, b.reward + 0.9 * (1 - b.terminated) * q.min(0).values)
    assert learner.critic_target.net.layers[0].members == 2


def test_td3_delays_actor_and_targets_ddpg_does_not():
    torch.manual_seed(0)
    td3 = TD3Learner(TD3LearnerConfig(policy_delay=2), box(3), box(1), CPU)
    ddpg = DDPGLearner(DDPGLearnerConfig(), box(3), box(1), CPU)
    b = _batch()
    m = [td3.update(b) for _ in range(4)]
    assert ["actor_loss" in x for x in m] == [True, False, True, False]
    assert all("actor_loss" in ddpg.update(b) for _ in range(3))
    assert ddpg.critic.net.layers[0].members == 1


def test_polyak_convention_tau_weights_online():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = a.weight.detach().clone()
    soft_update(a, b, 0.25)
    assert torch.allclose(a.weight, 0.75 * before + 0.25 * b.weight)


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    torch.manual_seed(0)
    actor = TanhGaussianActor(3, 2, (16, 16))
    obs = torch.randn(64, 3)
    torch.manual_seed(5)
    act, logp = actor(obs)
    mean, log_std = actor._mean_log_std(obs)
    ref = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform(cache_size=1)])
    torch.manual_seed(5)
    u = mean + log_std.exp() * torch.randn_like(mean)
    assert torch.allclose(act, torch.tanh(u), atol=1e-6)
    assert torch.allclose(logp, ref.log_prob(torch.tanh(u)).sum(-1), atol=1e-3)
    assert act.abs().max() < 1 and (log_std >= -5).all() and (log_std <= 2).all()


def test_sac_temperature_moves_towards_target_entropy():
    torch.manual_seed(0)
    learner = SACLearner(SACLearnerConfig(alpha_lr=1e-2, target_entropy=-100.0), box(3), box(1), CPU)
    b = _batch()
    for _ in range(20):
        m = learner.update(b)
    # entropy far above a target of -100 -> alpha must shrink
    assert float(m["alpha"]) < 1.0
    learner = SACLearner(SACLearnerConfig(alpha_lr=1e-2, target_entropy=100.0), box(3), box(1), CPU)
    for _ in range(20):
        m = learner.update(b)
    assert float(m["alpha"]) > 1.0


def test_ensemble_mlp_equals_separate_mlps():
    torch.manual_seed(0)
    ens = EnsembleMLP(3, 5, (8, 8), 2)
    x = torch.randn(4, 5)
    out = ens(x)
    for m in range(3):
        ref = mlp(5, (8, 8), 2)
        with torch.no_grad():
            for lin, el in zip([l for l in ref if isinstance(l, torch.nn.Linear)], ens.layers):
                lin.weight.copy_(el.weight[m].T)
                lin.bias.copy_(el.bias[m, 0])
        assert torch.allclose(out[m], ref(x), atol=1e-6)


def test_non_finite_loss_is_detected():
    torch.manual_seed(0)
    learner = SACLearner(SACLearnerConfig(), box(3), box(1), CPU)
    b = _batch()
    learner.update(b)
    assert learner.all_finite()
    b.reward[0] = math.nan
    learner.update(b)
    assert not learner.all_finite()


@pytest.mark.parametrize("variant", [{}, {"double_q": True, "dueling": True, "loss": "mse"}, {"weights_and_discount": True}])
def test_dqn_compiled_update_follows_the_eager_one(variant):
    """The compiled update differentiates the loss with torch.func in one graph (gradients clipped inside it):
    the same losses, clipped gradients and weights as autograd's eager update."""
    from gymnasium import spaces

    from dynarl.learners.dqn import DQNLearner, DQNLearnerConfig

    torch.manual_seed(0)
    b = _batch()
    b = Batch(obs=b.obs, act=(b.act[:, 0] > 0).float(), reward=b.reward, next_obs=b.next_obs, terminated=b.terminated, truncated=b.truncated)
    options = {k: v for k, v in variant.items() if k != "weights_and_discount"}
    if "weights_and_discount" in variant:
        b = b.replace(weights=torch.rand(b.reward.shape[0]) * 2, discount=torch.full((b.reward.shape[0],), 0.97**3))
    # max_grad_norm 0.05 so the clipping acts in every variant
    eager, compiled = (DQNLearner(DQNLearnerConfig(hidden_sizes=(16, 16), compile=c, max_grad_norm=0.05, **options), box(3), spaces.Discrete(2), CPU) for c in (False, True))
    compiled.q.load_state_dict(eager.q.state_dict())
    compiled.q_target.load_state_dict(eager.q_target.state_dict())
    for _ in range(3):
        m_eager, m_compiled = eager.update(b), compiled.update(b)
        for k in ("q_loss", "q", "td_abs"):
            assert torch.allclose(m_eager[k], m_compiled[k], rtol=1e-5, atol=1e-6)
    assert torch.allclose(eager.last_td_error, compiled.last_td_error, rtol=1e-5, atol=1e-6)
    for p, q in zip(eager.q.parameters(), compiled.q.parameters()):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-6)
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6)


def _actor_critics():
    from dynarl.learners.awac import AWACLearner, AWACLearnerConfig
    from dynarl.learners.cql import CQLLearner, CQLLearnerConfig
    from dynarl.learners.iql import IQLLearner, IQLLearnerConfig

    return {"sac": (SACLearner, SACLearnerConfig, {}), "td3": (TD3Learner, TD3LearnerConfig, {"policy_delay": 1}), "ddpg": (DDPGLearner, DDPGLearnerConfig, {}),
            "awac": (AWACLearner, AWACLearnerConfig, {}), "cql": (CQLLearner, CQLLearnerConfig, {}), "cql_lagrange": (CQLLearner, CQLLearnerConfig, {"lagrange": True}),
            "iql": (IQLLearner, IQLLearnerConfig, {}), "iql_deterministic": (IQLLearner, IQLLearnerConfig, {"actor": "deterministic"})}  # fmt: skip


@pytest.mark.parametrize("name", list(_actor_critics()))
def test_compiled_actor_critic_updates_follow_the_eager_ones(name):
    """``compile=true`` differentiates each loss in one graph (torch.func over the optimiser's parameters alone):
    three updates give the eager updates' metrics, gradients and weights (fp32, with inductor drawing its random
    numbers as eager torch does)."""
    cls, cfg_cls, options = _actor_critics()[name]
    learners = []
    for compile_ in (False, True):
        torch.manual_seed(0)
        learners.append(cls(cfg_cls(hidden_sizes=(16, 16), compile=compile_, **options), box(3), box(2), CPU))
    eager, compiled = learners
    assert_updates_agree(eager, compiled, _batch(act_dim=2))
    assert {opt for opt, _ in compiled._gradients} >= {"critic", "actor"}  # the steps that ran in one graph
    for (n, p), q in zip(eager._module_call.named_parameters(), compiled._module_call.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=n)
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-3, atol=1e-5, msg=n)


def test_each_compiled_learner_compiles_each_gradient_once():
    """Every learner's compiled functions have code objects of their own (dynamo keeps graphs per code object): two
    learners of each kind in one process, three updates each, and not one recompilation (with a shared code object
    the second learner's first update recompiles, and after 8 graphs dynamo stops compiling)."""
    import torch._dynamo

    b = _batch(act_dim=2)
    dqn_batch = Batch(obs=b.obs, act=(b.act[:, 0] > 0).float(), reward=b.reward, next_obs=b.next_obs, terminated=b.terminated, truncated=b.truncated)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for name in ("sac",):
            cls, cfg_cls, options = _actor_critics()[name]
            for _ in range(2):
                learner = cls(cfg_cls(hidden_sizes=(16, 16), compile=True, precision="bf16", **options), box(3), box(2), CPU)
                for _ in range(3):
                    learner.update(b)
        for _ in range(2):
            learner = DQNLearner(DQNLearnerConfig(hidden_sizes=(16, 16), compile=True), box(3), gym.spaces.Discrete(2), CPU)
            for _ in range(3):
                learner.update(dqn_batch)


def test_bf16_and_compiled_losses_update_and_stay_fp32():
    torch.manual_seed(0)
    b = _batch()
    for cfg in (SACLearnerConfig(precision="bf16", hidden_sizes=(16, 16)), SACLearnerConfig(compile=True, hidden_sizes=(16, 16))):
        learner = SACLearner(cfg, box(3), box(1), CPU)
        for _ in range(3):
            m = learner.update(b)
        assert m["critic_loss"].dtype == torch.float32 and learner.all_finite()
        assert all(p.dtype == torch.float32 for p in learner.critic.parameters())
    dqn = DQNLearner(DQNLearnerConfig(precision="bf16", hidden_sizes=(16, 16), dueling=True), box(3), gym.spaces.Discrete(2), CPU)
    b = Batch(obs=b.obs, act=(b.act[:, 0] > 0).float(), reward=b.reward, next_obs=b.next_obs, terminated=b.terminated, truncated=b.truncated)
    for _ in range(3):
        m = dqn.update(b)
    assert m["q_loss"].dtype == torch.float32 and m["q"].dtype == torch.float32 and dqn.all_finite()
    assert all(p.dtype == torch.float32 for p in dqn.q.parameters())


class _MatmulDtypes(TorchDispatchMode):
    """Records the dtype and the (M, K, N) sizes of every matmul run inside it (forward and backward)."""

    MATMULS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default, torch.ops.aten.baddbmm.default}

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[torch.dtype, tuple[int, int, int]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.MATMULS:
            a, b = args[-2], args[-1]
            self.seen.append((b.dtype, (a.shape[-2], a.shape[-1], b.shape[-1])))
        return func(*args, **(kwargs or {}))


def test_a_bf16_update_runs_every_wide_matmul_in_bf16():
    """precision=bf16 means every network pass of an update, including no-gradient passes that feed a loss (IQL's
    V(s') ran in fp32 before, 4-7% of its update), runs the matmuls of its wide layers in bf16; a thin layer (at
    most 16 inputs or outputs: here the observation layers and the heads) stays fp32 (dynarl.nn.mlp.Linear and
    EnsembleLinear)."""
    from dynarl.learners.awac import AWACLearner, AWACLearnerConfig
    from dynarl.learners.cql import CQLLearner, CQLLearnerConfig
    from dynarl.learners.iql import IQLLearner, IQLLearnerConfig

    torch.manual_seed(0)
    b = _batch(obs_dim=5, act_dim=2)
    thin = {1, 2, 4, 5, 7}  # the widths of the thin layers: obs, obs + act, act, 2 act (a Gaussian head), a value
    discrete = Batch(obs=b.obs, act=(b.act[:, 0] > 0).float(), reward=b.reward, next_obs=b.next_obs, terminated=b.terminated, truncated=b.truncated)
    learners = [(cls(cfg(precision="bf16", hidden_sizes=(32, 32)), box(5), box(2), CPU), b) for cls, cfg in (
        (SACLearner, SACLearnerConfig), (TD3Learner, TD3LearnerConfig), (DDPGLearner, DDPGLearnerConfig), (CQLLearner, CQLLearnerConfig),
        (IQLLearner, IQLLearnerConfig), (AWACLearner, AWACLearnerConfig))]
    learners.append((DQNLearner(DQNLearnerConfig(precision="bf16", hidden_sizes=(32, 32)), box(5), gym.spaces.Discrete(2), CPU), discrete))
    for learner, batch in learners:
        learner.update(batch)  # first update: optimiser state made outside the recording
        with _MatmulDtypes() as seen:
            for _ in range(2):  # TD3 updates its actor every other step
                learner.update(batch)
        wide = [d for d, sizes in seen.seen if not thin & set(sizes)]
        assert wide and set(wide) == {torch.bfloat16}, (type(learner).__name__, seen.seen)
        assert {d for d, sizes in seen.seen if thin & set(sizes)} == {torch.float32}, (type(learner).__name__, seen.seen)
