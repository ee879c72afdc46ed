"""Hindsight goal relabelling: every trajectory demonstrates how to reach the states it went on to visit.

Goal-conditioned behaviour cloning (seed 001, D2) trains ``pi(a | s, g)`` with ``g`` a state the demonstrator
reached later. With the "future" strategy of hindsight experience replay (Andrychowicz et al. 2017, section 4.5),
a transition ``(s_t, a_t)`` of an episode with observations ``s_0 .. s_T`` is paired with the achieved goal of
``s_t'``, ``t'`` uniform in ``(t, T]``; "final" always takes ``s_T`` (001's "g from the demonstrator's final
state"). The goal replaces the desired-goal dims of the observation, so the policy sees ``[s_t, g]`` in the
env's own layout and acts on the env's observations unchanged.

Storage is :class:`~dynarl.sources.dataset.DatasetSource`'s: every observation once (N + E rows), a transition a
row index. Besides its row, a transition knows the row of its episode's last observation, so the future row is
drawn per sample in one vectorised step from torch's global (seeded) generator.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from dynarl.data.batch import Batch
from dynarl.data.datasets import DatasetError
from dynarl.sources.dataset import FixedData

STRATEGIES = ("future", "final")


class HindsightRelabeller(FixedData):
    """Goal-relabelled (s, a) samples from episodes in Minari's layout (dicts with ``obs`` [T+1, d], ``act`` [T]).

    ``achieved_goal_dims``: where an observation holds the state reached (e.g. the position); ``desired_goal_dims``:
    where it holds the goal (same length). ``sample(batch_size)`` returns a :class:`Batch` whose ``obs`` and
    ``next_obs`` carry the relabelled goal, ``act`` the action taken, ``reward`` 1 where ``s_{t+1}`` achieved that
    goal exactly (the future draw picked ``t' = t + 1``) and ``terminated`` the same flag.
    """

    def __init__(self, episodes: Sequence[dict], achieved_goal_dims: Sequence[int], desired_goal_dims: Sequence[int], device: torch.device | str = "cpu", strategy: str = "future", name: str = "episodes"):
        self.name, self.device, self.strategy = name, torch.device(device), strategy
        self.achieved_goal_dims, self.desired_goal_dims = tuple(int(i) for i in achieved_goal_dims), tuple(int(i) for i in desired_goal_dims)
        if strategy not in STRATEGIES:
            raise DatasetError(f"goal strategy {strategy!r} is unknown: use one of {', '.join(STRATEGIES)}")
        if len(self.achieved_goal_dims) != len(self.desired_goal_dims) or not self.achieved_goal_dims:
            raise DatasetError(f"achieved_goal_dims {self.achieved_goal_dims} and desired_goal_dims {self.desired_goal_dims} must be non-empty and of the same length")
        episodes = [ep for ep in episodes if len(ep["act"]) > 0]
        if not episodes:
            raise DatasetError(f"dataset {name!r} has no transitions to relabel")
        obs_dim = np.asarray(episodes[0]["obs"]).reshape(len(episodes[0]["obs"]), -1).shape[1]
        bad = [i for i in (*self.achieved_goal_dims, *self.desired_goal_dims) if not 0 <= i < obs_dim]
        if bad:
            raise DatasetError(f"dataset {name!r}: goal dims {bad} are outside its {obs_dim}-dim observations; set achieved_goal_dims and desired_goal_dims to where its observations hold the state reached and the goal")
        lengths = np.array([len(ep["act"]) for ep in episodes])
        for ep, n in zip(episodes, lengths):
            if len(ep["obs"]) != n + 1:
                raise DatasetError(f"dataset {name!r}: an episode has {len(ep['obs'])} observations for {n} actions; relabelling needs Minari's N+1")
        starts = np.r_[0, np.cumsum(lengths + 1)[:-1]]  # row of each episode's first observation
        obs_row = np.concatenate([s + np.arange(n) for s, n in zip(starts, lengths)])
        last_row = np.repeat(starts + lengths, lengths)  # row of s_T of the transition's episode
        self.observations = torch.as_tensor(np.concatenate([np.asarray(ep["obs"], dtype=np.float32).reshape(len(ep["obs"]), -1) for ep in episodes]), device=self.device)
        act = np.concatenate([np.asarray(ep["act"]) for ep in episodes])
        self.act = torch.as_tensor(act.astype(np.float32) if np.issubdtype(act.dtype, np.floating) else act, device=self.device)
        self.obs_row, self.last_row = torch.as_tensor(obs_row, device=self.device), torch.as_tensor(last_row, device=self.device)
        self.episode_lengths = lengths
        self._achieved = torch.as_tensor(self.achieved_goal_dims, device=self.device)
        self._desired = torch.as_tensor(self.desired_goal_dims, device=self.device)

    def __len__(self) -> int:
        return int(self.obs_row.shape[0])

    def goal_rows(self, idx: torch.Tensor) -> torch.Tensor:
        """The row whose achieved goal each sampled transition is relabelled with: ``t'`` uniform in ``(t, T]``
        ("future"), or ``T`` ("final")."""
        row, last = self.obs_row[idx], self.last_row[idx]
        if self.strategy == "final":
            return last
        span = last - row  # T - t >= 1 choices
        offset = (torch.rand(idx.shape, device=self.device) * span).long().clamp_max(span - 1)  # clamp: float rounding at u -> 1
        return row + 1 + offset

    def relabel(self, rows: torch.Tensor, goal_rows: torch.Tensor) -> torch.Tensor:
        """Observations ``rows`` with their desired-goal dims replaced by the achieved goal of ``goal_rows``."""
        obs = self.observations.index_select(0, rows)  # a fresh tensor (torch's fast gather): safe to write into
        obs[:, self._desired] = self.observations.index_select(0, goal_rows)[:, self._achieved]
        return obs

    def sample(self, batch_size: int) -> Batch:
        idx = torch.randint(0, len(self), (batch_size,), device=self.device)
        row, goal_row = self.obs_row[idx], self.goal_rows(idx)
        reached = (goal_row == row + 1).float()
        return Batch(obs=self.relabel(row, goal_row), act=self.act.index_select(0, idx), reward=reached, next_obs=self.relabel(row + 1, goal_row), terminated=reached, truncated=torch.zeros_like(reached))

    # --- transforms applied once, before training ----------------------------------------------------------

    def observation_stats(self, eps: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of the transitions' observations, the desired-goal dims given the achieved-goal dims'
        statistics: after relabelling a goal *is* an achieved state, and tying them makes relabelling commute
        with standardisation (``relabel`` may then copy already standardised values)."""
        obs = self.observations[self.obs_row].float()
        mean, std = obs.mean(0), obs.std(0, correction=0).clamp_min(eps)
        mean[self._desired], std[self._desired] = mean[self._achieved], std[self._achieved]
        return mean, std

    def normalize_observations(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        if not (torch.equal(mean[self._desired], mean[self._achieved]) and torch.equal(std[self._desired], std[self._achieved])):
            raise ValueError("goal dims must be standardised like the achieved dims (see observation_stats), or relabelled goals would be scaled wrongly")
        self.observations = (self.observations - mean) / std

    def fingerprint_tensors(self) -> tuple[torch.Tensor, ...]:
        """The stored observations, actions and row indices."""
        return (self.observations, self.act, self.obs_row, self.last_row)
