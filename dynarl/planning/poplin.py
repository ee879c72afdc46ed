"""POPLIN's policy-guided proposals (000 section 2.3, A6): a policy proposes, CEM optimises a perturbation.

- :class:`PolicyActionNoise` (POPLIN-A): the solution is an action-noise sequence delta [H, A] and every
  simulated particle takes ``a_t = clip(pi(s_t) + delta_t)`` at its own imagined state, so the objective is
  000's ``R(s_i, delta_i) = E[sum_t r(s_t, a^_t + delta_t)]``. Warm start: shift delta one step.
- :class:`PolicyParamNoise` (POPLIN-P): the solution is a parameter perturbation omega [D] and particles
  act with ``pi_{theta + omega}(s_t)``, 000's ``R(s_i, omega_i) = E[sum_t r(s_t, pi_{theta + omega}(s_t))]``.
  One omega is kept for the whole horizon (the seed writes omega_t; a per-step omega would multiply the
  search dimension by H). Warm start: the previous omega.

Both plug into :class:`dynarl.planning.mpc.MPCController` like PETS's open-loop actions, and the policy is
distilled from the executed actions by the BC learner (:mod:`dynarl.learners.bc`).
"""

from __future__ import annotations

import torch

from dynarl.nn.bc_policy import BCPolicy


class _PolicyProposal:
    def __init__(self, policy: BCPolicy, act_low: torch.Tensor, act_high: torch.Tensor):
        self.policy = policy
        self.act_low, self.act_high = act_low, act_high
        self.act_half = (act_high - act_low) / 2

    def _to_env(self, u: torch.Tensor) -> torch.Tensor:
        """Policy output in [-1, 1] -> env action bounds."""
        return self.act_low + (u + 1) * self.act_half


class PolicyActionNoise(_PolicyProposal):
    """POPLIN-A: delta [H, A] within +-``noise_bound`` x half the action range, added to pi(s_t)."""

    def __init__(self, policy: BCPolicy, act_low: torch.Tensor, act_high: torch.Tensor, horizon: int, noise_bound: float = 1.0):
        super().__init__(policy, act_low, act_high)
        self.horizon = horizon
        self.upper = noise_bound * self.act_half
        self.lower = -self.upper

    def initial(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.zeros(self.horizon, self.act_low.numel(), device=self.act_low.device)

    def shift(self, prev: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        return torch.cat([prev[1:], torch.zeros_like(prev[-1:])])

    def prepare(self, solutions: torch.Tensor) -> torch.Tensor:
        return solutions

    def actions(self, solutions: torch.Tensor, obs: torch.Tensor, t: int, particles: int) -> torch.Tensor:
        n, A = solutions.shape[0], solutions.shape[-1]
        delta = solutions[:, t].unsqueeze(1).expand(n, particles, A).reshape(n * particles, A)
        return torch.clamp(self._to_env(self.policy(obs)) + delta, self.act_low, self.act_high)

    def first_action(self, solution: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self._to_env(self.policy(obs.unsqueeze(0)))[0] + solution[0], self.act_low, self.act_high)


class PolicyParamNoise(_PolicyProposal):
    """POPLIN-P: omega [D] within +-``noise_bound``, added to the policy's flat parameters theta."""

    def __init__(self, policy: BCPolicy, act_low: torch.Tensor, act_high: torch.Tensor, noise_bound: float = 1.0):
        super().__init__(policy, act_low, act_high)
        dim = policy.flat_parameters().numel()
        self.upper = torch.full((dim,), float(noise_bound), device=act_low.device)
        self.lower = -self.upper

    def initial(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(self.upper)

    def shift(self, prev: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        return prev.clone()

    def prepare(self, solutions: torch.Tensor) -> torch.Tensor:
        return self.policy.flat_parameters().unsqueeze(0) + solutions  # theta + omega_i: [N, D]

    def actions(self, params: torch.Tensor, obs: torch.Tensor, t: int, particles: int) -> torch.Tensor:
        n = params.shape[0]
        u = self.policy.functional(params, obs.view(n, particles, -1))
        return self._to_env(u).reshape(n * particles, -1)

    def first_action(self, solution: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        params = self.prepare(solution.unsqueeze(0))
        return self._to_env(self.policy.functional(params, obs.view(1, 1, -1)))[0, 0]
