"""MuZero: the support transform, n-step targets (one- and two-player) and the unrolled loss against hand computation,
exact resume, errors for bad input, a TicTacToe self-play learning smoke test, and (marked slow) learning CartPole-v1."""

from __future__ import annotations

import math
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
from state_compare import assert_same_state

import dynarl  # noqa: F401  (registers the algorithms)
from dynarl.algos.mcts import play_match
from dynarl.algos.muzero import MuZero
from dynarl.data.game_segments import GameSegmentBuffer, SegmentBatch
from dynarl.envs.opponents import RandomOpponent
from dynarl.errors import ConfigError, EnvError
from dynarl.learners.muzero import MuZeroLearner, MuZeroLearnerConfig
from dynarl.nn.muzero import MuZeroNetwork, h_inverse, h_transform, min_max_scale, scalar_to_support, support_to_scalar
from dynarl.seeding import EVAL_SEED_OFFSET

# --- the support transform ----------------------------------------------------------------------------------


def test_h_and_its_inverse_round_trip():
    x = torch.tensor([-1e4, -300.0, -7.5, -1.0, -1e-3, 0.0, 1e-3, 0.5, 3.0, 99.0, 1e4], dtype=torch.float64)
    y = h_transform(x)
    expected = [math.copysign(math.sqrt(abs(v) + 1) - 1, v) + 1e-3 * v for v in x.tolist()]
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(h_inverse(y).numpy(), x.numpy(), rtol=1e-9, atol=1e-9)


def test_two_hot_projection_and_back():
    # h(x) = 3.7 -> 0.3 on support point 3, 0.7 on 4
    x = h_inverse(torch.tensor([3.7, -2.25, 0.0], dtype=torch.float64))
    two_hot = scalar_to_support(x, 5)
    assert two_hot.shape == (3, 11)
    expected = np.zeros((3, 11))
    expected[0, 5 + 3], expected[0, 5 + 4] = 0.3, 0.7
    expected[1, 5 - 3], expected[1, 5 - 2] = 0.25, 0.75
    expected[2, 5] = 1.0
    np.testing.assert_allclose(two_hot.numpy(), expected, atol=1e-9)
    # log of the two-hot as logits gives the scalar back
    back = support_to_scalar(torch.log(two_hot.clamp_min(1e-300)), 5)
    np.testing.assert_allclose(back.numpy(), x.numpy(), rtol=1e-6, atol=1e-6)
    # beyond the support: clipped to S
    big = scalar_to_support(torch.tensor([1e6]), 5)
    assert big[0, -1] == 1.0 and big.sum() == 1.0


def test_min_max_scaling():
    s = torch.tensor([[1.0, 3.0, 2.0], [5.0, 5.0, 5.0]])
    np.testing.assert_allclose(min_max_scale(s).numpy(), [[0.0, 1.0, 0.5], [0.0, 0.0, 0.0]])


def test_reward_read_from_the_next_state():
    """reward_from="next_state": r^k = reward_net(s^k), a function of the state reached alone, 0 at initialisation;
    the default computes it with s^k in one MLP."""
    torch.manual_seed(0)
    net = MuZeroNetwork(4, 3, latent_dim=6, hidden_sizes=(8,), value_support=0, reward_support=0, reward_from="next_state")
    state = min_max_scale(torch.randn(5, 6))
    action = torch.tensor([0, 1, 2, 1, 0])
    reward, next_state = net.dynamics(state, action)
    assert torch.equal(reward, torch.zeros(5, 1))  # the reward rows start at zero
    with torch.no_grad():
        for p in net.reward_net.parameters():
            p.normal_()
    reward, next_state = net.dynamics(state, action)
    torch.testing.assert_close(reward, net.reward_net(next_state))
    assert tuple(net.dynamics_net[-1].weight.shape) == (6, 8)  # the dynamics MLP gives the latent only
    joint = MuZeroNetwork(4, 3, latent_dim=6, hidden_sizes=(8,), value_support=0, reward_support=0)
    assert joint.reward_net is None and tuple(joint.dynamics_net[-1].weight.shape) == (7, 8)
    with pytest.raises(ConfigError, match="reward_from"):
        MuZero("CartPole-v1", **{**TINY, "learner.reward_from": "obs"})


# --- n-step targets -------------------------------------------------------------------------------------------

GAMMA, K, N = 0.5, 2, 3


