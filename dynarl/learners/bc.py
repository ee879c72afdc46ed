"""Behaviour cloning (D1): fit a policy to expert actions.

``loss="mse"``: a deterministic policy, ``min_theta E_(s,a)~D ||pi_theta(s) - a||^2``; ``loss="nll"``: the
likelihood ``max_theta E_(s,a)~D log pi_theta(a|s)`` of a Gaussian policy (tanh mean, clipped samples). Discrete actions always use the
categorical likelihood (cross-entropy on the logits).

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
from torch.nn import functional as F

from dynarl.config import non_negative, one_of, param, positive, positive_sizes
from dynarl.learners.base import Learner, adam, flat_dim
from dynarl.nn.bc_policy import ACTIVATIONS, BCPolicy
from dynarl.nn.mlp import mlp
from dynarl.nn.policies import GaussianActor


@dataclass
class BCLearnerConfig:
    hidden_sizes: tuple[int, ...] = param((64, 64), positive_sizes, "policy hidden widths (POPLIN: 64x64)")
    activation: str = param("tanh", one_of(*ACTIVATIONS), "hidden activation")
    lr: float = param(1e-3, positive, "Adam learning rate")
    batch_size: int = param(256, positive, "minibatch size of POPLIN's fit (bc.batch_size); bc, gcbc and dagger refuse it and draw by the run's batch_size")
    weight_decay: float = param(0.0, non_negative, "L2 coefficient on the weights, added to the loss")
    loss: str = param("mse", one_of("mse", "nll"), "Box actions: mse (deterministic policy) or nll (Gaussian likelihood); Discrete actions always use the categorical likelihood")


def unread_batch_size(cfg: BCLearnerConfig, algo: str) -> str | None:
    """The config problem when a run that draws its own minibatches sets ``learner.batch_size`` (only POPLIN's fit
    reads it), else None."""
    if cfg.batch_size != BCLearnerConfig.batch_size:
        return f"learner.batch_size={cfg.batch_size} is not read by {algo} (only POPLIN's bc.batch_size is); {algo} draws its minibatches by batch_size: set batch_size={cfg.batch_size} instead"
    return None


class BCLearner(Learner):
    """``update(batch)`` takes any batch with ``.obs`` [B, obs] and ``.act`` ([B, A] in [-1, 1], or [B] indices)."""

    name = "bc"

    def __init__(self, cfg: BCLearnerConfig, obs_space: gym.Space, action_space: gym.Space, device: torch.device):
        super().__init__(device)
        obs_dim, act_dim = flat_dim(obs_space), flat_dim(action_space)
        self.cfg = cfg
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.discrete:
            self.kind = "categorical"
            self.policy = mlp(obs_dim, cfg.hidden_sizes, act_dim).to(device)  # logits
        elif cfg.loss == "nll":
            self.kind = "gaussian"
            self.policy = GaussianActor(obs_dim, act_dim, cfg.hidden_sizes).to(device)
        else:
            self.kind = "deterministic"
            self.policy = BCPolicy(obs_dim, act_dim, cfg.hidden_sizes, cfg.activation).to(device)
        self.modules = {"policy": self.policy}
        self.optimizers = {"policy": adam(self.policy.parameters(), cfg.lr)}

    @torch.no_grad()
    def fit_normalizer(self, obs: torch.Tensor) -> None:
        """Fit the input standardisation on the states the policy is trained on (call before updates)."""
        self.policy.obs_normalizer.fit(obs)

    def loss(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """``E ||pi(s) - a||^2`` (sum over action dims, mean over rows), or ``-E log pi(a|s)``; + L2 on the weights."""
        if self.kind == "categorical":
            loss = F.cross_entropy(self.policy(obs), act.reshape(-1).long())
        elif self.kind == "gaussian":
            loss = -self.policy.log_prob(obs, act).mean()
        else:
            loss = (self.policy(obs) - act).square().sum(-1).mean()
        if self.cfg.weight_decay:
            weights = [p for n, p in self.policy.named_parameters() if n.endswith("weight")]
            loss = loss + self.cfg.weight_decay * sum(w.square().sum() for w in weights)
        return loss

    @torch.no_grad()
    def log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """log pi(a|s) [B] of the stochastic policies (categorical, Gaussian)."""
        if self.kind == "categorical":
            return torch.log_softmax(self.policy(obs), -1).gather(1, act.reshape(-1, 1).long()).squeeze(1)
        if self.kind == "gaussian":
            return self.policy.log_prob(obs, act)
        raise ValueError("a deterministic BC policy has no density; train with learner.loss=nll")

    def update(self, batch) -> dict[str, torch.Tensor]:
        loss = self.loss(batch.obs, batch.act)
        self._step("policy", loss)
        self._watch(loss)
        self.num_updates += 1
        return {"bc_loss": loss.detach()}

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        if self.kind == "categorical":
            logits = self.policy(obs)
            return logits.argmax(-1) if deterministic else torch.distributions.Categorical(logits=logits).sample()
        if self.kind == "gaussian":
            return self.policy(obs, deterministic)[0]
        return self.policy(obs)
