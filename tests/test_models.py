"""dynarl.models / dynarl.nn.ensemble: the ensemble, losses, trainer, model env, inverse model, diagnostics.

The Pendulum accuracy test trains a real 5 x 4x200 Gaussian ensemble (about 15-20 s on one CPU core).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dynarl.errors import CheckpointError, ConfigError
from dynarl.models import DynamicsModel, DynamicsModelConfig, ModelTrainer, ModelTrainerConfig, load_model, losses, save_model
from dynarl.models import diagnostics as diag
from dynarl.models.inverse import InverseDynamicsModel, InverseModelConfig
from dynarl.models.model_env import ModelEnv
from dynarl.nn.ensemble import EnsembleNet
from dynarl.run.diagnostics_plot import plot_diagnostics


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # small matmuls gain nothing from a second thread, and a shared 2-core machine makes OpenMP spin badly
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _zero(obs, act, next_obs):
    return torch.zeros(next_obs.shape[:-1])


# ----------------------------------------------------------------------------------------------- network


def _per_member_mlps(net: EnsembleNet) -> list[nn.Sequential]:
    """Separately built nn.Linear/SiLU MLPs holding copies of each member's weights."""
    mlps = []
    for m in range(net.members):
        layers = []
        for i, layer in enumerate(net.layers):
            lin = nn.Linear(layer.in_dim, layer.out_dim)
            with torch.no_grad():
                lin.weight.copy_(layer.weight[m].T)
                lin.bias.copy_(layer.bias[m, 0])
            layers.append(lin)
            if i < len(net.layers) - 1:
                layers.append(nn.SiLU())
        mlps.append(nn.Sequential(*layers))
    return mlps


def test_vectorised_ensemble_equals_per_member_mlps_forward_and_gradients():
    torch.manual_seed(0)
    net = EnsembleNet(4, 5, (16, 16), 3, "silu", weight_decay=(1e-3, 2e-3, 3e-3)).double()
    mlps = [m.double() for m in _per_member_mlps(net)]
    shared = torch.randn(7, 5, dtype=torch.float64)
    per_member = torch.randn(4, 7, 5, dtype=torch.float64)

    out_shared, out_per = net(shared), net(per_member)
    for m, mlp in enumerate(mlps):
        torch.testing.assert_close(out_shared[m], mlp(shared))
        torch.testing.assert_close(out_per[m], mlp(per_member[m]))
    # a subset of members (elites) gathers the same weights
    sub = torch.tensor([3, 1])
    torch.testing.assert_close(net(shared, sub), torch.stack([mlps[3](shared), mlps[1](shared)]))

    # gradients: a per-member loss summed over members gives each member the gradient of its own MLP
    (out_per.square().sum() + net.weight_decay_loss()).backward()
    for m, mlp in enumerate(mlps):
        loss = mlp(per_member[m]).square().sum()
        lins = [l for l in mlp if isinstance(l, nn.Linear)]
        loss = loss + sum(d * 0.5 * l.weight.square().sum() for d, l in zip(net.weight_decay, lins))
        loss.backward()
        for layer, lin in zip(net.layers, lins):
            torch.testing.assert_close(layer.weight.grad[m], lin.weight.grad.T)
            torch.testing.assert_close(layer.bias.grad[m, 0], lin.bias.grad)


def test_weight_decay_is_per_layer_l2_in_the_loss():
    net = EnsembleNet(3, 4, (6,), 2, weight_decay=(0.5, 2.0))
    expected = 0.5 * 0.5 * net.layers[0].weight.square().sum() + 2.0 * 0.5 * net.layers[1].weight.square().sum()
    torch.testing.assert_close(net.weight_decay_loss(), expected)
    with pytest.raises(ValueError, match="one entry per layer|layers"):
        EnsembleNet(3, 4, (6,), 2, weight_decay=(0.5,))
    with pytest.raises(ConfigError, match="weight_decay"):
        DynamicsModel(DynamicsModelConfig(hidden_sizes=(8, 8), weight_decay=(1e-4,)), 3, 1)