def _filled_buffer() -> GameSegmentBuffer:
    """One sub-env: episode A (t = 0..3, terminated), B (t = 4..6, truncated; its final observation's value 80),
    C (t = 7..12, still running). o_t = [t], a_t = t % 2, pi_t = one_hot(t % 2)."""
    buf = GameSegmentBuffer(100, (1,), 2, 1, K, N, GAMMA)
    rewards = [1, 2, 3, 4, 5, 6, 7, 1, 1, 1, 1, 1, 1]
    values = [10, 20, 30, 40, 50, 60, 70, 100, 101, 102, 103, 104, 105]
    for t in range(13):
        buf.add(obs=[[t]], action=[t % 2], reward=[rewards[t]], root_value=[values[t]], policy=[np.eye(2)[t % 2]], terminated=[t == 3], truncated=[t == 6], end_obs=[[106.0 if t == 6 else -1.0]], end_value=[80.0 if t == 6 else -1.0])
    return buf


# z_t by hand (gamma 0.5, n 3); None: masked
Z = {0: 1 + .5 * 2 + .25 * 3 + .125 * 40, 1: 2 + .5 * 3 + .25 * 4, 2: 3 + .5 * 4, 3: 4.0, "A_end": 0.0,
     4: 5 + .5 * 6 + .25 * 7 + .125 * 80, 5: 6 + .5 * 7 + .25 * 80, 6: 7 + .5 * 80, "B_end": None,
     7: 1 + .5 + .25 + .125 * 103, 8: 1 + .5 + .25 + .125 * 104, 9: 1 + .5 + .25 + .125 * 105}  # fmt: skip
EPISODE = {t: ("A", 3) for t in range(4)} | {t: ("B", 6) for t in range(4, 7)} | {t: ("C", 99) for t in range(7, 13)}


def _expected(t: int):
    """(z, value mask, reward targets, reward mask, policy mask) of the unroll from t, by hand."""
    name, last = EPISODE[t]
    z, vm, pm = [], [], []
    for k in range(K + 1):
        if t + k <= last:
            z.append(Z[t + k]), vm.append(1.0), pm.append(1.0)
        else:
            end = Z[f"{name}_end"]
            z.append(0.0 if end is None else end), vm.append(0.0 if end is None else 1.0), pm.append(0.0)
    rewards = [1, 2, 3, 4, 5, 6, 7, 1, 1, 1, 1, 1, 1]
    r, rm = [], []
    for k in range(1, K + 1):
        if t + k - 1 <= last:
            r.append(rewards[t + k - 1]), rm.append(1.0)
        else:
            r.append(0.0), rm.append(1.0 if name == "A" else 0.0)
    return z, vm, r, rm, pm


def test_n_step_targets_by_hand():
    buf = _filled_buffer()
    assert buf.sampleable() == 8  # t = 0..7: the last K + n = 5 steps of the running episode wait for their targets
    batch = buf.sample(400, torch.Generator().manual_seed(0))
    starts = batch.obs[:, 0].long().tolist()
    assert set(starts) == set(range(8))
    for i, t in enumerate(starts):
        z, vm, r, rm, pm = _expected(t)
        np.testing.assert_allclose((batch.target_value[i] * batch.value_mask[i]).numpy(), np.array(z) * np.array(vm), err_msg=f"t={t}")
        np.testing.assert_array_equal(batch.value_mask[i].numpy(), vm, err_msg=f"t={t}")
        np.testing.assert_allclose((batch.target_reward[i] * batch.reward_mask[i]).numpy(), np.array(r) * np.array(rm), err_msg=f"t={t}")
        np.testing.assert_array_equal(batch.reward_mask[i].numpy(), rm, err_msg=f"t={t}")
        np.testing.assert_array_equal(batch.policy_mask[i].numpy(), pm, err_msg=f"t={t}")
        for k in range(K + 1):
            expected_pi = np.eye(2)[(t + k) % 2] if pm[k] else np.zeros(2)
            np.testing.assert_array_equal(batch.target_policy[i, k].numpy(), expected_pi)
        for k in range(K):
            if t + k <= EPISODE[t][1]:
                assert batch.actions[i, k] == (t + k) % 2  # the played actions; random ones past the end
    # the bootstrap parts kept apart for reanalysis: t = 4 bootstraps the truncated episode's final observation
    i = starts.index(4)
    assert batch.bootstrap_discount[i, 0] == 0.125 and batch.bootstrap_obs[i, 0, 0] == 106.0 and batch.bootstrap_value[i, 0] == 80.0
    i = starts.index(0)
    assert batch.bootstrap_discount[i, 0] == 0.125 and batch.bootstrap_obs[i, 0, 0] == 3.0 and batch.bootstrap_value[i, 0] == 40.0
    i = starts.index(1)
    assert batch.bootstrap_discount[i, 0] == 0.0  # no bootstrap through a termination


