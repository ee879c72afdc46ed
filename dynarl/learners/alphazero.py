"""AlphaZero's learner (Silver et al. 2017, "Mastering the game of Go without human knowledge", eq. 1):

    l = (z - v)^2 - pi^T log p + c ||theta||^2

p, v = f_theta(s) for a stored position s, pi the search's visit distribution there, z in {-1, 0, +1} the game's
outcome for the player to move in s. Illegal actions are masked out of p (log-softmax over the legal ones);
pi is 0 on them. The L2 term covers every parameter and is part of the loss (not Adam's weight_decay), so
the reported loss is the paper's l.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch
import torch.nn.functional as F

from dynarl.config import non_negative, param, positive, positive_sizes
from dynarl.learners.base import Learner, flat_dim
from dynarl.nn.alphazero import PolicyValueNet


@dataclass
class AlphaZeroLearnerConfig:
    lr: float = param(1e-3, positive, "Adam learning rate")
    weight_decay: float = param(1e-4, non_negative, "c of the L2 term c ||theta||^2 (AlphaGo Zero: 1e-4)")
    value_loss_weight: float = param(1.0, non_negative, "weight of (z - v)^2 (AlphaZero: 1)")
    hidden_sizes: tuple[int, ...] = param((128, 128), positive_sizes, "hidden layer widths of the policy-value MLP")


@dataclass
class PositionBatch:
    """Positions from finished games: observations (planes), legal-action masks, visit distributions, outcomes."""

    obs: torch.Tensor  # (B, *obs_shape) float32
    legal: torch.Tensor  # (B, A) bool
    pi: torch.Tensor  # (B, A) float32, sums to 1, 0 on illegal actions
    z: torch.Tensor  # (B,) float32 in {-1, 0, 1}


class AlphaZeroLearner(Learner):
    name = "alphazero"

    def __init__(self, cfg: AlphaZeroLearnerConfig, observation_space: gym.Space, action_space: gym.Space, device: torch.device):
        super().__init__(device)
        self.cfg = cfg
        self.net = PolicyValueNet(flat_dim(observation_space), int(action_space.n), cfg.hidden_sizes).to(device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.modules = {"net": self.net}
        self.optimizers = {"net": self.optimizer}

    @torch.no_grad()
    def predict(self, obs: torch.Tensor, legal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prior logits (-inf on illegal actions) and values for a search."""
        logits, value = self.net(obs)
        return logits.masked_fill(~legal, float("-inf")), value

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False, legal: torch.Tensor | None = None) -> torch.Tensor:
        """The raw network's move (no search): argmax of p, or a sample from it, among ``legal`` (default: all)."""
        logits, _ = self.net(obs)
        if legal is not None:
            logits = logits.masked_fill(~legal, float("-inf"))
        return logits.argmax(-1) if deterministic else torch.distributions.Categorical(logits=logits).sample()

    def loss(self, batch: PositionBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """l = w (z - v)^2 - pi^T log p + c ||theta||^2, averaged over the batch (eq. 1)."""
        logits, value = self.net(batch.obs)
        log_p = F.log_softmax(logits.masked_fill(~batch.legal, float("-inf")), -1).masked_fill(~batch.legal, 0.0)  # 0 * log 0 := 0
        policy_loss = -(batch.pi * log_p).sum(-1).mean()
        value_loss = (batch.z - value).pow(2).mean()
        l2 = sum(p.pow(2).sum() for p in self.net.parameters())
        total = self.cfg.value_loss_weight * value_loss + policy_loss + self.cfg.weight_decay * l2
        return total, {"loss": total.detach(), "policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(), "l2": l2.detach()}

    def update(self, batch: PositionBatch) -> dict[str, torch.Tensor]:
        loss, metrics = self.loss(batch)
        self._watch(loss)
        self._step("net", loss)
        self.num_updates += 1
        return metrics