# ----------------------------------------------------------------------------------------------- losses


def test_gaussian_nll_equals_hand_formula():
    torch.manual_seed(1)
    mean, logvar, target = torch.randn(2, 5, 3), torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    got = losses.gaussian_nll(mean, logvar, target)
    for m in range(2):
        total = 0.0
        for n in range(5):
            for d in range(3):
                var = math.exp(logvar[m, n, d].item())
                total += (mean[m, n, d].item() - target[m, n, d].item()) ** 2 / var + math.log(var)  # 003
        assert got[m].item() == pytest.approx(total / 15, rel=1e-5)
    # and it is 2 x the Gaussian NLL minus log(2 pi): the same minimiser as maximum likelihood (000 eq. 2)
    nll = -torch.distributions.Normal(mean, (0.5 * logvar).exp()).log_prob(target).mean(dim=(1, 2))
    torch.testing.assert_close(got, 2 * nll - math.log(2 * math.pi))


def test_logvar_stays_inside_the_learned_bounds():
    raw = torch.linspace(-1e4, 1e4, 2001).view(1, -1, 1).expand(1, -1, 2)
    max_lv, min_lv = torch.tensor([[[0.5, 1.0]]]), torch.tensor([[[-10.0, -3.0]]])
    lv = losses.soft_bound_logvar(raw, max_lv, min_lv)
    # PETS/MBPO's two softplus clamps: the lower bound is exact, the upper one overshoots by at most
    # log(1 + exp(-(max - min))) (the second softplus acts on the first's output): 2.7e-5 for the defaults
    assert (lv >= min_lv).all() and (lv <= max_lv + torch.log1p(torch.exp(-(max_lv - min_lv))) + 1e-6).all()
    assert (lv[:, :, 0] <= max_lv[..., 0] + 3e-5).all()
    # and in a model, whatever the input
    model = DynamicsModel(DynamicsModelConfig(members=3, hidden_sizes=(8,), weight_decay=(0, 0)), 2, 1)
    with torch.no_grad():
        model.net.layers[-1].weight.mul_(1e4)
    _, logvar, _ = model(torch.randn(50, 2) * 100, torch.randn(50, 1) * 100)
    assert (logvar <= model.max_logvar + 3e-5).all() and (logvar >= model.min_logvar).all()
    assert losses.logvar_bound_penalty(max_lv, min_lv).item() == pytest.approx(0.01 * (1.5 - (-13.0)))


def test_model_loss_is_sum_of_members_plus_decay_plus_bound_penalty():
    torch.manual_seed(2)
    model = DynamicsModel(DynamicsModelConfig(members=3, hidden_sizes=(8,), weight_decay=(1e-2, 1e-2)), 2, 1)
    obs, act, nxt = torch.randn(3, 4, 2), torch.randn(3, 4, 1), torch.randn(3, 4, 2)
    total, per_member = model.loss(obs, act, nxt)
    mean, logvar, _ = model(obs, act)
    target = model.target_normalizer.normalize(nxt - obs)
    expected = losses.gaussian_nll(mean, logvar, target).sum() + model.net.weight_decay_loss()
    expected = expected + 0.01 * (model.max_logvar.sum() - model.min_logvar.sum())
    torch.testing.assert_close(total, expected)
    assert per_member.shape == (3,)


