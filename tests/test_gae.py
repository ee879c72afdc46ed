"""Advantage and return estimators against hand-computed values (termination, truncation, rollout end)."""

import pytest
import torch

from dynarl.data.rollout import Rollout, RolloutBuffer, complete_episode_mask, discounted_reward_to_go, gae, n_step_advantage

G, LAM = 0.9, 0.8


def _example() -> tuple[Rollout, dict]:
    """T = 4 steps, N = 2 envs, filled through RolloutBuffer exactly as the collector fills it.

    env 0: s0 -> s1 (terminates at t = 1) | new episode s2 -> s3 -> (rollout ends, V(s_4) = 0.5)
    env 1: s0 -> s1 (truncated at t = 1, V(final obs) = 5) | new episode s2 -> s3 (terminates at t = 3)
    """
    V = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])  # V(s_t) per env
    r = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
    term = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    trunc = torch.tensor([[0.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    final_value = torch.tensor([[0.0, 0.0], [99.0, 5.0], [0.0, 0.0], [0.0, 99.0]])  # V(final obs); ignored where terminated
    buf = RolloutBuffer(4, 2, obs_dim=1, act_shape=(), device=torch.device("cpu"), discrete=True)
    for t in range(4):
        buf.add(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long), torch.zeros(2), V[t], r[t], term[t], torch.maximum(term[t], trunc[t]), final_value[t])
    rollout = buf.finish(last_value=torch.tensor([0.5, 77.0]))
    return rollout, {"V": V, "r": r}


def test_buffer_fills_next_values_like_the_collector():
    ro, _ = _example()
    # env 0: V(s1), [terminal: whatever was given], V(s3), V(s_T) = 0.5
    assert ro.next_value[:, 0].tolist() == [3.0, 99.0, 7.0, 0.5]
    # env 1: V(s1), V(final obs) = 5 at the truncation, V(s3), [terminal at the end: last_value unused]
    assert ro.next_value[:, 1].tolist() == [4.0, 5.0, 8.0, 99.0]
    assert ro.ended[:, 1].tolist() == [0.0, 1.0, 0.0, 1.0]


def test_gae_hand_computed_with_truncation_and_termination():
    ro, _ = _example()
    # TD errors delta_t = r_t + g (1 - term_t) V(s'_t) - V(s_t), by hand
    d0 = [1 + G * 3 - 1, 3 + 0 - 3, 5 + G * 7 - 5, 7 + G * 0.5 - 7]  # env 0: terminal at t=1
    d1 = [2 + G * 4 - 2, 4 + G * 5 - 4, 6 + G * 8 - 6, 8 + 0 - 8]  # env 1: truncated at t=1 bootstraps V=5
    gl = G * LAM
    expected0 = [d0[0] + gl * d0[1], d0[1], d0[2] + gl * d0[3], d0[3]]  # sums stop at the termination
    expected1 = [d1[0] + gl * d1[1], d1[1], d1[2] + gl * d1[3], d1[3]]  # ... and at the truncation
    adv = gae(ro, G, LAM)
    torch.testing.assert_close(adv[:, 0], torch.tensor(expected0))
    torch.testing.assert_close(adv[:, 1], torch.tensor(expected1))


def test_gae_limits_lambda_zero_is_td_and_lambda_one_is_bootstrapped_reward_to_go():
    ro, _ = _example()
    delta = ro.reward + G * (1 - ro.terminated) * ro.next_value - ro.value
    torch.testing.assert_close(gae(ro, G, 0.0), delta)
    tail = (1 - ro.terminated) * ro.next_value
    rtg = discounted_reward_to_go(ro.reward, ro.ended, G, tail)
    torch.testing.assert_close(gae(ro, G, 1.0) + ro.value, rtg)


def test_reward_to_go_hand_computed_and_complete_mask():
    ro, _ = _example()
    rtg = discounted_reward_to_go(ro.reward, ro.ended, G)  # pure Monte Carlo over what was seen
    assert rtg[:, 0].tolist() == pytest.approx([1 + G * 3, 3, 5 + G * 7, 7])
    assert rtg[:, 1].tolist() == pytest.approx([2 + G * 4, 4, 6 + G * 8, 8])
    # env 0's last episode is still running at the end of the rollout: its sums are incomplete
    assert complete_episode_mask(ro.ended)[:, 0].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert complete_episode_mask(ro.ended)[:, 1].tolist() == [1.0, 1.0, 1.0, 1.0]


def test_n_step_advantage():
    ro, _ = _example()
    delta = ro.reward + G * (1 - ro.terminated) * ro.next_value - ro.value
    torch.testing.assert_close(n_step_advantage(ro, G, 1), delta)
    torch.testing.assert_close(n_step_advantage(ro, G, 10), gae(ro, G, 1.0))  # n >= T: the whole segment
    # 2-step at env 0, t = 2: r2 + g r3 + g^2 V(s_4) - V(s2)
    assert n_step_advantage(ro, G, 2)[2, 0].item() == pytest.approx(5 + G * 7 + G * G * 0.5 - 5)
    # 2-step at env 1, t = 0 stops at the truncation: r0 + g r1 + g^2 V(final) - V(s0)
    assert n_step_advantage(ro, G, 2)[0, 1].item() == pytest.approx(2 + G * 4 + G * G * 5 - 2)


def test_estimators_vectorised_over_envs():
    torch.manual_seed(0)
    T, N = 7, 5
    ended = (torch.rand(T, N) < 0.3).float()
    term = ended * (torch.rand(T, N) < 0.5).float()
    ro = Rollout(torch.zeros(T, N, 1), torch.zeros(T, N), torch.zeros(T, N), torch.randn(T, N), term, ended, torch.randn(T, N), torch.randn(T, N))
    full = gae(ro, G, LAM)
    for i in range(N):
        one = Rollout(*(getattr(ro, f)[:, i : i + 1] for f in ("obs", "act", "log_prob", "reward", "terminated", "ended", "value", "next_value")))
        torch.testing.assert_close(gae(one, G, LAM)[:, 0], full[:, i])
        torch.testing.assert_close(n_step_advantage(one, G, 3)[:, 0], n_step_advantage(ro, G, 3)[:, i])
