"""The minibatch every learner takes: transitions (s, a, r, s') with termination and truncation apart."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


@dataclass
class Batch:
    """Transitions (s, a, r, s') with termination and truncation kept apart.

    Targets bootstrap through ``truncated`` (a time limit is not a terminal state) and stop only at
    ``terminated``. The optional fields are ``None`` unless a buffer or a batch transform fills them, so
    no buffer has to know about them:

    - ``discount``: the per-row factor in front of the bootstrapped value, gamma^n for an n-step return
      (learners use gamma when it is ``None``);
    - ``weights``: per-row importance weights for the loss (prioritised replay, off-policy corrections);
    - ``intrinsic_reward``: an exploration bonus kept apart from ``reward`` so both can be logged;
    - ``next_value``: the bootstrapped value V'(s') computed ahead (a target network that a round of updates
      leaves unchanged values the whole round's rows in one pass); the DQN learner reads it and computes
      V'(s') itself when it is ``None``.
    """

    obs: torch.Tensor
    act: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor  # float 0/1
    truncated: torch.Tensor  # float 0/1, kept for learners that need episode boundaries
    discount: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    intrinsic_reward: torch.Tensor | None = None
    next_value: torch.Tensor | None = None

    def replace(self, **changes) -> "Batch":
        """A copy with some fields changed (a batch transform's way to add a bonus or weights)."""
        return replace(self, **changes)

    def split(self, size: int) -> list["Batch"]:
        """Consecutive minibatches of ``size`` rows (views, in order; the last may be shorter)."""
        parts = {f.name: getattr(self, f.name) for f in fields(Batch)}
        pieces = {k: (v.split(size) if v is not None else None) for k, v in parts.items()}
        n = len(pieces["obs"])
        return [Batch(**{k: (v[i] if v is not None else None) for k, v in pieces.items()}) for i in range(n)]

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    @staticmethod
    def field_names() -> tuple[str, ...]:
        return tuple(f.name for f in fields(Batch))