def test_buffer_state_round_trip_and_ring():
    buf = _filled_buffer()
    other = GameSegmentBuffer(100, (1,), 2, 1, K, N, GAMMA)
    other.load_state_dict(buf.state_dict())
    a = buf.sample(64, torch.Generator().manual_seed(1), unroll_obs=True)
    b = other.sample(64, torch.Generator().manual_seed(1), unroll_obs=True)
    for name in SegmentBatch.__dataclass_fields__:
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    # a ring of 8 rows wraps: only the newest 8 rows remain, and windows never read past the newest row
    small = GameSegmentBuffer(8, (1,), 2, 1, 1, 2, GAMMA)
    for t in range(20):
        small.add([[t]], [0], [1.0], [float(t)], [[1.0, 0.0]], [False], [False])
    batch = small.sample(200, torch.Generator().manual_seed(0))
    starts = set(batch.obs[:, 0].long().tolist())
    assert starts == set(range(12, 17))  # rows 12..19 kept; the last K + n = 3 wait
    assert torch.allclose(batch.target_value[:, 0], 1 + 0.5 + 0.5**2 * (batch.obs[:, 0] + 2))


def test_sampling_an_empty_buffer_says_what_to_do():
    buf = GameSegmentBuffer(100, (1,), 2, 1, K, N, GAMMA)
    with pytest.raises(ValueError, match="play more steps"):
        buf.sample(4)
    with pytest.raises(ConfigError, match="raise buffer_size"):
        GameSegmentBuffer(10, (1,), 2, 2, K, N, GAMMA)


# --- two-player n-step targets ------------------------------------------------------------------------------------


def _two_player_buffer() -> GameSegmentBuffer:
    """One sub-env of a two-player game (gamma 0.5, n 3, K 2). Game A (rows 0..4): the first player wins with the 5th
    move (u = 0, 0, 0, 0, 1; u_{t+1} is the reward of the player who moved at t); search values nu_t = 10 (t + 1).
    Game B (rows 5..13): a draw (all rewards 0), nu_t = t. o_t = [t]."""
    buf = GameSegmentBuffer(100, (1,), 2, 1, K, N, GAMMA, two_player=True)
    rewards = [0, 0, 0, 0, 1] + [0] * 9
    values = [10, 20, 30, 40, 50] + list(range(5, 14))
    for t in range(14):
        buf.add(obs=[[t]], action=[t % 2], reward=[rewards[t]], root_value=[values[t]], policy=[np.eye(2)[t % 2]], terminated=[t in (4, 13)], truncated=[False])
    return buf


# z_t for the player to move at t by hand: z_t = u_{t+1} - .5 u_{t+2} + .25 u_{t+3} - .125 nu_{t+3} (the bootstrap's player
# moves 3 plies later: the other side). A: the winner (first player) moves at t = 0, 2, 4, the loser at 1, 3.
Z2 = {0: -0.125 * 40, 1: -0.125 * 50, 2: 0.25 * 1, 3: -0.5 * 1, 4: 1.0}  # fmt: skip
Z2 |= {t: -0.125 * (t + 3) for t in range(5, 11)} | {11: 0.0, 12: 0.0, 13: 0.0}  # B: a draw, only the bootstraps count


def test_two_player_n_step_targets_by_hand():
    buf = _two_player_buffer()
    assert buf.sampleable() == 14  # both games ended: every position has its targets
    batch = buf.sample(600, torch.Generator().manual_seed(0))
    starts = batch.obs[:, 0].long().tolist()
    assert set(starts) == set(range(14))
    for i, t in enumerate(starts):
        last = 4 if t <= 4 else 13
        z = [Z2[t + k] if t + k <= last else 0.0 for k in range(K + 1)]  # past the end: the absorbing state, value 0
        np.testing.assert_allclose(batch.target_value[i].numpy(), z, err_msg=f"t={t}")
        np.testing.assert_array_equal(batch.value_mask[i].numpy(), [1.0] * (K + 1), err_msg=f"t={t}")
        np.testing.assert_array_equal(batch.policy_mask[i].numpy(), [float(t + k <= last) for k in range(K + 1)], err_msg=f"t={t}")
        # reward targets stay the mover's own rewards (the search's two-player backup reads them so)
        r = [(1.0 if t + k == 4 else 0.0) if t + k <= last else 0.0 for k in range(K)]
        np.testing.assert_array_equal(batch.target_reward[i].numpy(), r, err_msg=f"t={t}")
    # the sign of the bootstrap is in its discount, so reanalysed values are signed the same way
    i = starts.index(0)
    assert batch.bootstrap_discount[i, 0] == -0.125 and batch.bootstrap_value[i, 0] == 40.0 and batch.value_prefix[i, 0] == 0.0
    i = starts.index(2)
    assert batch.bootstrap_discount[i, 0] == 0.0 and batch.value_prefix[i, 0] == 0.25


