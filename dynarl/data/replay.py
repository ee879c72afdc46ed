"""A circular replay buffer of preallocated tensors on the training device."""

from __future__ import annotations

import numpy as np
import torch

from dynarl.data.batch import Batch

_FIELDS = ("obs", "act", "reward", "next_obs", "terminated", "truncated")


class ReplayBuffer:
    """FIFO replay (s, a, r, s', terminated, truncated) with uniform minibatch sampling.

    ``terminated`` and ``truncated`` are stored separately so targets bootstrap through time limits.
    Storage is allocated once, on ``device``; sampling draws indices with torch's seeded generator.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device):
        self.capacity, self.device = int(capacity), device
        shapes = {"obs": (obs_dim,), "act": (act_dim,), "reward": (), "next_obs": (obs_dim,), "terminated": (), "truncated": ()}
        # torch.empty: on CPU the OS commits pages only as rows are written, so a 1M-row buffer is cheap
        # until it fills; rows past ``size`` are never read
        self.storage = {k: torch.empty((self.capacity, *s), dtype=torch.float32, device=device) for k, s in shapes.items()}
        self.pos = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs, act, reward, next_obs, terminated, truncated) -> None:
        """Add one transition (array-likes) or a batch of them (leading dim = rows)."""
        row = {"obs": obs, "act": act, "reward": reward, "next_obs": next_obs, "terminated": terminated, "truncated": truncated}
        values = {k: torch.as_tensor(np.asarray(v, dtype=np.float32), device=self.device) for k, v in row.items()}
        n = 1 if values["obs"].dim() == 1 else values["obs"].shape[0]
        idx = (self.pos + torch.arange(n, device=self.device)) % self.capacity
        for k, v in values.items():
            self.storage[k][idx] = v.reshape(n, *self.storage[k].shape[1:])
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int) -> Batch:
        idx = torch.randint(0, self.size, (batch_size,), device=self.device)
        return Batch(**{k: v.index_select(0, idx) for k, v in self.storage.items()})  # torch's fast gather (not v[idx])

    def obs_act(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The observations and actions of rows ``idx`` (start states of model rollouts)."""
        return self.storage["obs"].index_select(0, idx), self.storage["act"].index_select(0, idx)

    def recent(self, n: int) -> dict[str, torch.Tensor]:
        """The last ``min(n, size)`` rows added, oldest first."""
        n = min(int(n), self.size)
        idx = (self.pos - n + torch.arange(n, device=self.device)) % self.capacity
        return {k: v[idx] for k, v in self.storage.items()}

    def resized(self, capacity: int) -> "ReplayBuffer":
        """A buffer of ``capacity`` rows holding this one's most recent rows (MBPO reallocates its model
        buffer this way when the rollout length changes)."""
        out = ReplayBuffer(capacity, self.storage["obs"].shape[1], self.storage["act"].shape[1], self.device)
        rows = self.recent(capacity)
        n = rows["obs"].shape[0]
        for k, v in rows.items():
            out.storage[k][:n] = v
        out.size, out.pos = n, n % out.capacity
        return out

    def add_batch(self, rows: dict[str, torch.Tensor]) -> None:
        """Add rows already on the device (dict of tensors with a leading row dim), with no host copy.

        Rows beyond the capacity keep only the newest ``capacity`` of them, as the FIFO would.
        """
        n = rows["obs"].shape[0]
        if n > self.capacity:
            rows, n = {k: v[-self.capacity :] for k, v in rows.items()}, self.capacity
        first = min(n, self.capacity - self.pos)  # rows up to the end of storage, then the rest from the start
        for k in _FIELDS:
            v = rows[k].to(self.device, torch.float32)
            self.storage[k][self.pos : self.pos + first] = v[:first]
            self.storage[k][: n - first] = v[first:]
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def state_dict(self) -> dict:
        """The filled rows in storage order plus the write position (no padding is saved)."""
        return {"data": {k: v[: self.size].clone() for k, v in self.storage.items()}, "pos": self.pos, "size": self.size, "capacity": self.capacity}

    def load_state_dict(self, state: dict) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"replay capacity {state['capacity']} in the checkpoint, {self.capacity} in the config")
        self.size, self.pos = int(state["size"]), int(state["pos"])
        for k in _FIELDS:
            self.storage[k][: self.size] = state["data"][k].to(self.device)
