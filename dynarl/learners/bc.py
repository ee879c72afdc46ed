"""Behaviour cloning (D1): fit a deterministic policy to expert actions, ``min_theta E_(s,a)~D ||pi_theta(s) - a||^2``.

000 (POPLIN's policy distillation) treats the planner's output a* at s as expert data and minimises exactly
this squared error; 001's ``max_theta E log pi_theta(a|o)`` is the same objective for a Gaussian policy of fixed
variance. The learner does not know where its (s, a) pairs come from: POPLIN feeds it its planner's actions,
imitation algorithms feed it demonstrations. Actions live in [-1, 1]^|A| (the caller rescales).

:class:`~dynarl.nn.bc_policy.BCPolicy` also offers a *functional* forward with one parameter vector per row group, which
POPLIN-P uses to evaluate a population of perturbed policies ``pi_{theta + omega_i}`` as one batched matmul.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch

from dynarl.config import non_negative, one_of, param, positive, positive_sizes
from dynarl.learners.base import Learner, adam, flat_dim
from dynarl.nn.bc_policy import ACTIVATIONS, BCPolicy


@dataclass
class BCLearnerConfig:
    hidden_sizes: tuple[int, ...] = param((64, 64), positive_sizes, "policy hidden widths (POPLIN: 64x64)")
    activation: str = param("tanh", one_of(*ACTIVATIONS), "hidden activation")
    lr: float = param(1e-3, positive, "Adam learning rate")
    batch_size: int = param(256, positive, "minibatch size")
    weight_decay: float = param(0.0, non_negative, "L2 coefficient on the weights, added to the loss")


class BCLearner(Learner):
    """``update(batch)`` takes any batch with ``.obs`` [B, obs] and ``.act`` [B, A] (in [-1, 1])."""

    name = "bc"

    def __init__(self, cfg: BCLearnerConfig, obs_space: gym.Space, action_space: gym.Space, device: torch.device):
        super().__init__(device)
        obs_dim, act_dim = flat_dim(obs_space), flat_dim(action_space)
        self.cfg = cfg
        self.policy = BCPolicy(obs_dim, act_dim, cfg.hidden_sizes, cfg.activation).to(device)
        self.modules = {"policy": self.policy}
        self.optimizers = {"policy": adam(self.policy.parameters(), cfg.lr)}

    @torch.no_grad()
    def fit_normalizer(self, obs: torch.Tensor) -> None:
        """Fit the input standardisation on the states the policy is trained on (call before updates)."""
        self.policy.obs_normalizer.fit(obs)

    def loss(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """``E ||pi(s) - a||^2`` (sum over action dims, mean over rows) + L2."""
        loss = (self.policy(obs) - act).square().sum(-1).mean()
        if self.cfg.weight_decay:
            loss = loss + self.cfg.weight_decay * sum(layer.weight.square().sum() for layer in self.policy.layers)
        return loss

    def update(self, batch) -> dict[str, torch.Tensor]:
        loss = self.loss(batch.obs, batch.act)
        self._step("policy", loss)
        self._watch(loss)
        self.num_updates += 1
        return {"bc_loss": loss.detach()}

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self.policy(obs)