# --- the unrolled loss ------------------------------------------------------------------------------------------


def _tiny_learner(support: int = 0, value_loss_weight: float = 0.25) -> MuZeroLearner:
    """Linear h, g, f (no hidden layers) with fixed random weights; obs dim 2, 2 actions, latent 3."""
    cfg = MuZeroLearnerConfig(latent_dim=3, hidden_sizes=(), value_support=support, reward_support=support, value_loss_weight=value_loss_weight)
    learner = MuZeroLearner(cfg, gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(2), torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in learner.net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return learner


def _tiny_batch() -> SegmentBatch:
    B = 2
    return SegmentBatch(
        obs=torch.tensor([[0.5, -1.0], [2.0, 0.25]]),
        actions=torch.tensor([[1, 0], [0, 0]]),
        target_reward=torch.tensor([[1.0, 0.5], [-1.0, 2.0]]),
        reward_mask=torch.tensor([[1.0, 1.0], [1.0, 0.0]]),
        value_prefix=torch.tensor([[2.0, 1.0, 0.0], [0.5, 1.5, 3.0]]),
        bootstrap_discount=torch.tensor([[0.5, 0.0, 0.0], [0.25, 0.25, 0.0]]),
        bootstrap_value=torch.tensor([[2.0, 7.0, 7.0], [4.0, -4.0, 9.0]]),
        bootstrap_obs=torch.zeros(B, 3, 2),
        value_mask=torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]),
        target_policy=torch.tensor([[[0.25, 0.75], [1.0, 0.0], [0.0, 0.0]], [[0.5, 0.5], [0.0, 1.0], [0.5, 0.5]]]),
        policy_mask=torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]),
    )


def _numpy_loss(learner: MuZeroLearner, batch: SegmentBatch) -> float:
    """Equation 1 by hand in numpy for linear nets with scalar heads: sum_k c_k [mask (u - r)^2 + w (z - v)^2 + CE(pi, p)],
    c_0 = 1, c_k = 1/K; each latent min-max scaled; averaged over the batch."""
    L, A = learner.net.latent_dim, 2

    def wb(layer, rows):
        return layer.weight.detach().double().numpy()[rows], layer.bias.detach().double().numpy()[rows]

    g, f = learner.net.dynamics_net[0], learner.net.prediction_net[0]
    W = {"h": wb(learner.net.representation[0], slice(None)), "g": wb(g, slice(0, L)), "r": wb(g, slice(L, None)), "p": wb(f, slice(0, A)), "v": wb(f, slice(A, None))}

    def lin(name, x):
        w, b = W[name]
        return w @ x + b

    def scale(s):
        return (s - s.min()) / max(s.max() - s.min(), 1e-5)

    w_v, Kb = learner.cfg.value_loss_weight, batch.actions.shape[1]
    z = batch.target_value.double().numpy()
    total = 0.0
    for i in range(len(batch)):
        s = scale(lin("h", batch.obs[i].double().numpy()))
        for k in range(Kb + 1):
            loss_k = 0.0
            if k > 0:
                x = np.concatenate([s, np.eye(2)[int(batch.actions[i, k - 1])]])
                r = lin("r", x)[0]
                s = scale(lin("g", x))
                loss_k += float(batch.reward_mask[i, k - 1]) * (float(batch.target_reward[i, k - 1]) - r) ** 2
            logits, v = lin("p", s), lin("v", s)[0]
            log_p = logits - np.log(np.exp(logits).sum())
            loss_k += w_v * float(batch.value_mask[i, k]) * (z[i, k] - v) ** 2
            loss_k += float(batch.policy_mask[i, k]) * -(batch.target_policy[i, k].double().numpy() * log_p).sum()
            total += loss_k if k == 0 else loss_k / Kb
    return total / len(batch)


