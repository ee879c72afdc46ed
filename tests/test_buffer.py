import numpy as np
import torch

from dynarl.data import ReplayBuffer


def _row(i, obs_dim=3):
    return dict(obs=np.full(obs_dim, i), act=np.array([i / 10]), reward=float(i), next_obs=np.full(obs_dim, i + 1), terminated=i % 3 == 0, truncated=i % 5 == 0)


def test_wraps_around_and_keeps_flags_apart():
    buf = ReplayBuffer(4, 3, 1, torch.device("cpu"))
    for i in range(6):
        buf.add(**_row(i))
    assert len(buf) == 4 and buf.pos == 2
    # rows 0, 1 were overwritten by 4, 5
    assert buf.storage["reward"].tolist() == [4.0, 5.0, 2.0, 3.0]
    assert buf.storage["terminated"].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert buf.storage["truncated"].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert torch.equal(buf.storage["next_obs"][0], torch.full((3,), 5.0))


def test_sample_only_filled_rows_and_batch_add():
    buf = ReplayBuffer(100, 2, 1, torch.device("cpu"))
    buf.add(np.ones((3, 2)), np.zeros((3, 1)), np.array([1.0, 2.0, 3.0]), np.ones((3, 2)), np.zeros(3), np.zeros(3))
    assert len(buf) == 3
    torch.manual_seed(0)
    b = buf.sample(64)
    assert set(b.reward.tolist()) <= {1.0, 2.0, 3.0} and b.obs.shape == (64, 2)


def test_state_round_trip():
    buf = ReplayBuffer(4, 3, 1, torch.device("cpu"))
    for i in range(6):
        buf.add(**_row(i))
    other = ReplayBuffer(4, 3, 1, torch.device("cpu"))
    other.load_state_dict(buf.state_dict())
    assert other.pos == buf.pos and other.size == buf.size
    for k in buf.storage:
        assert torch.equal(other.storage[k], buf.storage[k])