def test_h_step_loss_matches_hand_formula():
    torch.manual_seed(3)
    cfg = DynamicsModelConfig(kind="deterministic", members=2, hidden_sizes=(8,), weight_decay=(0, 0))
    model = DynamicsModel(cfg, 2, 1)
    obs_seq, act_seq = torch.randn(4, 4, 2), torch.randn(4, 3, 1)
    got = model.h_step_loss(obs_seq, act_seq)
    assert got.shape == (2,)
    got.sum().backward()  # differentiable through the rollout
    with torch.no_grad():
        for m in range(2):
            s, total = obs_seq[:, 0], 0.0
            for i in range(3):
                mean, _, _ = model(s.unsqueeze(0).expand(2, -1, -1), act_seq[:, i].unsqueeze(0).expand(2, -1, -1))
                s_next = s + mean[m]
                true_delta = obs_seq[:, i + 1] - obs_seq[:, i]
                total += ((s_next - s) - true_delta).norm(dim=-1).mean() / 3  # unsquared L2 (000 eq. 5)
                s = s_next
            assert got[m].item() == pytest.approx(total.item(), rel=1e-5)


# ----------------------------------------------------------------------------------------------- trainer


def _linear_data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs, act = torch.randn(n, 2, generator=g), torch.randn(n, 1, generator=g)
    nxt = obs + 0.1 * torch.cat([act, -act], 1) + 0.05 * obs
    return obs, act, nxt


class _ScriptedTrainer(ModelTrainer):
    """Holdout scores from a script; records every member's weights each time a score is asked for."""

    def __init__(self, *a, scores, **k):
        super().__init__(*a, **k)
        self.scores, self.snapshots = list(scores), []

    def _holdout_score(self, hold, chunk=8192):
        self.snapshots.append([p.detach().clone() for p in self.model.net.parameters()])
        return torch.tensor(self.scores.pop(0))


def test_early_stopping_keeps_each_members_own_best_snapshot():
    torch.manual_seed(4)
    model = DynamicsModel(DynamicsModelConfig(members=2, hidden_sizes=(8,), weight_decay=(0, 0)), 2, 1)
    scores = [[1.0, 1.0], [0.5, 0.995], [0.6, 0.8], [0.55, 0.9], [0.7, 0.85], [0.5, 0.8]]  # last: after restore
    trainer = _ScriptedTrainer(model, ModelTrainerConfig(batch_size=32, patience=2, num_elites=1), scores=scores)
    result = trainer.fit(*_linear_data())
    assert len(result.rows) == 5  # epochs 4 and 5 improve no member: stop after patience=2
    assert [r["epochs_since_update"] for r in result.rows] == [0, 0, 0, 1, 2]
    best_epoch = {0: 2, 1: 3}  # member 0: 0.5 at epoch 2 (0.995 is < 1% better for member 1); member 1: 0.8 at epoch 3
    for p_idx, p in enumerate(model.net.parameters()):
        for m, epoch in best_epoch.items():
            torch.testing.assert_close(p[m], trainer.snapshots[epoch - 1][p_idx][m])
    assert model.elite_idx.tolist() == [0]  # final scores [0.5, 0.8]
    assert result.metrics["model_elites"] == [0]
    assert "holdout_mse_m1" in result.rows[0] and "train_loss_m0" in result.rows[0]


def test_trainer_holdout_split_bootstrap_and_divergence():
    obs, act, nxt = _linear_data(300)
    model = DynamicsModel(DynamicsModelConfig(members=3, hidden_sizes=(16,), weight_decay=(0, 0)), 2, 1)
    result = ModelTrainer(model, ModelTrainerConfig(batch_size=64, max_epochs=3)).fit(obs, act, nxt)
    assert result.metrics["model_holdout_size"] == 60  # min(20%, 5000)
    assert len(result.rows) == 3 and math.isfinite(result.metrics["model_holdout_mse"])
    from dynarl.errors import TrainingDivergedError

    bad = nxt.clone()
    bad[5] = float("nan")
    with pytest.raises(TrainingDivergedError, match="diverged"):
        ModelTrainer(model, ModelTrainerConfig(max_epochs=2)).fit(obs, act, bad)


