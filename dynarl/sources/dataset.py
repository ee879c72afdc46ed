"""The dataset source: a fixed set of transitions, sampled uniformly, for algorithms that learn without an env.

An offline algorithm counts gradient steps (``clock = "gradient_steps"``) and draws every batch from here. Every
observation is stored once (Minari's N+1 per episode) and a transition is a pair of row indices into them, so
a dataset costs about its raw size in memory. The transitions are not written into checkpoints (they are
re-read from where they came from); a checkpoint keeps their count and a fingerprint, and loading against
different data is refused.
"""

from __future__ import annotations

import abc
import hashlib

import numpy as np
import torch

from dynarl.data.batch import Batch
from dynarl.data.datasets import DatasetError, Episodes

FIELDS = ("act", "reward", "terminated", "truncated")


def _tensor(x, name: str, what: str, rows: int | None) -> torch.Tensor:
    v = torch.as_tensor(np.asarray(x))
    if rows is not None and len(v) != rows:
        raise DatasetError(f"dataset {name!r}: {what} has {len(v)} rows but obs has {rows}; every field needs one row per transition")
    if v.is_floating_point():
        v = v.float()
        if not bool(torch.isfinite(v).all()):
            raise DatasetError(f"dataset {name!r}: {what} holds NaN or inf values; clean the data before training on it")
    return v


class FixedData(abc.ABC):
    """The checkpoint part of a source built from fixed data: its row count and a SHA-256 fingerprint of its
    tensors (``fingerprint_tensors()``), not the data itself (it is re-read from where it came from); loading
    against different data is refused."""

    name: str

    @abc.abstractmethod
    def fingerprint_tensors(self) -> tuple[torch.Tensor, ...]:
        """Every tensor that identifies the data."""

    def fingerprint(self) -> str:
        """SHA-256 over every stored tensor's bytes: the same data gives the same fingerprint."""
        h = hashlib.sha256()
        for v in self.fingerprint_tensors():
            h.update(v.cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def state_dict(self) -> dict:
        return {"rows": len(self), "fingerprint": self.fingerprint()}

    def load_state_dict(self, state: dict) -> None:
        if int(state["rows"]) != len(self) or state["fingerprint"] != self.fingerprint():
            raise DatasetError(f"the checkpoint was trained on other data than dataset {self.name!r} holds now ({state['rows']} rows, fingerprint {state['fingerprint'][:12]}; "
                               f"now {len(self)} rows, {self.fingerprint()[:12]}): the dataset was made again or changed since; restore the data it was trained on, or start a new run")


class DatasetSource(FixedData):
    """Transitions from ``observations[obs_row] --act--> observations[next_row]`` with reward and flags.

    Build it from a transitions dict ``{obs, act, reward, next_obs, terminated, truncated}`` (``obs`` and
    ``act`` required; the rest default to zeros, e.g. for behaviour cloning from (s, a) pairs) or from
    :class:`~dynarl.data.datasets.Episodes` with :meth:`from_episodes`. ``sample(batch_size)`` draws rows
    uniformly with torch's global RNG, so checkpoints of that RNG make a run reproducible.
    """

    def __init__(self, transitions: dict, device: torch.device, name: str = "dataset"):
        missing = [k for k in ("obs", "act") if k not in transitions]
        if missing:
            raise DatasetError(f"dataset {name!r} has no {', '.join(missing)}: a dataset needs at least observations and actions")
        n = len(transitions["obs"])
        if n == 0:
            raise DatasetError(f"dataset {name!r} is empty")
        obs = _tensor(transitions["obs"], name, "obs", None)
        rows = torch.arange(n)
        if transitions.get("next_obs") is not None:
            observations, next_row = torch.cat([obs, _tensor(transitions["next_obs"], name, "next_obs", n)]), rows + n
        else:
            observations, next_row = obs, rows
        fields = {k: (torch.zeros(n) if transitions.get(k) is None else _tensor(transitions[k], name, k, n)) for k in FIELDS}
        self._build(name, device, observations, rows, next_row, fields)

    @classmethod
    def from_episodes(cls, episodes: Episodes, device: torch.device, require_rewards: bool = True, actions: np.ndarray | None = None) -> "DatasetSource":
        """The transitions of a Minari dataset (``require_rewards``: refuse one without rewards, for RL methods);
        ``actions`` replaces the dataset's own (e.g. rescaled to the learner's [-1, 1])."""
        name = episodes.dataset_id
        if episodes.rewards is None and require_rewards:
            raise DatasetError(f"dataset {name!r} has no rewards; reinforcement learning needs them (behaviour cloning does not)")
        n = len(episodes)
        if n == 0:
            raise DatasetError(f"dataset {name!r} is empty")
        self = cls.__new__(cls)
        fields = {
            "act": _tensor(episodes.actions if actions is None else actions, name, "act", n),
            "reward": torch.zeros(n) if episodes.rewards is None else _tensor(episodes.rewards, name, "reward", n),
            "terminated": torch.as_tensor(episodes.terminations, dtype=torch.float32),
            "truncated": torch.as_tensor(episodes.truncations, dtype=torch.float32),
        }
        rows = torch.as_tensor(episodes.obs_row)
        self._build(name, device, _tensor(episodes.observations, name, "observations", None), rows, rows + 1, fields)
        return self

    def _build(self, name, device, observations, obs_row, next_row, fields) -> None:
        self.name, self.device = name, torch.device(device)
        self.observations = observations.to(self.device)
        self.obs_row, self.next_row = obs_row.to(self.device), next_row.to(self.device)
        self.data = {k: v.to(self.device) for k, v in fields.items()}

    def __len__(self) -> int:
        return int(self.obs_row.shape[0])

    @property
    def obs(self) -> torch.Tensor:
        """Every transition's observation (a gather: for statistics, not for the hot path)."""
        return self.observations[self.obs_row]

    def sample(self, batch_size: int) -> Batch:
        idx = torch.randint(0, len(self), (batch_size,), device=self.device)
        # index_select, torch's fast gather: indexing with x[idx] took about 3x as long for a batch of 256 on the CPU
        return Batch(obs=self._observations(self.obs_row, idx), next_obs=self._observations(self.next_row, idx), **{k: v.index_select(0, idx) for k, v in self.data.items()})

    def _observations(self, rows: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return self.observations.index_select(0, rows.index_select(0, idx))

    def obs_act(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The observations and actions of transitions ``idx`` (start states of model rollouts)."""
        return self._observations(self.obs_row, idx), self.data["act"].index_select(0, idx)

    def transitions(self) -> dict[str, torch.Tensor]:
        """Every transition as rows {obs, act, reward, next_obs, terminated, truncated} (gathers: for fitting a model once)."""
        return {"obs": self.obs, "next_obs": self.observations[self.next_row], **self.data}

    # --- transforms applied once, before training ----------------------------------------------------------

    def observation_stats(self, eps: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of the transitions' observations (std floored at ``eps``, as CORL and TD3+BC do)."""
        obs = self.obs.float()
        return obs.mean(0), obs.std(0, correction=0).clamp_min(eps)

    def normalize_observations(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Standardise the stored observations in place: the learner then sees (s - mean) / std."""
        self.observations = (self.observations.float() - mean) / std

    def scale_rewards(self, scale: float, shift: float = 0.0) -> None:
        self.data["reward"] = self.data["reward"] * scale + shift

    def fingerprint_tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.observations, self.obs_row, self.next_row, *(self.data[k] for k in FIELDS))
