"""Model-predictive control through a learned model (003 "MPC with Neural Network Model", PETS Algorithm 1).

At every real step the controller optimises a solution (by default an action sequence a_{t:t+H}) for

    J = 1/P sum_p sum_{tau=0}^{H-1} gamma^tau r(s^p_tau, a_tau),   s^p_{tau+1} ~ f(s^p_tau, a_tau)   (A1, A5)

with P particles per candidate propagated through the model env (TS1 / TS-inf / expectation / random), all
candidates x particles as one batch per horizon step. A terminated particle stops earning (the model env
zeroes its later rewards); a candidate whose mean return is not finite ranks worst. Only the first action
is executed; the next step re-plans from the real state, warm-started from the previous solution shifted
one step (PETS). ``reset()`` at every episode start clears the warm start.

What a "solution" is comes from a *proposal*: :class:`OpenLoopActions` (PETS: the actions themselves), or
POPLIN's policy-guided proposals in :mod:`dynarl.planning.poplin` (noise in action or parameter space).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dynarl.config import one_of, param, positive, unit_interval_open_closed
from dynarl.models.model_env import PROPAGATIONS, ModelEnv
from dynarl.planning.optimizers import OptimizerConfig, make_optimizer


@dataclass
class PlannerConfig(OptimizerConfig):
    horizon: int = param(25, positive, "planning horizon H (PETS: 25 on cart-pole; mbrl-lib: 15)")
    particles: int = param(20, positive, "particles P per candidate (PETS: 20)")
    propagation: str = param("ts1", one_of(*PROPAGATIONS), "ts1 (mbrl-lib), ts_inf (PETS paper), expectation, random")
    gamma: float = param(1.0, unit_interval_open_closed, "discount inside the planning objective (PETS: 1)")
    precision: str = param("bf16", one_of("fp32", "bf16"), "bf16: hidden layers of the model in bfloat16 while planning")
    compile: bool = param(False, help="torch.compile the model network used by the planner (first plan compiles, ~20-40 s on CPU)")

    def check(self) -> str | None:
        # the algorithms hold their planner settings under ``planner``
        return self.size_problem("planner.")


class OpenLoopActions:
    """PETS's proposal: the solution is the action sequence [H, A], within the action bounds."""

    def __init__(self, act_low: torch.Tensor, act_high: torch.Tensor, horizon: int):
        self.horizon = horizon
        self.lower, self.upper = act_low, act_high
        self.centre = ((act_low + act_high) / 2).expand(horizon, -1)

    def initial(self, obs: torch.Tensor) -> torch.Tensor:
        return self.centre.clone()

    def shift(self, prev: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Warm start: drop the executed step, append the centre of the bounds."""
        return torch.cat([prev[1:], self.centre[-1:]])

    def prepare(self, solutions: torch.Tensor) -> torch.Tensor:
        """Per-objective-call work shared by the horizon steps (nothing for open-loop actions)."""
        return solutions

    def actions(self, solutions: torch.Tensor, obs: torch.Tensor, t: int, particles: int) -> torch.Tensor:
        """The action of every row (candidate-major, ``n * P + p``) at horizon step t: [N * P, A]."""
        n = solutions.shape[0]
        a = solutions[:, t]
        return a.unsqueeze(1).expand(n, particles, a.shape[-1]).reshape(n * particles, a.shape[-1])

    def first_action(self, solution: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        return solution[0]


class MPCController:
    """Receding-horizon planning: ``act(obs)`` plans through ``model_env`` and returns the first action."""

    def __init__(self, model_env: ModelEnv, proposal, cfg: PlannerConfig, generator: torch.Generator):
        self.model_env, self.proposal, self.cfg, self.generator = model_env, proposal, cfg, generator
        self.optimizer = make_optimizer(cfg, proposal.lower, proposal.upper, generator)
        self._prev: torch.Tensor | None = None
        self._start: torch.Tensor | None = None
        self.rows_evaluated = 0  # model rows (candidates x particles x steps), for throughput reports

    def reset(self, seed: int | None = None) -> None:
        """Episode start: forget the warm start (and reseed the planner's generator when given a seed)."""
        self._prev = None
        self.optimizer.reset()
        if seed is not None:
            self.generator.manual_seed(int(seed))

    @torch.no_grad()
    def objective(self, solutions: torch.Tensor) -> torch.Tensor:
        """Mean over P particles of the discounted model return of each candidate: [N]."""
        n, P, cfg = solutions.shape[0], self.cfg.particles, self.cfg
        obs = self.model_env.reset(self._start.expand(n, -1), P)
        total = torch.zeros(n * P, device=obs.device)
        discount = 1.0
        prepared = self.proposal.prepare(solutions)
        for t in range(cfg.horizon):  # a loop over horizon steps only; candidates x particles are one batch
            act = self.proposal.actions(prepared, obs, t, P)
            obs, reward, _, _ = self.model_env.step(act)
            total += discount * reward.float()
            discount *= cfg.gamma
        self.rows_evaluated += n * P * cfg.horizon
        # mean over particles; one NaN/inf particle makes the candidate non-finite, which ranks worst
        return total.view(n, P).mean(1)

    @torch.no_grad()
    def plan(self, obs: torch.Tensor) -> torch.Tensor:
        """Optimise and remember the solution for the real state ``obs`` [obs_dim]."""
        self._start = obs.to(self.model_env.model.device, torch.float32).reshape(1, -1)
        if self._prev is None:
            init = self.proposal.initial(self._start[0])
        else:
            init = self.proposal.shift(self._prev, self._start[0])
            self.optimizer.shift(lambda solution: self.proposal.shift(solution, self._start[0]))  # iCEM's kept elites
        self._prev = self.optimizer.optimize(self.objective, init)
        return self._prev

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        solution = self.plan(obs)
        return self.proposal.first_action(solution, self._start[0])

    def state_dict(self) -> dict:
        return {"prev": None if self._prev is None else self._prev.clone(), "generator": self.generator.get_state(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        prev = state["prev"]
        self._prev = None if prev is None else prev.to(self.model_env.model.device)
        self.generator.set_state(state["generator"])
        self.optimizer.load_state_dict(state["optimizer"])