def test_save_load_round_trip(tmp_path):
    obs, act, nxt = _linear_data(200)
    cfg = DynamicsModelConfig(members=3, hidden_sizes=(16,), weight_decay=(1e-4, 1e-4), learn_reward=True)
    model = DynamicsModel(cfg, 2, 1)
    reward = obs.sum(-1)
    ModelTrainer(model, ModelTrainerConfig(max_epochs=2, num_elites=2, recalibrate=True)).fit(obs, act, nxt, reward)
    path = tmp_path / "model.safetensors"
    save_model(path, model)
    loaded = load_model(path)
    assert loaded.elite_idx.tolist() == model.elite_idx.tolist() and len(loaded.elite_idx) == 2
    a, b = model.predict(obs, act), loaded.predict(obs, act)
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    torch.testing.assert_close(loaded.variance_scale, model.variance_scale)
    from dynarl.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "other.safetensors", "sac", {"x": torch.zeros(1)})
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "other.safetensors")


# ----------------------------------------------------------------------------------------------- model env


CONSTANTS = torch.tensor([1.0, 10.0, 100.0, 1000.0])


def _signature_model(elites=(0, 1, 2, 3)) -> DynamicsModel:
    """A deterministic ensemble whose member m adds CONSTANTS[m] to every state coordinate."""
    cfg = DynamicsModelConfig(kind="deterministic", members=4, hidden_sizes=(4,), weight_decay=(0, 0))
    model = DynamicsModel(cfg, 2, 1)
    with torch.no_grad():
        model.net.layers[-1].weight.zero_()
        model.net.layers[-1].bias.copy_(CONSTANTS.view(4, 1, 1).expand(4, 1, 2))
    model.elite_idx = torch.tensor(elites)
    return model


def _deltas(out):
    return (out["obs"][..., 1:, 0] - out["obs"][..., :-1, 0])  # [N, P, H]


