"""DQNLearner and QNetwork: targets, losses and heads against hand computation on fixed weights."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from dynarl.data.batch import Batch
from dynarl.errors import EnvError
from dynarl.learners.dqn import DQNLearner, DQNLearnerConfig
from dynarl.nn.q_networks import QNetwork

CPU = torch.device("cpu")
BOX1 = gym.spaces.Box(-10, 10, (1,), np.float32)


def _set_fixed(net: QNetwork, out_weights) -> None:
    """hidden (2,): h = relu([s, s]); Q(s, .) = diag(out_weights) h, so Q(1, .) = out_weights."""
    with torch.no_grad():
        net.net[0].weight.copy_(torch.tensor([[1.0], [1.0]]))
        net.net[0].bias.zero_()
        net.net[2].weight.copy_(torch.diag(torch.tensor(out_weights)))
        net.net[2].bias.zero_()


def _learner(**cfg) -> DQNLearner:
    learner = DQNLearner(DQNLearnerConfig(hidden_sizes=(2,), gamma=0.9, **cfg), BOX1, gym.spaces.Discrete(2), CPU)
    _set_fixed(learner.q, [5.0, 2.0])  # online Q(1, .) = [5, 2]: selects action 0
    _set_fixed(learner.q_target, [1.0, 3.0])  # target Q'(1, .) = [1, 3]: its own argmax is action 1
    return learner


def _batch(reward, terminated, act=(0, 0), **extra) -> Batch:
    n = len(reward)
    return Batch(obs=torch.ones(n, 1), act=torch.tensor(act, dtype=torch.float32), reward=torch.tensor(reward), next_obs=torch.ones(n, 1),
                 terminated=torch.tensor(terminated), truncated=torch.zeros(n), **extra)


def test_dqn_and_double_dqn_targets_differ_by_hand():
    batch = _batch([0.5, 0.5], [0.0, 1.0])
    # DQN: y = r + gamma max_a Q'(s', a) = 0.5 + 0.9 * 3
    assert torch.allclose(_learner().td_target(batch), torch.tensor([0.5 + 0.9 * 3.0, 0.5]))
    # Double DQN: a* = argmax_a Q(s', a) = 0 (online), evaluated by the target: Q'(s', 0) = 1
    assert torch.allclose(_learner(double_q=True).td_target(batch), torch.tensor([0.5 + 0.9 * 1.0, 0.5]))


def test_discount_from_the_batch_overrides_gamma():
    batch = _batch([0.5, 1.0], [0.0, 0.0], discount=torch.tensor([0.25, 0.5]))
    assert torch.allclose(_learner().td_target(batch), torch.tensor([0.5 + 0.25 * 3.0, 1.0 + 0.5 * 3.0]))


def test_huber_and_mse_losses_by_hand():
    # terminated rows: y = r; Q(s, 0) = 5, so the TD errors are 0.5 and 3
    batch = _batch([4.5, 2.0], [1.0, 1.0])
    huber, metrics, td = _learner(loss="huber").q_loss(batch)
    assert torch.allclose(huber, torch.tensor((0.5 * 0.5**2 + (3.0 - 0.5)) / 2))
    assert torch.allclose(td, torch.tensor([0.5, 3.0]))
    assert torch.allclose(metrics["q"], torch.tensor(5.0)) and torch.allclose(metrics["td_abs"], torch.tensor(1.75))
    mse, _, _ = _learner(loss="mse").q_loss(batch)
    assert torch.allclose(mse, torch.tensor((0.5 * 0.5**2 + 0.5 * 3.0**2) / 2))


def test_weights_multiply_the_per_row_loss():
    batch = _batch([4.5, 2.0], [1.0, 1.0], weights=torch.tensor([2.0, 0.0]))
    loss, _, _ = _learner().q_loss(batch)
    assert torch.allclose(loss, torch.tensor(2.0 * 0.125 / 2))


def test_action_shapes_and_dtypes_agree():
    learner = _learner()
    base = _batch([4.5, 2.0], [1.0, 1.0], act=(0, 1))
    ref = learner.q_loss(base)[0]
    for act in (torch.tensor([0, 1]), torch.tensor([[0.0], [1.0]]), torch.tensor([[0], [1]])):
        assert torch.equal(learner.q_loss(base.replace(act=act))[0], ref)
    # Q(s, 1) = 2 for the second row: Huber(2 - 2) = 0, first row 0.125
    assert torch.allclose(ref, torch.tensor(0.125 / 2))


def test_act_is_greedy_long_indices():
    learner = _learner()
    a = learner.act(torch.ones(3, 1))
    assert a.dtype == torch.long and a.shape == (3,) and a.tolist() == [0, 0, 0]
    assert torch.allclose(learner.q_values(torch.ones(1, 1)), torch.tensor([[5.0, 2.0]]))


def test_update_steps_and_hard_target_copy_every_interval():
    torch.manual_seed(0)
    learner = DQNLearner(DQNLearnerConfig(target_update_interval=3, lr=1e-2), gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Discrete(4), CPU)
    target0 = [p.clone() for p in learner.q_target.parameters()]
    batch = Batch(obs=torch.randn(32, 3), act=torch.randint(0, 4, (32,)), reward=torch.randn(32), next_obs=torch.randn(32, 3),
                  terminated=torch.zeros(32), truncated=torch.zeros(32))
    losses = []
    for i in range(1, 4):
        metrics = learner.update(batch)
        assert all(not v.requires_grad for v in metrics.values())
        losses.append(float(metrics["q_loss"]))
        same = all(torch.equal(a, b) for a, b in zip(learner.q_target.parameters(), target0))
        assert same == (i < 3)  # copied after the 3rd update only
    assert learner.num_updates == 3
    assert all(torch.equal(a, b) for a, b in zip(learner.q_target.parameters(), learner.q.parameters()))
    assert learner.last_td_error.shape == (32,)
    assert learner.all_finite()


def test_polyak_target_update():
    torch.manual_seed(0)
    learner = DQNLearner(DQNLearnerConfig(target_update="polyak", tau=0.25), gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Discrete(2), CPU)
    before = [p.clone() for p in learner.q_target.parameters()]
    batch = Batch(obs=torch.randn(8, 3), act=torch.randint(0, 2, (8,)), reward=torch.randn(8), next_obs=torch.randn(8, 3),
                  terminated=torch.zeros(8), truncated=torch.zeros(8))
    learner.update(batch)
    for t, t0, p in zip(learner.q_target.parameters(), before, learner.q.parameters()):
        assert torch.allclose(t, 0.75 * t0 + 0.25 * p)


def test_gradient_clipping_bounds_the_step():
    torch.manual_seed(0)
    learner = DQNLearner(DQNLearnerConfig(max_grad_norm=1e-3, lr=1.0), BOX1, gym.spaces.Discrete(2), CPU)
    batch = _batch([1e4, 1e4], [1.0, 1.0], act=(0, 1))
    loss, _, _ = learner.q_loss(batch)
    loss.backward()
    assert torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in learner.q.parameters()])) > 1.0
    learner.q.zero_grad(set_to_none=True)
    learner.update(batch)
    total = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in learner.q.parameters()]))
    assert total <= 1e-3 * 1.001


def test_dueling_head_has_mean_zero_advantages():
    torch.manual_seed(0)
    net = QNetwork((4,), 3, (16, 16), dueling=True)
    obs = torch.randn(10, 4)
    adv = net.advantages(obs)
    assert torch.allclose(adv.mean(1), torch.zeros(10), atol=1e-6)
    h = net.trunk(obs)
    assert torch.allclose(net(obs), net.value(h) + adv, atol=1e-6)
    # the mean of Q over actions is V (Wang et al. 2016, eq. 9)
    assert torch.allclose(net(obs).mean(1, keepdim=True), net.value(h), atol=1e-6)
    learner = DQNLearner(DQNLearnerConfig(dueling=True), gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(3), CPU)
    assert learner.q.dueling and learner.q_values(obs).shape == (10, 3)


def test_discrete_observations_are_one_hot():
    learner = DQNLearner(DQNLearnerConfig(hidden_sizes=(8,)), gym.spaces.Discrete(5, start=2), gym.spaces.Discrete(3), CPU)
    obs = torch.tensor([2, 6, 4])
    one_hot = torch.eye(5)[[0, 4, 2]]
    assert torch.allclose(learner.q_values(obs), learner.q.net(one_hot))
    assert torch.allclose(learner.q_values(obs[:, None].float()), learner.q.net(one_hot))
    batch = Batch(obs=obs.float(), act=torch.tensor([0, 1, 2]), reward=torch.ones(3), next_obs=obs.float(), terminated=torch.zeros(3), truncated=torch.zeros(3))
    learner.update(batch)
    assert learner.all_finite()


def test_uint8_images_are_scaled():
    space = gym.spaces.Box(0, 255, (2, 2, 3), np.uint8)
    learner = DQNLearner(DQNLearnerConfig(), space, gym.spaces.Discrete(2), CPU)
    obs = torch.randint(0, 256, (4, 2, 2, 3), dtype=torch.uint8)
    assert torch.allclose(learner.q_values(obs), learner.q.net(obs.reshape(4, -1).float() / 255))


def test_box_action_space_is_refused_with_the_fix():
    with pytest.raises(EnvError, match=r"Discrete action space.*Box.*SAC, TD3 or DDPG"):
        DQNLearner(DQNLearnerConfig(), gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Box(-2, 2, (1,), np.float32), CPU)


def test_state_dict_round_trip():
    torch.manual_seed(0)
    space, acts = gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Discrete(2)
    a = DQNLearner(DQNLearnerConfig(target_update_interval=2), space, acts, CPU)
    batch = Batch(obs=torch.randn(8, 3), act=torch.randint(0, 2, (8,)), reward=torch.randn(8), next_obs=torch.randn(8, 3),
                  terminated=torch.zeros(8), truncated=torch.zeros(8))
    a.update(batch)
    b = DQNLearner(DQNLearnerConfig(target_update_interval=2), space, acts, CPU)
    b.load_state_dict(copy.deepcopy(a.state_dict()))  # as through a file: Optimizer.load_state_dict keeps the tensors it is given
    for _ in range(2):
        ma, mb = a.update(batch), b.update(batch)
        assert torch.equal(ma["q_loss"], mb["q_loss"])
    assert all(torch.equal(x, y) for x, y in zip(a.q_target.parameters(), b.q_target.parameters()))


def test_one_sample_split_draws_what_single_samples_draw():
    """DQN draws a round's minibatches as one sample split in order (``round_batches``)."""
    from dynarl.data.stream_replay import StreamReplayBuffer

    buf = StreamReplayBuffer(100, (2,), torch.float32, (), torch.uint8, 2, CPU)
    rng = np.random.default_rng(0)
    for t in range(40):
        buf.add(rng.normal(size=(2, 2)), np.array([t % 2, 1]), rng.normal(size=2), rng.normal(size=(2, 2)), np.array([t % 7 == 6, False]), np.array([False, t % 9 == 8]))
    torch.manual_seed(3)
    single = [buf.sample(8) for _ in range(5)]
    torch.manual_seed(3)
    many = buf.sample(5 * 8).split(8)
    assert len(many) == 5
    for a, b in zip(single, many, strict=True):
        for name in Batch.field_names():
            x, y = getattr(a, name), getattr(b, name)
            assert (x is None and y is None) or torch.equal(x, y), name


