"""Model-based value expansion (Feinberg et al. 2018): MVE's TD-k targets and loss against a hand
computation, 003's single-state form as the option, terminations inside the imagined path, the actor on
the sampled states only, inside the Dyna loop, and exact resume."""

from types import SimpleNamespace

import gymnasium as gym
import pytest
import torch
from state_compare import assert_updates_agree
from test_mbpo import small

from dynarl.algos.mbpo import MBPO, DynaDDPG
from dynarl.checkpoint import _pack
from dynarl.data.batch import Batch
from dynarl.errors import ConfigError
from dynarl.learners.ddpg import DDPGLearner, DDPGLearnerConfig
from dynarl.learners.sac import SACLearner, SACLearnerConfig
from dynarl.learners.value_expansion import ValueExpansion
from dynarl.models.model_env import ModelEnv


def box(n: int) -> gym.spaces.Box:
    """A flat Box space of n dims (learners are built from spaces)."""
    return gym.spaces.Box(-1.0, 1.0, (n,))

CPU = torch.device("cpu")

# ------------------------------------------------------------------ a world small enough to do by hand
#
# 1-D state and action, gamma = 1/2, H = 3. The model moves s' = s + a, the reward is r = s', and a step
# that reaches s' >= 2 terminates. The target policy always plays 0.5. The target critic is
# Q'_i(s, a) = 10 s + a + i, the online critic Q_i(s, a) = 2 s + a + i (i = critic index; min_i Q'_i is
# the i = 0 one). Three sampled transitions (s_0, a_0, r_0, s_1, terminated):
#
#   A  (0,    0.5, 1, 0,   0): imagines s^_1 = 0 -> s^_2 = 0.5 (r^_1 = 0.5) -> s^_3 = 1 (r^_2 = 1)
#   B  (1,    0.5, 2, 1.5, 0): imagines s^_1 = 1.5 -> s^_2 = 2 (r^_1 = 2, terminates): s^_2 is masked
#   C  (0.5, -0.5, 3, 0,   1): s_1 is terminal in the real env: s^_1 and s^_2 are masked

GAMMA, H = 0.5, 3
BATCH = Batch(
    obs=torch.tensor([[0.0], [1.0], [0.5]]),
    act=torch.tensor([[0.5], [0.5], [-0.5]]),
    reward=torch.tensor([1.0, 2.0, 3.0]),
    next_obs=torch.tensor([[0.0], [1.5], [0.0]]),
    terminated=torch.tensor([0.0, 0.0, 1.0]),
    truncated=torch.zeros(3),
)
MASK = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=torch.bool)  # [k, row]


class _Shift:
    """s' = s + a through ModelEnv's real stepping (expectation over one 'elite')."""

    cfg = SimpleNamespace(learn_reward=False)
    device = CPU
    elite_idx = torch.tensor([0])

    def predict(self, obs, act, idx):
        return {"next_obs_mean": (obs + act)[None]}


class _LinearQ(torch.nn.Module):
    """Q_i(s, a) = w s + a + i for i < members, shaped [members, N] like QEnsemble."""

    def __init__(self, w: float, members: int):
        super().__init__()
        self.w, self.members = torch.nn.Parameter(torch.tensor(w)), members

    def forward(self, obs, act):
        q = self.w * obs[..., 0] + act[..., 0]
        return torch.stack([q + i for i in range(self.members)])


def _model_env():
    reward = lambda s, a, s2: s2[..., 0]  # noqa: E731
    term = lambda s, a, s2: s2[..., 0] >= 2  # noqa: E731
    return ModelEnv(_Shift(), reward_fn=reward, termination_fn=term, propagation="expectation")


def _ddpg():
    learner = DDPGLearner(DDPGLearnerConfig(hidden_sizes=(4,), gamma=GAMMA), box(1), box(1), CPU)
    learner.actor_target = lambda s: torch.full_like(s, 0.5)
    learner.critic_target, learner.critic = _LinearQ(10.0, 1), _LinearQ(2.0, 1)
    return learner