def test_unrolled_loss_matches_hand_computation():
    learner = _tiny_learner()
    batch = _tiny_batch()
    loss, parts = learner.loss(batch)
    assert loss.item() == pytest.approx(_numpy_loss(learner, batch), rel=1e-5)
    assert set(parts) == {"value_loss", "reward_loss", "policy_loss"}


def test_categorical_heads_use_cross_entropy_with_the_two_hot_target():
    learner = _tiny_learner(support=2)
    out = torch.tensor([[0.1, -0.3, 0.2, 0.0, 0.4]])
    target = torch.tensor([2.0])
    y = math.sqrt(3.0) - 1 + 2e-3  # h(2)
    two_hot = np.zeros(5)
    two_hot[2], two_hot[3] = 1 - y, y
    log_p = out[0].double().numpy() - np.log(np.exp(out[0].double().numpy()).sum())
    assert learner._scalar_loss(out, target, 2).item() == pytest.approx(-(two_hot * log_p).sum(), rel=1e-5)


def test_gradient_scaling_of_later_steps_and_of_the_hidden_state():
    """Only the value target of k = 2 counts: its gradient reaches h through two dynamics steps, the hidden state
    between them scaled by 0.5, and the whole step by 1/K; the prediction net's gradient is only scaled by 1/K."""
    learner = _tiny_learner(value_loss_weight=1.0)
    batch = _tiny_batch()
    zeros = torch.zeros_like
    batch = batch.replace(reward_mask=zeros(batch.reward_mask), policy_mask=zeros(batch.policy_mask), value_mask=torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]))
    net = learner.net
    learner.loss(batch)[0].backward()
    got_h = [p.grad.clone() for p in net.representation.parameters()]
    got_f = [p.grad.clone() for p in net.prediction_net.parameters()]
    net.zero_grad()
    # the same prediction composed plainly (no gradient scaling), its squared error averaged over the batch
    s = net.represent(batch.obs)
    _, s = net.dynamics(s, batch.actions[:, 0])
    _, s = net.dynamics(s, batch.actions[:, 1])
    v = net.predict(s)[1].squeeze(-1)
    (batch.target_value[:, 2] - v).pow(2).mean().backward()
    for got, p in zip(got_h, net.representation.parameters()):
        torch.testing.assert_close(got, 0.5 / K * p.grad)
    for got, p in zip(got_f, net.prediction_net.parameters()):
        torch.testing.assert_close(got, 1.0 / K * p.grad)


def test_update_decays_the_learning_rate_and_copies_the_target():
    learner = _tiny_learner()
    learner.cfg.lr_decay_rate, learner.cfg.lr_decay_steps, learner.cfg.target_update_interval = 0.5, 2, 2
    metrics = learner.update(_tiny_batch())
    assert float(metrics["lr"]) == pytest.approx(3e-3 * 0.5**0.5)
    assert not all(torch.equal(a, b) for a, b in zip(learner.net.parameters(), learner.target_net.parameters()))
    learner.update(_tiny_batch())
    assert all(torch.equal(a, b) for a, b in zip(learner.net.parameters(), learner.target_net.parameters()))


# --- the algorithm ------------------------------------------------------------------------------------------------

TINY = {"n_envs": 2, "num_simulations": 4, "batch_size": 8, "learning_starts": 30, "train_ratio": 0.5, "buffer_size": 400, "unroll_steps": 3, "td_steps": 4,
        "temperature_milestones": (5, 10), "learner.hidden_sizes": (8,), "learner.latent_dim": 8, "learner.value_support": 3, "learner.reward_support": 2,
        "eval_episodes": 1, "eval_every": 10_000, "log_every": 20, "checkpoint_every": 40, "quiet": True}  # fmt: skip


@pytest.mark.parametrize("reanalyse,reanalyse_policy", [("off", False), ("network", False), ("search", False), ("off", True)])
def test_resume_from_a_checkpoint_is_bit_identical(reanalyse, reanalyse_policy, tmp_path):
    whole = MuZero("CartPole-v1", seed=5, reanalyse=reanalyse, reanalyse_policy=reanalyse_policy, **TINY).learn(100, run_dir=tmp_path / "whole")
    assert whole.gradient_steps == int((100 - 30) * 0.5) and whole.temperature() == 0.25
    first = sorted((tmp_path / "whole" / "checkpoints").glob("step_*.safetensors"))[0]
    assert int(first.stem.split("_")[1]) < 100
    resumed = MuZero.load(first).learn(100)
    assert_same_state(whole, resumed)
    obs, _ = whole.eval_env.reset(seed=0)
    assert whole.predict(obs, deterministic=True)[0] == resumed.predict(obs, deterministic=True)[0]


