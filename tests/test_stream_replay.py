"""StreamReplayBuffer: observations stored once per env stream, episode ends, wrap-around, n-step returns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dynarl.data.stream_replay import StreamReplayBuffer


def _buffer(capacity=16, n_envs=2, n_step=1, gamma=0.5, obs_shape=(1,), obs_dtype=torch.float32):
    return StreamReplayBuffer(capacity, obs_shape, obs_dtype, (), torch.long, n_envs, "cpu", n_step=n_step, gamma=gamma)


def _transitions(batch) -> set:
    """Sampled rows as hashable (s, a, r, s', terminated, truncated, discount) tuples."""
    disc = batch.discount if batch.discount is not None else torch.full_like(batch.reward, float("nan"))
    rows = zip(batch.obs[:, 0].tolist(), batch.act.tolist(), batch.reward.tolist(), batch.next_obs[:, 0].tolist(),
               batch.terminated.tolist(), batch.truncated.tolist(), disc.tolist())
    return {tuple(round(x, 6) if isinstance(x, float) and not math.isnan(x) else x for x in r) for r in rows}


def _hand_stream(buf):
    """Two envs, four steps. env 0: s=0,1,2 terminates after the 3rd step (final obs 90), then resets to 3.
    env 1: s=10 truncates after the 2nd step (true final obs 91, not the reset obs 12), then 12, 13."""
    steps = [  # (obs, act, reward, next_obs, terminated, truncated) per env
        ((0, 10), (0, 5), (1.0, 10.0), (1, 11), (0, 0), (0, 0)),
        ((1, 11), (1, 6), (2.0, 20.0), (2, 91), (0, 0), (0, 1)),
        ((2, 12), (2, 7), (3.0, 30.0), (90, 13), (1, 0), (0, 0)),
        ((3, 13), (3, 8), (4.0, 40.0), (4, 14), (0, 0), (0, 0)),
    ]
    for obs, act, rew, nxt, term, trunc in steps:
        buf.add(np.array(obs, np.float32)[:, None], np.array(act), np.array(rew), np.array(nxt, np.float32)[:, None], np.array(term), np.array(trunc))


def test_one_step_transitions_and_true_final_observation():
    buf = _buffer()
    _hand_stream(buf)
    nan = float("nan")
    # the newest row of each stream (s=3 and s=13) has no successor yet, so it is not a start
    expected = {
        (0.0, 0, 1.0, 1.0, 0.0, 0.0, nan), (1.0, 1, 2.0, 2.0, 0.0, 0.0, nan), (2.0, 2, 3.0, 90.0, 1.0, 0.0, nan),
        (10.0, 5, 10.0, 11.0, 0.0, 0.0, nan), (11.0, 6, 20.0, 91.0, 0.0, 1.0, nan), (12.0, 7, 30.0, 13.0, 0.0, 0.0, nan),
    }
    assert len(buf) == 6
    torch.manual_seed(0)
    got = _transitions(buf.sample(600))
    as_key = lambda s: {tuple("nan" if isinstance(x, float) and math.isnan(x) else x for x in t) for t in s}  # noqa: E731
    assert as_key(got) == as_key(expected)
    assert buf.sample(4).discount is None  # one-step: the learner's gamma applies


def test_stored_once_final_observation_row():
    buf = _buffer()
    _hand_stream(buf)
    # env 0 rows: 0 1 2 [90] 3; env 1 rows: 10 11 [91] 12 13 (the final observations sit between episodes)
    assert buf.obs[:5, 0, 0].tolist() == [0, 1, 2, 90, 3]
    assert buf.obs[:5, 1, 0].tolist() == [10, 11, 91, 12, 13]
    assert buf.pos.tolist() == [5, 5]


def test_n_step_returns_by_hand():
    buf = _buffer(n_step=3, gamma=0.5)
    _hand_stream(buf)
    buf.add(np.array([[4.0], [14.0]]), np.array([4, 9]), np.array([5.0, 50.0]), np.array([[5.0], [15.0]]), np.zeros(2), np.zeros(2))
    torch.manual_seed(1)
    got = {t[0]: t[1:] for t in _transitions(buf.sample(2000))}
    # (a, R, s_{t+m}, terminated, truncated, gamma^m)
    assert got == {
        0.0: (0, 1 + 0.5 * 2 + 0.25 * 3, 90.0, 1.0, 0.0, 0.125),  # 3 steps, ends by termination at the 3rd
        1.0: (1, 2 + 0.5 * 3, 90.0, 1.0, 0.0, 0.25),  # 2 steps, termination
        2.0: (2, 3.0, 90.0, 1.0, 0.0, 0.5),
        3.0: (3, 4.0, 4.0, 0.0, 0.0, 0.5),  # s=4 is the newest row: bootstrap from it after one step
        10.0: (5, 10 + 0.5 * 20, 91.0, 0.0, 1.0, 0.25),  # truncation: bootstrap from the true final obs
        11.0: (6, 20.0, 91.0, 0.0, 1.0, 0.5),
        12.0: (7, 30 + 0.5 * 40, 14.0, 0.0, 0.0, 0.25),  # stops before the newest row s=14
        13.0: (8, 40.0, 14.0, 0.0, 0.0, 0.5),
    }
    assert len(buf) == 8


class _Reference:
    """A loop-over-everything model of the buffer: every row each stream ever wrote, the last ``rows`` kept."""

    def __init__(self, rows, n_envs, n_step, gamma):
        self.rows, self.n_step, self.gamma = rows, n_step, gamma
        self.streams = [[] for _ in range(n_envs)]  # (obs, act, reward, term, trunc, is_start)

    def add(self, obs, act, rew, nxt, term, trunc):
        for e, s in enumerate(self.streams):
            s.append((obs[e], act[e], rew[e], term[e], trunc[e], True))
            if term[e] or trunc[e]:
                s.append((nxt[e], 0, 0.0, False, False, False))

    def transitions(self) -> dict:
        out = {}
        for s in self.streams:
            first = max(0, len(s) - self.rows)
            for i in range(first, len(s) - 1):  # the newest row has no successor
                if not s[i][5]:
                    continue
                ret, m, term, trunc = 0.0, 0, 0.0, 0.0
                for k in range(self.n_step):
                    if i + k == len(s) - 1:
                        break
                    _, _, r, te, tr, _ = s[i + k]
                    ret += self.gamma**k * r
                    m, term, trunc = k + 1, float(te), float(tr)
                    if te or tr:
                        break
                out[s[i][0]] = (s[i][1], round(ret, 6), s[i + m][0], term, trunc, round(self.gamma**m, 6))
        return out


@pytest.mark.parametrize("n_step", [1, 3])
@pytest.mark.parametrize("writes", ["numpy", "torch"])
def test_random_streams_with_wrap_match_a_reference(n_step, writes):
    rng = np.random.default_rng(0)
    n_envs, capacity, gamma = 2, 24, 0.9
    buf = _buffer(capacity=capacity, n_envs=n_envs, n_step=n_step, gamma=gamma)
    if writes == "torch":
        buf._np = None  # the index_put path an accelerator's buffer takes
    ref = _Reference(capacity // n_envs, n_envs, n_step, gamma)
    counter = 0.0
    obs = np.array([counter, counter + 1]); counter += 2
    for step in range(60):  # 5 times round the 12-row rings
        nxt = np.array([counter, counter + 1]); counter += 2
        term, trunc = rng.random(n_envs) < 0.15, rng.random(n_envs) < 0.1
        act, rew = rng.integers(0, 4, n_envs), rng.normal(size=n_envs).round(3)
        buf.add(obs[:, None], act, rew, nxt[:, None], term, trunc)
        ref.add(obs.tolist(), act.tolist(), rew.tolist(), nxt.tolist(), term.tolist(), trunc.tolist())
        done = term | trunc
        obs = np.where(done, [counter, counter + 1], nxt); counter += 2  # reset observations differ from final ones
        if step % 7 == 6:
            expected = ref.transitions()
            assert len(buf) == len(expected)
            batch = buf.sample(3000)
            got = {}
            for t in _transitions(batch):
                disc = 0.9 if n_step == 1 else t[6]  # one-step batches leave the discount to the learner
                got[t[0]] = (t[1], t[2], t[3], t[4], t[5], round(disc, 6))
            # every sampled row is a real transition of one episode, and every valid start gets drawn
            assert got.keys() == expected.keys()
            for k, v in expected.items():
                assert np.allclose(got[k], v, atol=1e-5), (k, got[k], v)


def test_sampling_is_uniform_over_valid_starts():
    buf = _buffer(capacity=60, n_envs=2)
    # env 0: one long episode; env 1: episodes of 2 steps (a third of its rows are final observations)
    for t in range(15):
        buf.add(np.array([[t], [100 + t]], np.float32), np.zeros(2), np.zeros(2), np.array([[t + 1], [200 + t]], np.float32),
                np.array([0, t % 2]), np.zeros(2))
    n_valid = len(buf)
    torch.manual_seed(3)
    draws = 60_000
    starts = buf.sample(draws).obs[:, 0]
    values, counts = starts.unique(return_counts=True)
    assert len(values) == n_valid == 14 + 14  # the newest row of each stream waits for its successor
    p = 1 / n_valid
    sd = math.sqrt(draws * p * (1 - p))
    assert (counts.float() - draws * p).abs().max() < 5 * sd


def test_uint8_observations_stay_uint8():
    buf = StreamReplayBuffer(32, (3, 3, 2), torch.uint8, (), torch.uint8, 2, "cpu", n_step=2, gamma=0.9)
    assert buf.obs.dtype == torch.uint8
    frames = torch.arange(5 * 2 * 18).reshape(5, 2, 3, 3, 2).to(torch.uint8)  # [t, env, ...], all distinct
    for t in range(4):
        buf.add(frames[t].numpy(), np.array([t, 10 + t]), np.ones(2), frames[t + 1].numpy(), np.zeros(2), np.zeros(2))
    b = buf.sample(64)
    assert b.obs.dtype == torch.uint8 and b.next_obs.dtype == torch.uint8 and b.act.dtype == torch.uint8
    assert b.obs.shape == (64, 3, 3, 2)
    t, env = b.act.long() % 10, b.act.long() // 10
    m = torch.where(t < 2, 2, 1)  # row 3 is the newest: the window from t=2 stops after one step
    assert torch.equal(b.obs, frames[t, env])
    assert torch.equal(b.next_obs, frames[t + m, env])
    assert torch.allclose(b.discount, 0.9 ** m.float())


def test_wrap_around_keeps_the_newest_rows():
    buf = _buffer(capacity=8, n_envs=2)  # 4 rows per stream
    for t in range(10):
        buf.add(np.array([[t], [50 + t]], np.float32), np.zeros(2), np.zeros(2), np.array([[t + 1], [51 + t]], np.float32), np.zeros(2), np.zeros(2))
    # each stream holds s = 6..9; 6, 7, 8 are starts (9 waits for its successor)
    assert len(buf) == 6
    torch.manual_seed(0)
    b = buf.sample(500)
    got = set(zip(b.obs[:, 0].tolist(), b.next_obs[:, 0].tolist()))
    assert got == {(6, 7), (7, 8), (8, 9), (56, 57), (57, 58), (58, 59)}
    # an episode end across the seam: the two rows it writes overwrite the two oldest
    buf.add(np.array([[10], [60]], np.float32), np.zeros(2), np.zeros(2), np.array([[99], [61]], np.float32), np.array([1, 0]), np.zeros(2))
    b = buf.sample(500)
    got = set(zip(b.obs[:, 0].tolist(), b.next_obs[:, 0].tolist()))
    assert got == {(8, 9), (9, 10), (10, 99), (57, 58), (58, 59), (59, 60)}
    assert len(buf) == 6


def test_state_dict_round_trip_is_exact():
    rng = np.random.default_rng(1)
    a = _buffer(capacity=20, n_envs=2, n_step=3, gamma=0.9)
    obs = rng.normal(size=(2, 1))

    def step(bufs):
        nonlocal obs
        nxt = rng.normal(size=(2, 1))
        term, trunc = rng.random(2) < 0.2, rng.random(2) < 0.1
        act, rew = rng.integers(0, 3, 2), rng.normal(size=2)
        for b in bufs:
            b.add(obs, act, rew, nxt, term, trunc)
        obs = np.where((term | trunc)[:, None], rng.normal(size=(2, 1)), nxt)

    for _ in range(23):  # past the wrap
        step([a])
    state = a.state_dict()
    assert state["data"]["obs"].shape[0] <= 10
    b = _buffer(capacity=20, n_envs=2, n_step=3, gamma=0.9)
    b.load_state_dict(state)
    assert len(b) == len(a)
    for _ in range(3):
        torch.manual_seed(5)
        x = a.sample(64)
        torch.manual_seed(5)
        y = b.sample(64)
        for f in ("obs", "act", "reward", "next_obs", "terminated", "truncated", "discount"):
            assert torch.equal(getattr(x, f), getattr(y, f)), f
        step([a, b])
    s2, s3 = a.state_dict(), b.state_dict()
    assert all(torch.equal(s2["data"][k], s3["data"][k]) for k in s2["data"])
    assert all(torch.equal(s2[k], s3[k]) for k in ("starts", "pos", "size", "pending", "start_count"))
    with pytest.raises(ValueError, match="capacity"):
        _buffer(capacity=30, n_envs=2).load_state_dict(state)


def test_bytes_per_transition():
    cartpole = StreamReplayBuffer(100, (4,), torch.float32, (), torch.long, 1, "cpu")
    assert cartpole.nbytes() == 4 * 4 + 8 + 4 + 1 + 1 + 4  # obs, act, reward, terminated, truncated, start index
    image = StreamReplayBuffer(100, (10, 10, 6), torch.uint8, (), torch.uint8, 1, "cpu")
    assert image.nbytes() == 600 + 1 + 4 + 1 + 1 + 4


def test_empty_buffer_and_too_small_capacity():
    buf = _buffer()
    with pytest.raises(ValueError, match="no complete transition"):
        buf.sample(1)
    buf.add(np.zeros((2, 1)), np.zeros(2), np.zeros(2), np.ones((2, 1)), np.zeros(2), np.zeros(2))
    assert len(buf) == 0  # the first rows wait for their successors
    with pytest.raises(ValueError, match="rows per env"):
        _buffer(capacity=4, n_envs=2)