def test_td_k_targets_and_loss_by_hand_ddpg():
    learner = _ddpg()
    mve = ValueExpansion(learner, _model_env(), H)  # td_k is the default
    path = mve.expand(learner, BATCH)
    # A: Q^_2 = 1 + Q'(1, .5)/2 = 6.25, Q^_1 = .5 + 6.25/2 = 3.625, Q^_0 = 1 + 3.625/2 = 2.8125
    # B: Q^_1 = 2 (terminal: no bootstrap), Q^_0 = 2 + 2/2 = 3;  C: Q^_0 = r_0 = 3
    assert path.mask.equal(MASK)
    want = torch.tensor([[2.8125, 3.0, 3.0], [3.625, 2.0, 0.0], [6.25, 0.0, 0.0]])
    torch.testing.assert_close(torch.where(MASK, path.target, 0.0), want)
    torch.testing.assert_close(path.obs[..., 0], torch.tensor([[0.0, 1.0, 0.5], [0.0, 1.5, 0.0], [0.5, 2.0, 0.5]]))
    torch.testing.assert_close(path.act[..., 0], torch.tensor([[0.5, 0.5, -0.5], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]))
    torch.testing.assert_close(learner.td_target(BATCH), want[0])  # the target at the sampled state

    # loss = 1/2 * 1/H * 1/B * sum of the 6 unmasked squared errors, Q = 2 s + a:
    # A: (0.5-2.8125)^2 + (0.5-3.625)^2 + (1.5-6.25)^2;  B: (2.5-3)^2 + (3.5-2)^2;  C: (0.5-3)^2
    sq = (0.5 - 2.8125) ** 2 + (0.5 - 3.625) ** 2 + (1.5 - 6.25) ** 2 + 0.25 + 2.25 + 6.25
    loss, q = learner.critic_loss(BATCH)
    assert loss.item() == pytest.approx(0.5 * sq / (H * 3), rel=1e-6)
    assert loss.item() == pytest.approx(2.5792100694, rel=1e-6)
    assert q["q"].item() == pytest.approx((0.5 + 2.5 + 0.5) / 3)  # logged Q: at the sampled states
    loss.backward()  # d loss / d w = 1/9 sum m (Q - Q^) s
    grad = ((0.5 - 3.625) * 0.0 + (1.5 - 6.25) * 0.5 + (2.5 - 3) * 1 + (3.5 - 2) * 1.5 + (0.5 - 3) * 0.5 + (0.5 - 2.8125) * 0) / 9
    assert learner.critic.w.grad.item() == pytest.approx(grad, rel=1e-6)


def test_real_state_form_trains_the_sampled_state_only():
    learner = _ddpg()
    ValueExpansion(learner, _model_env(), H, target="real_state")
    loss, _ = learner.critic_loss(BATCH)  # the learner's own loss, with Q^_0 as its target
    assert loss.item() == pytest.approx(0.5 * ((0.5 - 2.8125) ** 2 + (2.5 - 3) ** 2 + (0.5 - 3) ** 2) / 3, rel=1e-6)
    # switching back installs the TD-k loss again; horizon 1 is the one-step target either way
    ValueExpansion(learner, _model_env(), H)
    assert learner.critic_loss(BATCH)[0].item() == pytest.approx(2.5792100694, rel=1e-6)
    ValueExpansion(learner, _model_env(), 1)
    one_step = BATCH.reward + GAMMA * (1 - BATCH.terminated) * (10 * BATCH.next_obs[:, 0] + 0.5)
    torch.testing.assert_close(learner.td_target(BATCH), one_step)
    assert learner.critic_loss(BATCH)[0].item() == pytest.approx(0.5 * (learner.critic(BATCH.obs, BATCH.act)[0] - one_step).pow(2).mean().item())


def test_td_k_with_sac_adds_the_soft_bonus_and_sums_the_twin_critics():
    """SAC: each target is the soft Q-value, b = -alpha log pi = -0.5 * -1 = 0.5 per imagined action, and
    V'(s) = min_i Q'_i(s, a) + b. Twin critics Q_0 = 2 s + a, Q_1 = Q_0 + 1 are each fitted, losses summed."""
    learner = SACLearner(SACLearnerConfig(hidden_sizes=(4,), gamma=GAMMA, init_alpha=0.5), box(1), box(1), CPU)
    learner.actor = lambda s, deterministic=False: (torch.full_like(s, 0.5), torch.full(s.shape[:-1], -1.0))
    learner.critic_target, learner.critic = _LinearQ(10.0, 2), _LinearQ(2.0, 2)
    mve = ValueExpansion(learner, _model_env(), H)
    # A: V'(1) = 10.5 + .5 = 11, Q^_2 = 1 + 11/2 = 6.5, Q^_1 = .5 + (.5 + 6.5)/2 = 4, Q^_0 = 1 + (.5 + 4)/2 = 3.25
    # B: Q^_1 = 2, Q^_0 = 2 + (.5 + 2)/2 = 3.25;  C: Q^_0 = 3
    want = torch.tensor([[3.25, 3.25, 3.0], [4.0, 2.0, 0.0], [6.5, 0.0, 0.0]])
    torch.testing.assert_close(torch.where(MASK, mve.expand(learner, BATCH).target, 0.0), want)
    q0 = [[0.5, 2.5, 0.5], [0.5, 3.5, 0.0], [1.5, 0.0, 0.0]]  # Q_0 at the path's states
    sq = [sum((q0[k][n] + i - want[k, n].item()) ** 2 for k in range(H) for n in range(3) if MASK[k, n]) for i in (0, 1)]
    assert sq == pytest.approx([53.875, 33.875])
    assert learner.critic_loss(BATCH)[0].item() == pytest.approx(0.5 * (sq[0] + sq[1]) / 9, rel=1e-6)