def test_self_play_stores_visit_distributions_and_reanalysis_uses_the_target_network():
    agent = MuZero("CartPole-v1", seed=2, **{**TINY, "reanalyse": "network"})
    for _ in range(20):
        agent.play()
    buf = agent.buffer
    pi = buf.policy[:, : buf.count]
    torch.testing.assert_close(pi.sum(-1), torch.ones(pi.shape[:2]))
    visits = pi * agent.cfg.num_simulations  # visit counts / num_simulations
    torch.testing.assert_close(visits, visits.round())
    assert agent.temperature() == 1.0 and agent.gradient_steps == 0
    with torch.no_grad():  # the target network differs from the online one, so reanalysed values are the target's
        gen = torch.Generator().manual_seed(0)
        for p in agent.learner.target_net.parameters():
            p.add_(torch.randn(p.shape, generator=gen))
    batch = agent.sample_batch()
    flat = batch.bootstrap_obs.reshape(-1, 4)
    expected = agent.learner.initial_inference(flat, target=True)[2].reshape(batch.bootstrap_value.shape)
    torch.testing.assert_close(batch.bootstrap_value, expected)
    assert not torch.allclose(expected, agent.learner.initial_inference(flat)[2].reshape(expected.shape))


def test_reanalysed_policy_targets_are_a_fresh_search_at_the_unrolled_positions():
    """reanalyse_policy: pi_{t+k} is the visit distribution of a search from o_{t+k} with the target network (no root
    noise here, so the search can be repeated), zero past the episode's end, and unlike the stored ones."""
    agent = MuZero("dynarl/TicTacToe-v0", seed=4, **{**TINY, "n_envs": 4, "num_simulations": 6, "root_exploration_fraction": 0.0, "reanalyse_policy": True, "temperatures": (1.0, 0.5, 0.25)})
    for _ in range(25):
        agent.play()
    with torch.no_grad():  # a target network unlike the online one, so the targets must come from the target
        gen = torch.Generator().manual_seed(1)
        for p in agent.learner.target_net.parameters():
            p.add_(torch.randn(p.shape, generator=gen))
    state = agent.generator.get_state()
    stored = agent.buffer.sample(agent.cfg.batch_size, agent.generator, unroll_obs=True)
    agent.generator.set_state(state)
    batch = agent.sample_batch()
    assert torch.equal(batch.unroll_obs, stored.unroll_obs) and torch.equal(batch.obs, batch.unroll_obs[:, 0])
    obs = batch.unroll_obs.reshape(-1, *batch.unroll_obs.shape[2:])
    visits = agent.run_search(obs, agent.self_play_search, target=True).visit_counts.float()
    expected = (visits / visits.sum(-1, keepdim=True)).reshape(batch.target_policy.shape) * batch.policy_mask.unsqueeze(-1)
    torch.testing.assert_close(batch.target_policy, expected)
    assert batch.policy_mask.min() == 0 and not torch.equal(batch.target_policy, stored.target_policy)
    assert torch.equal(batch.policy_mask, stored.policy_mask)
    assert agent.buffer.sample(4, torch.Generator().manual_seed(0)).unroll_obs is None  # gathered only when asked for


