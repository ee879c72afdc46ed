"""Model rollouts: branched rollouts through a model env, written into a buffer of imagined transitions.

    sample N start states uniformly from the start buffer (real data: D_env, or a dataset)
    roll the model k steps from them, actions from the policy (or the stored action at the first step, or
    uniform random); r~ = reward_transform(s, a, r^, s', score)   (identity for MBPO; MOPO's penalty)
    add every step that started from a live state, time-major (so a FIFO drops the oldest steps first)

Branched rollouts are MBPO's (Janner et al. 2019, section 4): short model rollouts started from states of
the real data rather than from the initial state distribution.
"""

from __future__ import annotations

from typing import Callable

import torch

from dynarl.data.replay import ReplayBuffer
from dynarl.models.model_env import ModelEnv

ROLLOUT_ACTIONS = ("policy", "buffer", "random")
# (obs, act, reward, next_obs, score) -> the reward used for learning; score is the model env's per-row score
# (see ModelEnv), or None when it has none
RewardTransform = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


class ModelRollouts:
    """Branched rollouts from ``starts`` (real transitions with ``obs_act(idx)``: a replay buffer or a dataset
    source) through ``model_env``; every random draw from its generator. ``reward_transform`` sees the kept rows."""

    def __init__(self, model_env: ModelEnv, starts: ReplayBuffer, generator: torch.Generator, action_source: str = "policy", reward_transform: RewardTransform | None = None):
        self.model_env, self.starts, self.generator = model_env, starts, generator
        self.action_source = action_source
        self.reward_transform = reward_transform
        self.added = 0

    def _actions(self, policy: Callable[[torch.Tensor], torch.Tensor], first_act: torch.Tensor, act_dim: int):
        steps_taken = 0

        def act(obs: torch.Tensor) -> torch.Tensor:
            nonlocal steps_taken
            steps_taken += 1
            if self.action_source == "random":
                return torch.rand(obs.shape[0], act_dim, generator=self.generator, device=obs.device) * 2 - 1
            if self.action_source == "buffer" and steps_taken == 1:
                return first_act
            return policy(obs)

        return act

    @torch.no_grad()
    def generate(self, n: int, length: int, policy: Callable[[torch.Tensor], torch.Tensor], into: ReplayBuffer) -> dict[str, float]:
        """``n`` rollouts of ``length`` steps added to ``into``; returns the mean (learning) reward and rows added."""
        device = self.starts.device
        idx = torch.randint(0, len(self.starts), (n,), generator=self.generator, device=device)
        start, first_act = self.starts.obs_act(idx)
        out = self.model_env.rollout(start, policy=self._actions(policy, first_act, first_act.shape[-1]), rollout_length=length)
        alive = out["alive"][:, 0].reshape(-1)  # [N * k]: steps that started from a live state
        n_k = alive.shape[0]
        rows = {
            "obs": out["obs"][:, 0, :-1].reshape(n_k, -1),
            "act": out["act"][:, 0].reshape(n_k, -1),
            "reward": out["reward"][:, 0].reshape(n_k),
            "next_obs": out["obs"][:, 0, 1:].reshape(n_k, -1),
            "terminated": out["terminated"][:, 0].reshape(n_k).float(),
            "truncated": torch.zeros(n_k, device=device),
        }
        if "score" in out:
            rows["score"] = out["score"][:, 0].reshape(n_k)
        # time-major order, so the FIFO drops the oldest steps first; steps after a termination are dropped
        order = torch.arange(n_k, device=device).view(n, length).t().reshape(-1)
        keep = order[alive[order]]
        rows = {k: v[keep] for k, v in rows.items()}
        score = rows.pop("score", None)
        if self.reward_transform is not None:
            rows["reward"] = self.reward_transform(rows["obs"], rows["act"], rows["reward"], rows["next_obs"], score)
        into.add_batch(rows)
        self.added += int(keep.numel())
        return {"model_rollout_reward": float(rows["reward"].mean()), "rollout_rows": int(keep.numel())}