@pytest.mark.parametrize("precision, compile_", [("fp32", False), ("bf16", True)])
def test_a_round_valued_in_one_pass_updates_as_row_by_row_targets_do(precision, compile_):
    """A hard-copied target network that a round of updates leaves unchanged values the round's rows in one pass
    (``with_next_values``); the round's updates then follow those of a learner that values each minibatch itself,
    and the copy at the end of the round still happens."""
    torch.manual_seed(0)
    obs_space = gym.spaces.Box(-1, 1, (4,), np.float32)
    cfg = DQNLearnerConfig(hidden_sizes=(32, 32), target_update_interval=4, precision=precision, compile=compile_)
    ahead, per_row = (DQNLearner(cfg, obs_space, gym.spaces.Discrete(3), CPU) for _ in range(2))
    per_row.q.load_state_dict(ahead.q.state_dict())
    per_row.q_target.load_state_dict(ahead.q_target.state_dict())
    n = 16
    rows = Batch(obs=torch.randn(4 * n, 4), act=torch.randint(0, 3, (4 * n,)).float(), reward=torch.randn(4 * n), next_obs=torch.randn(4 * n, 4),
                 terminated=(torch.rand(4 * n) < 0.2).float(), truncated=torch.zeros(4 * n))  # fmt: skip
    valued = ahead.with_next_values(rows, 4)
    assert valued.next_value is not None
    tolerance = dict(rtol=1e-2, atol=1e-3) if precision == "bf16" else dict(rtol=1e-5, atol=1e-6)
    with per_row._autocast():  # as the loss computes it
        torch.testing.assert_close(ahead.td_target(valued), per_row.td_target(rows), **tolerance)
    for a, b in zip(valued.split(n), rows.split(n), strict=True):
        ahead.update(a), per_row.update(b)
    for p, q in zip(ahead.q.parameters(), per_row.q.parameters(), strict=True):
        torch.testing.assert_close(p, q, **tolerance)
    for p, t in zip(ahead.q.parameters(), ahead.q_target.parameters(), strict=True):
        assert torch.equal(p, t)  # copied after the round's fourth update


@pytest.mark.parametrize("options, done, updates", [({"double_q": True}, 0, 2), ({"target_update": "polyak"}, 0, 2), ({}, 3, 2), ({}, 0, 5), ({}, 0, 1)])
def test_a_round_whose_updates_move_the_target_values_each_minibatch_itself(options, done, updates):
    """Double DQN's online argmax and a Polyak target move with every update, and a hard copy inside the round (after
    update 4 of interval 4: three done and two to come, or five from the start) changes the rest: no values ahead.
    Nor for a round of one update, whose own pass is the same pass."""
    learner = _learner(target_update_interval=4, **options)
    learner.num_updates = done
    batch = _batch([0.5] * 4, [0.0] * 4)
    assert learner.with_next_values(batch, updates) is batch