@pytest.mark.parametrize("temperature_moves", [2, 5])
def test_board_game_plies_past_temperature_moves_play_the_most_visited_action(temperature_moves):
    """The paper's board-game rule: from ply ``temperature_moves`` of each game on (the stones on the board),
    self-play takes the most visited action (ties: the lowest); earlier plies sample at temperature 1 and do
    not always."""
    agent = MuZero("dynarl/TicTacToe-v0", seed=3, **{**TINY, "n_envs": 8, "num_simulations": 8, "temperatures": (1.0,), "temperature_milestones": (), "temperature_moves": temperature_moves})
    for _ in range(30):
        agent.play()
    buf = agent.buffer
    obs, act, pi = buf.obs[:, : buf.count].flatten(0, 1), buf.action[:, : buf.count].flatten(), buf.policy[:, : buf.count].flatten(0, 1)
    late = obs.flatten(1).sum(1) >= temperature_moves
    assert late.any() and (~late).any()
    assert torch.equal(act[late], pi[late].argmax(1))
    assert not torch.equal(act[~late], pi[~late].argmax(1))
    with pytest.raises(ConfigError, match="temperature_moves=4 counts the plies of a board game, and CartPole-v1 is not one"):
        MuZero("CartPole-v1", **{**TINY, "temperature_moves": 4})


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    args = ["--env", "CartPole-v1", "--steps", "240", "--seed", "3", *[f"{k}={list(v) if isinstance(v, tuple) else str(v).lower() if isinstance(v, bool) else v}" for k, v in {**TINY, "checkpoint_every": 80}.items()]]
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    proc = subprocess.Popen([sys.executable, "-m", "dynarl.cli", "train", "muzero", "--out", str(killed), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    target = killed / "checkpoints" / "step_000000080.safetensors"
    deadline = time.time() + 120
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert target.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no checkpoint in time"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists()
    assert run_cli("resume", str(killed)).returncode == 0
    straight = run_cli("train", "muzero", "--out", str(whole), *args)
    assert straight.returncode == 0, straight.stderr
    last = "step_000000240.safetensors"
    a, b = load_file(killed / "checkpoints" / last), load_file(whole / "checkpoints" / last)
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_two_player_resume_is_bit_identical_and_evaluates_against_both_opponents(tmp_path):
    cfg = {**TINY, "eval_episodes": 4, "eval_every": 80, "temperatures": (1.0, 0.5, 0.25)}  # the TicTacToe preset has one temperature
    whole = MuZero("dynarl/TicTacToe-v0", seed=5, **cfg).learn(100, run_dir=tmp_path / "whole")
    assert whole.two_player and whole.buffer.two_player and whole.self_play_search.two_player and whole.gradient_steps == int((100 - 30) * 0.5)
    first = sorted((tmp_path / "whole" / "checkpoints").glob("step_*.safetensors"))[0]
    assert int(first.stem.split("_")[1]) < 100
    resumed = MuZero.load(first).learn(100)
    assert_same_state(whole, resumed)
    summary, metrics = whole.summary(), whole.metrics()
    for opponent in ("rule", "random"):
        rates = [summary[f"eval_{k}_rate_{opponent}"] for k in ("win", "draw", "loss")]
        assert sum(rates) == pytest.approx(1.0) and all(r * 4 == round(r * 4) for r in rates), rates
        assert metrics[f"eval/win_rate_{opponent}"] == summary[f"eval_win_rate_{opponent}"]
    # the root never plays an illegal move: from a board with one free cell, the search plays it
    board = np.array([[1, 2, 1], [1, 2, 2], [2, 1, 0]], dtype=np.int8)
    obs = whole.board_model.observe(torch.as_tensor(board)[None])
    assert whole.predict(obs[0].numpy(), deterministic=True)[0] == 8


def test_a_versus_env_is_a_one_player_game_with_the_root_masked(tmp_path):
    """dynarl/TicTacToeVersus-v0 plays the opponent's reply inside its step (LightZero's bot mode): MuZero treats it as
    one player's MDP (no sign flips), masks the illegal moves at the root (an illegal move would raise in the env),
    evaluates against the env's own opponent and resumes bit-identically."""
    cfg = {**TINY, "eval_episodes": 4, "eval_every": 80, "temperatures": (1.0, 0.5, 0.25)}
    whole = MuZero("dynarl/TicTacToeVersus-v0", seed=2, **cfg).learn(100, run_dir=tmp_path / "whole")
    assert not whole.two_player and not whole.buffer.two_player and not whole.self_play_search.two_player
    assert whole.board_model is not None and whole.episodes > 0
    r = whole.summary()["eval_return_mean"]  # 4 games: +1 win, 0 draw, -1 loss each
    assert -1.0 <= r <= 1.0 and r * 4 == round(r * 4)
    first = sorted((tmp_path / "whole" / "checkpoints").glob("step_*.safetensors"))[0]
    assert_same_state(whole, MuZero.load(first).learn(100))
    board = np.array([[1, 2, 1], [1, 2, 2], [2, 1, 0]], dtype=np.int8)
    assert whole.predict(whole.board_model.observe(torch.as_tensor(board)[None])[0].numpy(), deterministic=True)[0] == 8


def test_continuous_actions_are_a_one_line_error():
    with pytest.raises(EnvError) as e:
        MuZero("Pendulum-v1", **TINY)
    msg = str(e.value)
    assert "MuZero needs a Discrete action space" in msg and "Pendulum-v1" in msg and "use " in msg and "\n" not in msg


@pytest.mark.parametrize("bad,match", [({"temperature_milestones": (5,)}, "len\\(temperatures\\) - 1"), ({"temperature_milestones": (10, 5)}, "increasing"),
                                       ({"buffer_size": 10}, "raise buffer_size"), ({"reanalyse": "always"}, "reanalyse"), ({"num_simulations": 0}, "num_simulations")])  # fmt: skip
def test_bad_configs_name_the_field(bad, match):
    with pytest.raises(ConfigError, match=match):
        MuZero("CartPole-v1", **{**TINY, **bad})


# --- learning --------------------------------------------------------------------------------------------------------


def evaluate_batched(agent: MuZero, episodes: int) -> np.ndarray:
    """The runner's evaluation (episode k reset with seed + EVAL_SEED_OFFSET + k, temperature 0, no root noise) with
    the episodes played side by side, so one search call serves every episode still running."""
    envs = [agent.make_env() for _ in range(episodes)]
    obs = np.stack([env.reset(seed=agent.cfg.seed + EVAL_SEED_OFFSET + k)[0] for k, env in enumerate(envs)])
    returns, running = np.zeros(episodes), np.ones(episodes, dtype=bool)
    while running.any():
        idx = np.flatnonzero(running)
        actions = agent.predict(obs[idx], deterministic=True)[0]
        for i, a in zip(idx, actions):
            obs[i], reward, terminated, truncated, _ = envs[i].step(int(a))
            returns[i] += reward
            running[i] = not (terminated or truncated)
    return returns


def train_and_evaluate(seed: int, episodes: int = 10) -> tuple[np.ndarray, MuZero, float]:
    """The CartPole-v1 preset's run (dynarl/presets/search.py: 16k env steps, 32 envs, 25 simulations), stepped
    through ``train_step`` without the runner's periodic evaluations, then ``episodes`` evaluation episodes;
    returns, the agent and the CPU seconds of this process."""
    start = time.process_time()
    agent = MuZero("CartPole-v1", seed=seed, quiet=True)
    while agent.env_steps < agent.cfg.steps:
        agent.train_step()
    return evaluate_batched(agent, episodes), agent, time.process_time() - start


@pytest.mark.slow
def test_cartpole_learns():
    """Seeds 0, 1, 2, 3 gave 10-episode means of 411.7, 500.0, 262.3, 500.0 (random play: about 22) in 77-82 s of CPU
    on one core each (training 16k env steps and 3,750 updates, plus the evaluation)."""
    returns, agent, cpu = train_and_evaluate(0)
    print(f"muzero CartPole-v1 seed 0: {agent.env_steps} env steps, {agent.gradient_steps} updates, eval {returns.mean():.1f} +- {returns.std():.1f}, {cpu:.0f} s CPU")
    assert returns.mean() >= 150.0, f"MuZero reached {returns.mean():.1f} on CartPole-v1 (bar 150)"


def prior_versus_random(agent: MuZero, games: int, seed: int) -> dict[str, int]:
    """Win/draw/loss counts of the prior's legal argmax (no search) against the random opponent, sides alternating."""
    model = agent.board_model

    def act(boards: torch.Tensor) -> torch.Tensor:
        logits = agent.learner.initial_inference(model.observe(boards))[1]
        return logits.masked_fill(~model.legal(boards), -torch.inf).argmax(1)

    return play_match(act, model, RandomOpponent(seed), games)


def test_tictactoe_self_play_learns_against_random():
    """The TicTacToe preset (dynarl/presets/search.py) for 3k self-play moves (702 updates, about 9 s of one core):
    the prior alone (no search) loses fewer games to the random opponent than the untrained network. Measured (40 games,
    win/draw/loss untrained -> trained): seed 0 19/6/15 -> 32/3/5, seed 1 19/2/19 -> 24/3/13, seed 2 12/1/27 -> 25/8/7,
    seed 3 11/2/27 -> 20/5/15; the bar asks for 4 more won or drawn games (seed 1, the weakest, has 6)."""
    agent = MuZero("dynarl/TicTacToe-v0", seed=0, quiet=True)
    before = prior_versus_random(agent, 40, 1000)
    while agent.env_steps < 3_000:
        agent.train_step()
    after = prior_versus_random(agent, 40, 1000)
    assert agent.gradient_steps == int((agent.env_steps - 200) * 0.25)
    assert after["win"] + after["draw"] >= before["win"] + before["draw"] + 4, (before, after)
