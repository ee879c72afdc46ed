"""The model environment: batched imagined rollouts through a learned ensemble (PETS, MBPO, SLBO ...).

Rows are particles. A rollout starts from N start states, each copied into P particles (PETS's P; P = 1
for MBPO's branched rollouts), so the batch holds R = N * P rows, ordered ``n * P + p``. Each step is one
batched network call over the elites, whatever the propagation mode:

- ``ts1``: every particle gets a fresh member at every step (000's "each prediction step picks one
  ensemble member"; 003's ``random(f_1, ..., f_M)``; PETS's TS1);
- ``ts_inf``: every particle keeps the member it drew at reset for the whole horizon (001's "sample theta
  once, then roll out"; PETS's TS-infinity);
- ``random``: every *rollout* (all its P particles) keeps one member for the whole horizon;
- ``expectation``: the mean of the elites' predicted means (003's ``1/M sum_j f_j``), deterministic.

Assignment is balanced like PETS's: when P is a multiple of the elite count E, each rollout's particles
are spread evenly over the elites by a random permutation; otherwise the R rows are permuted over E
equal groups. The rows of each member are gathered into one [E, k, dim] block, so the step is a single
batched matmul per layer and no Python loop touches members or particles. Sampled modes draw
``s' ~ N(mu, sigma^2)`` from the chosen member unless ``deterministic=True``.

Rewards and terminations come from the task registry (exact, batched) or from the model's learned heads.
A terminated particle stays terminated: its state is frozen and its later rewards are zero (000: sample
"until a terminal state"). Every random draw uses the env's seeded ``torch.Generator``.

``score``: a function of every ensemble member's prediction for the same rows ([members, R, ...], the
output of ``model.predict(obs, act)``) to one value per row, such as MOPO's uncertainty. With it, each
sampled step runs every member once on every row still running, takes each row's chosen elite's output from that pass
(the same member choice and draws as without it) and reports ``score`` per row; a caller that needs both
the rollout and such a score then pays for one ensemble pass per step, not two.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from dynarl.errors import ConfigError
from dynarl.models.dynamics import DynamicsModel

PROPAGATIONS = ("ts1", "ts_inf", "expectation", "random")
Score = Callable[[dict[str, torch.Tensor]], torch.Tensor]  # every member's prediction for R rows -> [R]


class ModelEnv:
    def __init__(
        self,
        model: DynamicsModel,
        task=None,
        *,
        reward_fn: Callable | None = None,
        termination_fn: Callable | None = None,
        propagation: str = "ts1",
        deterministic: bool = False,
        generator: torch.Generator | None = None,
        seed: int = 0,
        score: Score | None = None,
    ):
        if propagation not in PROPAGATIONS:
            raise ConfigError(f"propagation={propagation!r} is invalid: must be one of {', '.join(map(repr, PROPAGATIONS))}")
        if isinstance(task, str):
            from dynarl.envs import get_task

            env_id, task = task, get_task(task)
            if task is None and reward_fn is None and not model.cfg.learn_reward:
                raise ConfigError(
                    f"dynarl has no reward function for {env_id!r} and the model does not learn one; "
                    "pass reward_fn=..., or build the model with learn_reward=True"
                )
        self.model = model
        self.reward_fn = reward_fn or (task.reward_fn if task is not None else None)
        self.termination_fn = termination_fn or (task.termination_fn if task is not None else None)
        if self.reward_fn is None and not model.cfg.learn_reward:
            raise ConfigError("the model env needs a reward: pass task=<env id>, reward_fn=..., or use a model with learn_reward=True")
        if score is not None and propagation == "expectation":
            raise ConfigError("score needs a sampled propagation (ts1, ts_inf or random): under expectation no member predicts a row alone")
        self.propagation = propagation
        self.deterministic = deterministic
        self.score = score
        self.generator = generator if generator is not None else torch.Generator(device=model.device).manual_seed(seed)
        self.obs: torch.Tensor | None = None
        self.done: torch.Tensor | None = None

    # ------------------------------------------------------------------------------------------ members

    def _draw_slots(self) -> None:
        """Choose which elite predicts each row: ``slot`` places row i at position slot[i] of an [E * k] block."""
        E, N, P, dev, g = self._elites.numel(), self._n, self._p, self.model.device, self.generator
        if self.propagation == "random":
            kn = math.ceil(N / E)
            rollout_slot = torch.randperm(E * kn, generator=g, device=dev)[:N]
            self._k = kn * P
            self._slot = (rollout_slot.unsqueeze(1) * P + torch.arange(P, device=dev)).reshape(-1)
        elif P % E == 0:
            # PETS: each rollout's P particles split evenly over the E elites, in a random order
            per = P // E
            tau = torch.rand((N, P), generator=g, device=dev).argsort(dim=1)
            self._k = N * per
            self._slot = ((tau // per) * self._k + torch.arange(N, device=dev).unsqueeze(1) * per + tau % per).reshape(-1)
        else:
            R = N * P
            self._k = math.ceil(R / E)
            self._slot = torch.randperm(E * self._k, generator=g, device=dev)[:R]

    @property
    def member(self) -> torch.Tensor:
        """The ensemble index predicting each row at the next step ([R]; -1 under ``expectation``)."""
        if self.propagation == "expectation":
            return torch.full((self._n * self._p,), -1, dtype=torch.long, device=self.model.device)
        return self._elites[self._slot // self._k]

    def _grouped(self, x: torch.Tensor) -> torch.Tensor:
        E = self._elites.numel()
        block = x.new_zeros((E * self._k, x.shape[-1]))
        block[self._slot] = x
        return block.view(E, self._k, x.shape[-1])

    def _ungrouped(self, y: torch.Tensor) -> torch.Tensor:
        return y.reshape(-1, *y.shape[2:])[self._slot]

    def _member_predictions(self, obs: torch.Tensor, act: torch.Tensor, member: torch.Tensor) -> tuple[dict, torch.Tensor | None]:
        """Each row's prediction by its own member, and the rows' ``score`` (None without one): with a score,
        from one pass of every member over every live row (terminated rows get zeros: :meth:`step` keeps their
        state); else from one pass of each elite over its own rows."""
        if self.score is None:
            pred = self.model.predict(self._grouped(obs), self._grouped(act), self._elites)
            return {k: self._ungrouped(v) for k, v in pred.items()}, None
        live = (~self.done).nonzero().squeeze(1)  # a terminated row keeps its state: no member predicts it
        every = self.model.predict(obs[live], act[live])  # [members, live rows, ...]
        own = (member[live], torch.arange(live.numel(), device=obs.device))  # each live row's own member

        def to_rows(v: torch.Tensor) -> torch.Tensor:  # live rows' values into all R rows (zeros elsewhere)
            return v.new_zeros((obs.shape[0], *v.shape[1:])).index_copy_(0, live, v)

        return {k: to_rows(v[own]) for k, v in every.items()}, to_rows(self.score(every))

    # ------------------------------------------------------------------------------------------ env API

    def reset(self, start_obs: torch.Tensor, particles: int = 1) -> torch.Tensor:
        """Start N rollouts of P particles each from ``start_obs`` [N, obs]; returns the rows [N * P, obs]."""
        if particles < 1:
            raise ConfigError(f"particles={particles} is invalid: must be >= 1")
        self._n, self._p = start_obs.shape[0], particles
        self._elites = self.model.elite_idx
        self.obs = start_obs.to(self.model.device, torch.float32).repeat_interleave(particles, dim=0)
        self.done = torch.zeros(self.obs.shape[0], dtype=torch.bool, device=self.obs.device)
        if self.propagation != "expectation":
            self._draw_slots()
        return self.obs

    @torch.no_grad()
    def step(self, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """Advance every row one step with actions [R, act]: ``(next_obs, reward, terminated, info)``; ``info``
        holds each row's ``member``, whether it was ``alive`` before the step and, with ``score``, its ``score``."""
        if self.obs is None:
            raise RuntimeError("call reset(start_obs) before step()")
        obs, act = self.obs, act.to(self.obs)
        if self.propagation == "ts1":
            self._draw_slots()
        member = self.member
        info = {"member": member, "alive": ~self.done}
        if self.propagation == "expectation":
            pred = self.model.predict(obs, act, self._elites)
            next_obs = pred["next_obs_mean"].mean(0)
            reward = pred["reward_mean"].mean(0) if "reward_mean" in pred else None
            term_prob = pred["termination_prob"].mean(0) if "termination_prob" in pred else None
        else:
            pred, score = self._member_predictions(obs, act, member)
            if score is not None:
                info["score"] = score
            next_obs, var = pred["next_obs_mean"], pred["next_obs_var"]
            reward = pred.get("reward_mean")
            if not self.deterministic and self.model.probabilistic:
                next_obs = next_obs + var.sqrt() * torch.randn(next_obs.shape, generator=self.generator, device=obs.device)
                if reward is not None:
                    reward = reward + pred["reward_var"].sqrt() * torch.randn(reward.shape, generator=self.generator, device=obs.device)
            term_prob = pred.get("termination_prob")

        if self.reward_fn is not None:
            reward = self.reward_fn(obs, act, next_obs)
        if self.termination_fn is not None:
            terminated = self.termination_fn(obs, act, next_obs)
        elif term_prob is not None:
            terminated = term_prob > 0.5
        else:
            terminated = torch.zeros_like(self.done)

        # a terminated particle stays where it ended, earns nothing more and stays terminated
        was_done = self.done
        next_obs = torch.where(was_done.unsqueeze(-1), obs, next_obs)
        reward = torch.where(was_done, torch.zeros_like(reward), reward)
        self.done = was_done | terminated
        self.obs = next_obs
        return next_obs, reward, self.done, info

    @torch.no_grad()
    def rollout(
        self,
        start_obs: torch.Tensor,
        actions: torch.Tensor | None = None,
        policy: Callable[[torch.Tensor], torch.Tensor] | None = None,
        rollout_length: int | None = None,
        particles: int = 1,
    ) -> dict[str, torch.Tensor]:
        """Roll N start states forward ``rollout_length`` steps with P particles each.

        Driven by ``actions`` [N, H, act] (one sequence per rollout, shared by its particles; PETS/CEM) or
        [N, P, H, act], or by ``policy(obs [R, obs]) -> act [R, act]`` (MBPO/SLBO). Returns tensors shaped
        [N, P, H(+1), ...]: ``obs`` (H+1 states), ``act``, ``reward``, ``terminated``, ``alive`` (the step
        started from a live state; use it to drop post-termination transitions), ``member``, ``score`` (with
        ``score``), and ``return`` [N, P] (undiscounted sum of rewards).
        """
        if (actions is None) == (policy is None):
            raise ValueError("pass exactly one of actions=[N, H, act] or policy=callable")
        if rollout_length is None:
            if actions is None:
                raise ValueError("rollout_length is needed with a policy")
            rollout_length = actions.shape[-2]
        N, P = start_obs.shape[0], particles
        obs = self.reset(start_obs, particles)
        if actions is not None:
            actions = actions.to(obs)
            if actions.dim() == 3:
                actions = actions.unsqueeze(1).expand(N, P, *actions.shape[1:])
            actions = actions.reshape(N * P, actions.shape[-2], actions.shape[-1])
        traj = {"obs": [obs]}
        for t in range(rollout_length):  # a loop over time steps only
            act = actions[:, t] if actions is not None else policy(obs)
            obs, reward, terminated, info = self.step(act)
            for key, value in (("obs", obs), ("act", act), ("reward", reward), ("terminated", terminated), *info.items()):
                traj.setdefault(key, []).append(value)
        out = {k: torch.stack(v, dim=1).reshape(N, P, len(v), *v[0].shape[1:]) for k, v in traj.items()}
        out["return"] = out["reward"].sum(-1)
        return out
