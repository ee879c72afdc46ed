"""What the policy-gradient learners share: the policy and value networks, acting, and the advantages.

REINFORCE, A2C, PPO and TRPO differ only in their update rule. They all own a stochastic policy
``pi_theta`` (categorical or Gaussian, :mod:`dynarl.nn.pg_policies`) and, when they use one, a value
network ``V_phi``; they all turn a :class:`~dynarl.data.rollout.Rollout` into advantages with the same
estimators (:mod:`dynarl.data.rollout`): GAE(lambda), n-step, or Monte-Carlo reward-to-go.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch

from dynarl.config import non_negative, one_of, param, positive, positive_sizes, unit_interval, unit_interval_open_closed
from dynarl.data.rollout import Rollout, gae, n_step_advantage
from dynarl.learners.base import Learner, flat_dim
from dynarl.nn.pg_policies import ValueNet, make_policy


@dataclass
class PGLearnerConfig:
    """Hyper-parameters every policy-gradient learner has (defaults: Stable-Baselines3's PPO)."""

    gamma: float = param(0.99, unit_interval_open_closed, "discount")
    advantage: str = param("gae", one_of("gae", "n_step"), "advantage estimator: GAE(lambda) (Schulman et al. 2016) or the n-step advantage")
    gae_lambda: float = param(0.95, unit_interval, "GAE lambda (0: one-step TD advantage, 1: Monte-Carlo minus V)")
    n_step: int = param(5, positive, "n of the n-step advantage (advantage=n_step)")
    normalize_advantage: bool = param(True, help="standardise advantages (per minibatch where there are minibatches)")
    lr: float = param(3e-4, positive, "learning rate of the policy (and value) optimiser")
    max_grad_norm: float = param(0.5, non_negative, "clip the gradient's global norm to this (0: no clipping)")
    ent_coef: float = param(0.0, non_negative, "entropy bonus c2")
    vf_coef: float = param(0.5, non_negative, "value-loss weight c1")
    hidden_sizes: tuple[int, ...] = param((64, 64), positive_sizes, "hidden widths of the policy and of the value network (separate networks)")
    activation: str = param("tanh", one_of("tanh", "relu", "silu", "elu"), "hidden activation")
    ortho_init: bool = param(True, help="orthogonal initialisation (policy output gain 0.01, value 1)")
    log_std_init: float = param(0.0, help="initial log std of a Gaussian policy (continuous actions)")


class PolicyGradientLearner(Learner):
    """Policy ``pi_theta`` (+ value ``V_phi`` when ``uses_value``); subclasses write ``update(rollout)``."""

    uses_value = True

    def __init__(self, cfg: PGLearnerConfig, obs_space: gym.Space, action_space: gym.Space, device: torch.device):
        super().__init__(device)
        obs_dim = flat_dim(obs_space)
        self.cfg = cfg
        self.policy = make_policy(obs_dim, action_space, cfg.hidden_sizes, cfg.activation, cfg.ortho_init, cfg.log_std_init).to(device)
        self.discrete = self.policy.discrete
        self.modules = {"policy": self.policy}
        self.value = None
        if self.uses_value:
            self.value = ValueNet(obs_dim, cfg.hidden_sizes, cfg.activation, cfg.ortho_init).to(device)
            self.modules["value"] = self.value
        self._params = [p for m in self.modules.values() for p in m.parameters()]

    # --- acting ---------------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For the collector: ``a ~ pi(.|s)``, ``log pi(a|s)`` and ``V(s)`` (zeros without a critic)."""
        params = self.policy(obs)
        act = self.policy.sample(params)
        value = self.value(obs) if self.value is not None else torch.zeros(obs.shape[0], device=obs.device)
        return act, self.policy.log_prob(params, act), value

    @torch.no_grad()
    def value_of(self, obs: torch.Tensor) -> torch.Tensor:
        return self.value(obs) if self.value is not None else torch.zeros(obs.shape[0], device=obs.device)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        params = self.policy(obs)
        return self.policy.mode(params) if deterministic else self.policy.sample(params)

    # --- advantages -----------------------------------------------------------------------------------

    @torch.no_grad()
    def advantages(self, rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, value targets)`` [T, N] with the configured estimator; the targets are ``A + V(s)``."""
        cfg = self.cfg
        if cfg.advantage == "gae":
            adv = gae(rollout, cfg.gamma, cfg.gae_lambda)
        else:
            adv = n_step_advantage(rollout, cfg.gamma, cfg.n_step)
        return adv, adv + rollout.value

    # --- optimisation ---------------------------------------------------------------------------------

    def _clipped_step(self, name: str, loss: torch.Tensor, params: list[torch.Tensor] | None = None) -> None:
        """One optimiser step with the gradient's global norm clipped to ``max_grad_norm`` (no host sync)."""
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()  # a vectorised learner's loss holds one value per seed
        if self.cfg.max_grad_norm > 0:
            self._clip_grad_norm(params or self._params, self.cfg.max_grad_norm)
        opt.step()