@pytest.mark.parametrize("particles", [6, 8])  # 6: PETS's even split over 3 elites; 8: global permutation
def test_ts_inf_keeps_one_member_per_particle_and_ts1_mixes(particles):
    elites = (0, 2, 3)
    allowed = CONSTANTS[list(elites)]
    start, acts = torch.zeros(5, 2), torch.zeros(5, 12, 1)

    out = ModelEnv(_signature_model(elites), reward_fn=_zero, propagation="ts_inf", seed=0).rollout(start, acts, particles=particles)
    d = _deltas(out)
    assert (d == d[..., :1]).all()  # one signature for the whole horizon
    assert torch.isin(d, allowed).all()  # elites only
    assert (CONSTANTS[out["member"]] == d).all()  # the reported member is the one used
    if particles % 3 == 0:  # PETS split: every rollout's particles spread evenly over the elites
        for n in range(5):
            assert sorted(d[n, :, 0].tolist()) == sorted(allowed.repeat(particles // 3).tolist())

    out = ModelEnv(_signature_model(elites), reward_fn=_zero, propagation="ts1", seed=0).rollout(start, acts, particles=particles)
    d = _deltas(out)
    assert torch.isin(d, allowed).all()
    mixed = (d != d[..., :1]).any(-1)  # particles whose signature changed along the horizon
    assert mixed.float().mean() > 0.9
    assert (CONSTANTS[out["member"]] == d).all()


def test_random_propagation_keeps_one_member_per_rollout_and_expectation_averages():
    elites = (1, 2, 3)
    start, acts = torch.zeros(7, 2), torch.zeros(7, 5, 1)
    out = ModelEnv(_signature_model(elites), reward_fn=_zero, propagation="random", seed=1).rollout(start, acts, particles=4)
    d = _deltas(out)
    assert (d == d[:, :1, :1]).all()  # all particles, all steps of a rollout: one member
    assert torch.isin(d, CONSTANTS[list(elites)]).all()
    assert len(set(d[:, 0, 0].tolist())) > 1  # different rollouts draw different members

    out = ModelEnv(_signature_model(elites), reward_fn=_zero, propagation="expectation").rollout(start, acts, particles=2)
    torch.testing.assert_close(_deltas(out), torch.full((7, 2, 5), CONSTANTS[list(elites)].mean().item()))


def test_termination_persists_within_a_rollout():
    model = _signature_model((0,))  # adds 1 per step

    def reward(obs, act, next_obs):
        return torch.ones(next_obs.shape[:-1])

    def term(obs, act, next_obs):
        return next_obs[..., 0] >= 3.0

    start = torch.tensor([[0.0, 0.0], [-10.0, 0.0]])
    out = ModelEnv(model, reward_fn=reward, termination_fn=term, propagation="ts1").rollout(start, torch.zeros(2, 8, 1))
    t0 = out["terminated"][0, 0]
    assert t0.tolist() == [False, False, True, True, True, True, True, True]
    assert out["obs"][0, 0, 3:, 0].eq(3.0).all()  # frozen at the terminal state
    assert out["reward"][0, 0].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert out["alive"][0, 0].tolist() == [True, True, True, False, False, False, False, False]
    assert not out["terminated"][1, 0].any() and out["return"][1, 0] == 8


def test_a_score_runs_every_member_on_the_live_rows_once_and_leaves_the_rollout_unchanged():
    """With ``score`` (MOPO's penalty) each step predicts with every member, elites or not, on the rows still
    running; each row keeps the member and draws it had without a score, and gets score(predictions)."""
    seen = []

    def score(pred):
        seen.append(tuple(pred["next_obs_mean"].shape))
        return pred["next_obs_mean"][..., 0].sum(0)  # sum_m (x + CONSTANTS[m]) = 4 x + 1111

    def term(obs, act, next_obs):
        return next_obs[..., 0] >= 1500.0

    start, acts = torch.tensor([[0.0, 0.0], [-5000.0, 0.0], [1000.0, 0.0]]), torch.zeros(3, 6, 1)
    runs = [ModelEnv(_signature_model((0, 2, 3)), reward_fn=_zero, termination_fn=term, propagation="ts1", seed=3, score=s).rollout(start, acts, particles=2) for s in (None, score)]
    for key in ("obs", "reward", "terminated", "alive", "member"):
        assert torch.equal(runs[0][key], runs[1][key]), key
    out = runs[1]
    alive, x = out["alive"], out["obs"][..., :-1, 0]
    assert seen[0] == (4, 6, 2) and [n for _, n, _ in seen] == alive.sum((0, 1)).tolist()  # all 4 members, live rows only
    assert not alive.all() and alive[1].all()  # the third start's particles terminate, the second's never do
    assert torch.equal(out["score"], torch.where(alive, 4 * x + CONSTANTS.sum(), 0.0))
    with pytest.raises(ConfigError, match="score"):
        ModelEnv(_signature_model(), reward_fn=_zero, propagation="expectation", score=score)


def test_model_env_policy_rollout_known_reward_and_seeded_determinism():
    from dynarl.envs import get_task

    torch.manual_seed(5)
    model = DynamicsModel(DynamicsModelConfig(members=3, hidden_sizes=(16,), weight_decay=(0, 0)), 3, 1)
    start = torch.randn(4, 3)

    def policy(obs):
        return -obs[:, 2:3].clamp(-2, 2)

    runs = [ModelEnv(model, "Pendulum-v1", propagation="ts1", seed=7).rollout(start, policy=policy, rollout_length=6, particles=3) for _ in range(2)]
    for key in runs[0]:
        torch.testing.assert_close(runs[0][key], runs[1][key])  # same seed, same imagined data
    out = runs[0]
    assert out["obs"].shape == (4, 3, 7, 3) and out["act"].shape == (4, 3, 6, 1) and out["return"].shape == (4, 3)
    reward = get_task("Pendulum-v1").reward_fn(out["obs"][:, :, :-1], out["act"], out["obs"][:, :, 1:])
    torch.testing.assert_close(out["reward"], reward)
    with pytest.raises(ConfigError, match="propagation"):
        ModelEnv(model, "Pendulum-v1", propagation="ts_2")
    with pytest.raises(ConfigError, match="reward"):
        ModelEnv(model)


def test_learned_reward_and_termination_heads():
    obs, act, nxt = _linear_data(256)
    reward, term = obs[:, 0], (nxt[:, 0] > 1.0).float()
    cfg = DynamicsModelConfig(members=2, hidden_sizes=(32,), weight_decay=(0, 0), learn_reward=True, learn_termination=True)
    model = DynamicsModel(cfg, 2, 1)
    ModelTrainer(model, ModelTrainerConfig(batch_size=32, max_epochs=30)).fit(obs, act, nxt, reward, term)
    pred = model.predict(obs, act)
    assert set(pred) >= {"reward_mean", "reward_var", "termination_prob"}
    assert ((pred["termination_prob"].mean(0) > 0.5).float() == term).float().mean() > 0.9
    out = ModelEnv(model, propagation="ts_inf").rollout(obs[:8], torch.zeros(8, 3, 1), particles=2)
    assert out["reward"].shape == (8, 2, 3)


# ----------------------------------------------------------------------------------------------- inverse


def test_inverse_dynamics_recovers_actions():
    g = torch.Generator().manual_seed(6)
    obs, act = torch.randn(1024, 3, generator=g), torch.rand(1024, 2, generator=g) * 2 - 1
    nxt = obs + torch.cat([act, act[:, :1] - act[:, 1:]], 1) * 0.1
    inv = InverseDynamicsModel(InverseModelConfig(members=2, hidden_sizes=(64,)), 3, 2, act_low=-torch.ones(2), act_high=torch.ones(2))
    rows = inv.fit(obs, act, nxt, epochs=15, batch_size=128, generator=g)
    assert rows[-1]["inverse_loss"] < rows[0]["inverse_loss"]
    assert (inv.predict(obs, nxt) - act).square().mean() < 0.01

    disc = InverseDynamicsModel(InverseModelConfig(hidden_sizes=(32,)), 3, 1, num_actions=3)
    a = torch.randint(0, 3, (512,), generator=g)
    nxt = obs[:512] + torch.nn.functional.one_hot(a, 3).float()
    disc.fit(obs[:512], a, nxt, epochs=10, batch_size=64, generator=g)
    assert (disc.predict(obs[:512], nxt) == a).float().mean() > 0.95


# ----------------------------------------------------------------------------------------------- Pendulum accuracy


def _pendulum(n: int, seed: int):
    from dynarl.envs import make_env

    env = make_env("Pendulum-v1")
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    rows = []
    for _ in range(n):
        act = env.action_space.sample()
        nxt, _, term, trunc, _ = env.step(act)
        rows.append((obs, act, nxt))
        obs = env.reset()[0] if term or trunc else nxt
    return [torch.tensor(np.array(x), dtype=torch.float32) for x in zip(*rows)]


@pytest.mark.slow
def test_pendulum_gaussian_ensemble_accuracy_uncertainty_and_calibration(tmp_path):
    """10k random-policy Pendulum-v1 transitions, a 5-member 4x200 Gaussian ensemble (PETS/MBPO network)."""
    torch.manual_seed(0)
    obs, act, nxt = _pendulum(10_000, seed=0)
    test_obs, test_act, test_nxt = _pendulum(2_000, seed=1)  # fresh episodes, never seen in training
    model = DynamicsModel(DynamicsModelConfig(members=5), 3, 1)
    # 25 epochs keep CI short; recalibrate: the NLL variance of a noise-free simulator is too wide for the
    # typical row (see diagnostics.fit_variance_scale), without it 1-sigma coverage is about 0.87
    trainer = ModelTrainer(model, ModelTrainerConfig(max_epochs=25, recalibrate=True), seed=0)
    result = trainer.fit(obs, act, nxt)

    one = diag.one_step_error(model, test_obs, test_act, test_nxt)
    assert one["normalized_mse"] <= 0.01, one

    g = torch.Generator().manual_seed(0)
    theta = torch.rand(2000, generator=g) * 2 * math.pi
    ood_obs = torch.stack([theta.cos(), theta.sin(), (torch.rand(2000, generator=g) * 2 - 1) * 30], 1)  # |thdot| <= 8 in the data
    ood_act = (torch.rand(2000, 1, generator=g) * 2 - 1) * 6  # torque is in [-2, 2] in the data
    ratio = diag.uncertainty(model, ood_obs, ood_act)["epistemic_var"] / diag.uncertainty(model, test_obs, test_act)["epistemic_var"]
    assert ratio >= 5, ratio

    cal = diag.calibration(model, test_obs, test_act, test_nxt)
    assert abs(cal["coverage_1sigma"] - diag.GAUSS_1SIGMA) <= 0.10, cal
    assert abs(cal["coverage_2sigma"] - diag.GAUSS_2SIGMA) <= 0.10, cal

    # the compounding-error curve on real trajectories, and the plot the CLI will draw
    seq_obs = test_obs[:1000].view(5, 200, 3)[:, :21]  # Pendulum episodes are 200 steps: 5 whole episodes
    seq_act = test_act[:1000].view(5, 200, 1)[:, :20]
    rows = diag.diagnostics_rows(model, test_obs, test_act, test_nxt, seq_obs, seq_act, ood_obs=ood_obs, ood_act=ood_act)
    k_curve = [r["k_step_normalized_mse"] for r in rows if r["diagnostic"] == "k_step"]
    assert len(k_curve) == 20 and k_curve[-1] > k_curve[0]  # errors compound
    assert 0 <= rows[0]["eps_m_tv"] <= 1 and rows[0]["eps_m_l1"] > 0
    png = plot_diagnostics(result.rows + rows, tmp_path / "diag.png")
    _check_cli_plot_draws_diagnostics(result.rows + rows, tmp_path)
    assert png.stat().st_size > 1000
    print(
        f"\npendulum: one-step normalised MSE {one['normalized_mse']:.5f}, OOD/ID epistemic {ratio:.1f}x, "
        f"coverage 1sigma {cal['coverage_1sigma']:.3f} 2sigma {cal['coverage_2sigma']:.3f} "
        f"(mixture {cal['mixture_coverage_1sigma']:.3f}/{cal['mixture_coverage_2sigma']:.3f}), "
        f"eps_m tv {rows[0]['eps_m_tv']:.3f} l1 {rows[0]['eps_m_l1']:.4f}, epochs {result.metrics['model_epochs']}"
    )


def _check_cli_plot_draws_diagnostics(rows, tmp_path):
    """`dynarl plot RUN` draws a run's model_diagnostics.csv beside its learning curve."""
    import csv

    from dynarl.cli import main

    run = tmp_path / "run"
    run.mkdir()
    keys = sorted({k for r in rows for k in r})
    with open(run / "model_diagnostics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    (run / "metrics.csv").write_text("env_steps,rollout/ep_rew_mean\n100,-500\n200,-300\n")
    assert main(["plot", str(run), "--out", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert (tmp_path / "curves_run_model.png").stat().st_size > 0


def _exact_point_model(members=2):
    """A deterministic 1-d model that is exact for s' = s + a (hand-set weights, identity normalisers)."""
    from test_planning import _point_model

    return _point_model(members)


def test_fresh_data_row_stops_k_step_rollouts_at_episode_ends():
    """An exact model has zero one- and k-step error; the k-step rollouts must not run across an episode's
    end into the next episode's (unrelated) start, which would show error where there is none."""
    model = _exact_point_model()
    act = torch.full((40, 1), 0.1)
    obs = torch.cat([torch.arange(20.0) * 0.1, 5 + torch.arange(20.0) * 0.1]).unsqueeze(1)  # two episodes of 20
    next_obs = obs + act
    done = torch.zeros(40, dtype=torch.bool)
    done[19] = done[39] = True
    row = diag.fresh_data_row(model, obs, act, next_obs, done, max_rows=16, max_starts=8, max_k=10)
    assert row["diag_rows"] == 16 and row["diag_starts"] == 8
    assert row["one_step_nmse"] < 1e-10 and row["eps_m_l1"] < 1e-5
    assert [k for k in row if k.startswith("k_step_nmse_")] == [f"k_step_nmse_{k}" for k in range(1, 11)]
    assert max(row[f"k_step_nmse_{k}"] for k in range(1, 11)) < 1e-10
    # without the episode boundary the rollouts cross into the second episode and report its jump
    crossed = diag.fresh_data_row(model, obs, act, next_obs, torch.zeros(40, dtype=torch.bool), max_starts=8, max_k=10)
    assert crossed["k_step_nmse_10"] > 1.0
    # a model that is wrong by 0.01 per step compounds: its k-step error grows with k
    with torch.no_grad():
        model.net.layers[1].bias.fill_(0.01)
    drift = diag.fresh_data_row(model, obs, act, next_obs, done, max_k=10)
    assert drift["one_step_nmse"] == pytest.approx(1e-4, rel=1e-3)
    assert drift["k_step_nmse_10"] > 50 * drift["k_step_nmse_1"]


_MBPO_TINY = {
    "learning_starts": 200, "batch_size": 32, "learner.hidden_sizes": [32, 32], "model.members": 3, "model.hidden_sizes": [32, 32],
    "model.weight_decay": [0.0, 0.0, 0.0], "trainer.num_elites": 2, "trainer.max_epochs": 5, "rollout_batch_size": 64, "epoch_length": 100,
    "model_train_freq": 50, "updates_per_step": 1, "eval_every": 10_000, "eval_episodes": 1, "log_every": 100, "quiet": True,
}  # fmt: skip
_SLBO_TINY = {
    "n_collect": 100, "n_inner": 2, "n_model": 5, "n_policy": 1, "H": 3, "model_hidden_sizes": (32, 32), "model_envs": 4, "model_horizon": 20,
    "model_batch_size": 16, "eval_every": 10**9, "eval_episodes": 1, "log_every": 10**9, "checkpoint_every": 10**9, "quiet": True,
}  # fmt: skip


@pytest.mark.parametrize("algo", ["mbpo", "slbo"])
def test_dyna_and_slbo_write_one_model_diagnostics_row_per_model_fit(tmp_path, algo):
    """MBPO (the Dyna loop) and SLBO log every model fit to the run's model_diagnostics.csv, with the model's
    errors on the real transitions gathered since the previous fit (as PETS does, tests/test_pets.py)."""
    import csv

    from dynarl.algos import get_algorithm

    over = _MBPO_TINY if algo == "mbpo" else _SLBO_TINY
    agent = get_algorithm(algo)("Pendulum-v1", seed=0, steps=400, **over).learn(run_dir=tmp_path / algo)
    with open(tmp_path / algo / "model_diagnostics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    fits = [200, 250, 300, 350, 400] if algo == "mbpo" else [100, 200, 300, 400]  # MBPO: every 50 steps after 200
    assert [int(r["env_steps"]) for r in rows] == fits
    assert rows[0]["one_step_nmse"] == "" and all(float(r["one_step_nmse"]) > 0 for r in rows[1:])  # nothing fresh before the first fit
    for r in rows[1:]:
        assert float(r["k_step_nmse_5"]) > 0 and float(r["epistemic_var"]) >= 0 and float(r["eps_m_l1"]) > 0
    if algo == "mbpo":  # a Gaussian ensemble with a holdout: calibration and the per-epoch holdout curve
        assert agent.model_fits == len(rows) and all(r["holdout_mse_e1"] != "" for r in rows)
        assert all(0 <= float(r["coverage_1sigma"]) <= float(r["coverage_2sigma"]) <= 1 for r in rows[1:])
    else:  # one deterministic network fitted by the H-step loss
        assert all(float(r["model_h_step_loss"]) > 0 for r in rows)