@pytest.mark.parametrize("cls, cfg", [(SACLearner, SACLearnerConfig), (DDPGLearner, DDPGLearnerConfig)])
def test_a_compiled_mve_update_follows_the_eager_one(cls, cfg):
    """With ``compile=true`` the critic's MVE loss, imagined path included, is compiled (alone: autograd
    differentiates it, see ``ActorCriticLearner._one_graph``): three updates give the eager ones' losses and weights."""
    learners = []
    for compile_ in (False, True):
        torch.manual_seed(0)
        learner = cls(cfg(hidden_sizes=(16, 16), gamma=GAMMA, compile=compile_), box(1), box(1), CPU)
        ValueExpansion(learner, _model_env(), H)
        learners.append(learner)
    assert_updates_agree(*learners, BATCH)
    assert ("critic", "critic_loss") not in learners[1]._gradients and ("actor", "actor_loss") in learners[1]._gradients
    for p, q in zip(learners[0].critic.parameters(), learners[1].critic.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5)


def test_bad_mve_target_is_a_config_error():
    with pytest.raises(ConfigError, match="mve_target"):
        small(mve_horizon=3, mve_target="all_states")
    with pytest.raises(ConfigError, match="mve_target"):
        ValueExpansion(_ddpg(), _model_env(), 3, target="k_step")


# ------------------------------------------------------------------ inside the Dyna loop


def test_dyna_mve_defaults_to_td_k_and_matches_a_hand_loop_over_the_model():
    """dyna_ddpg with mve_horizon=3 on InvertedPendulum (known termination, expectation propagation so
    every draw is deterministic): the critic loss is MVE's, computed here by forward sums over the model,
    and the actor still trains on the sampled states only."""
    agent = small(DynaDDPG, env="InvertedPendulum-v5", mve_horizon=3, propagation="expectation", rollout_action="random")
    assert agent.cfg.mve_target == "td_k"
    seen = []
    actor_loss = agent.learner.actor_loss
    agent.learner.actor_loss = lambda obs: (seen.append(obs.shape[0]), actor_loss(obs))[1]
    agent.learn(250)
    assert seen and set(seen) == {agent.cfg.batch_size}  # MVE's actor update: DDPG's, on s_0 only

    L, model, term, g = agent.learner, agent.model, agent.termination_fn, agent.learner.cfg.gamma
    batch = agent.sample_batch()
    with torch.no_grad():
        states, acts, rewards, conts = [batch.obs], [batch.act], [batch.reward], [1.0 - batch.terminated]
        s = batch.next_obs
        for _ in range(H - 1):
            a = L.actor_target(s)
            pred = model.predict(s, a, model.elite_idx)
            s2, r = pred["next_obs_mean"].mean(0), pred["reward_mean"].mean(0)
            states.append(s), acts.append(a), rewards.append(r), conts.append(1.0 - term(s, a, s2).float())
            s = s2
        v_tail = L.critic_target(s, L.actor_target(s))[0]
        sq, alive = 0.0, torch.ones(batch.obs.shape[0])
        for k in range(H):
            ret, disc = torch.zeros_like(alive), torch.ones_like(alive)
            for j in range(k, H):  # Q^_k = sum_j gamma^(j-k) (prod d) r_j + gamma^(H-k) (prod d) V'
                ret, disc = ret + disc * rewards[j], disc * g * conts[j]
            target = ret + disc * v_tail
            sq = sq + (alive * (L.critic(states[k], acts[k])[0] - target).pow(2)).sum()
            alive = alive * conts[k]
        expected = 0.5 * sq / (H * batch.obs.shape[0])
        assert ((conts[0] == 1) & (conts[1] * conts[2] == 0)).any(), "the test should see imagined terminations"
        got = L.critic_loss(batch)[0]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def _tensors(agent):
    out = {}
    state = agent.state_dict(True)
    state["parts"]["dyna"].pop("phase_seconds")
    state["counters"].pop("wall_seconds")
    _pack(state, "", out)
    return out


@pytest.mark.parametrize("target", ["td_k", "real_state"])
def test_mve_save_load_resume_equals_uninterrupted(tmp_path, target):
    kw = dict(mve_horizon=3, mve_target=target, seed=4, rollout_schedule=[0, 1, 1, 3])
    straight = small(**kw).learn(380)
    first = small(**kw).learn(290)  # mid-epoch, between model fits
    resumed = MBPO.load(first.save(tmp_path / "agent", include_buffer=True)).learn(380)
    assert resumed.learner.value_expansion.target == target
    a, b = _tensors(straight), _tensors(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
