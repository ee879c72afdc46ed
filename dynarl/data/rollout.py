"""On-policy rollout storage and the return / advantage estimators of seed 001 (inventory E2, V1-V4).

A rollout holds T steps of N parallel environments, as [T, N] tensors. Row (t, i) is the transition
``s_t -> s'_t`` of env i, where ``s'_t`` is the *true* next state: the final observation when the episode
ended at t (Gymnasium's ``final_obs``), else ``s_{t+1}``. Episode ends are kept as two flags:

- ``terminated``: a terminal state; nothing follows, so no bootstrap (V(s') = 0);
- ``ended``: terminated *or* truncated (time limit); the next row of env i belongs to another episode,
  so sums over future rewards stop here. A truncated step still bootstraps from ``V(final_obs)``.

``next_value[t, i] = V(s'_t)`` is filled by the collector: ``value[t + 1]`` inside an episode,
``V(final_obs)`` at a truncation, ``V(s_T)`` at the end of the rollout (the rollout cut is itself a
truncation of the sum). With these two fields every estimator below treats all three cuts (termination,
time limit, rollout end) correctly, vectorised over the N envs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class Rollout:
    """T x N on-policy transitions (see the module docstring for the fields' meaning)."""

    obs: torch.Tensor  # [T, N, obs]
    act: torch.Tensor  # [T, N] (discrete) or [T, N, act]
    log_prob: torch.Tensor  # [T, N]  log pi_old(a_t|s_t) when collected
    reward: torch.Tensor  # [T, N]
    terminated: torch.Tensor  # [T, N] float 0/1
    ended: torch.Tensor  # [T, N] float 0/1: terminated or truncated
    value: torch.Tensor  # [T, N]  V(s_t) when collected (0 if the learner has no critic)
    next_value: torch.Tensor  # [T, N]  V(s'_t), the true next state

    @property
    def num_steps(self) -> int:
        return self.reward.shape[0]

    @property
    def num_envs(self) -> int:
        return self.reward.shape[1]

    def flat(self, name: str) -> torch.Tensor:
        """Field ``name`` with the [T, N] leading dims merged into one batch dim."""
        x = getattr(self, name)
        return x.reshape(-1, *x.shape[2:])


class RolloutBuffer:
    """Preallocated [T, N] storage on the compute device, filled one vector-env step at a time."""

    def __init__(self, num_steps: int, num_envs: int, obs_dim: int, act_shape: tuple[int, ...], device: torch.device, discrete: bool):
        self.num_steps, self.num_envs, self.device = num_steps, num_envs, device
        T, N = num_steps, num_envs
        z = lambda *shape, dtype=torch.float32: torch.zeros(T, N, *shape, dtype=dtype, device=device)  # noqa: E731
        self.data = Rollout(
            obs=z(obs_dim),
            act=z(dtype=torch.long) if discrete else z(*act_shape),
            log_prob=z(),
            reward=z(),
            terminated=z(),
            ended=z(),
            value=z(),
            next_value=z(),
        )
        self.t = 0

    def add(self, obs, act, log_prob, value, reward, terminated, ended, final_value) -> None:
        """Store step t; ``final_value`` is V(final_obs) where the episode ended (any value elsewhere)."""
        d, t = self.data, self.t
        d.obs[t], d.act[t], d.log_prob[t], d.value[t] = obs, act, log_prob, value
        d.reward[t], d.terminated[t], d.ended[t] = reward, terminated, ended
        d.next_value[t] = final_value  # overwritten by value[t + 1] below where the episode goes on
        if t > 0:
            prev_ended = d.ended[t - 1]
            d.next_value[t - 1] = torch.where(prev_ended > 0, d.next_value[t - 1], value)
        self.t += 1

    def finish(self, last_value: torch.Tensor) -> Rollout:
        """Close the rollout with V(s_T) of the observation after the last step; returns the data."""
        if self.t != self.num_steps:
            raise RuntimeError(f"rollout has {self.t} of {self.num_steps} steps")
        d = self.data
        d.next_value[-1] = torch.where(d.ended[-1] > 0, d.next_value[-1], last_value)
        self.t = 0
        return d

    def __iter__(self):
        return iter(fields(self.data))


# ------------------------------------------------------------------------------------------ estimators


def discounted_reward_to_go(reward: torch.Tensor, ended: torch.Tensor, gamma: float, tail: torch.Tensor | None = None) -> torch.Tensor:
    """Reward-to-go ``Q^_t = sum_{t'=t}^{T_ep} gamma^(t'-t) r_t'`` (001, causality + discount option 1).

    ``reward``, ``ended``: [T, N]. The sum stops at each episode end. ``tail`` [T, N] is added (times
    gamma) where a sum is cut: at an episode end it should be ``(1 - terminated) V(final_obs)`` and at
    the last row ``V(s_T)`` (bootstrapping with a learned value), or zeros (pure Monte Carlo over what
    was seen).
    """
    cut = ended.clone()
    cut[-1] = 1.0  # the rollout's end also cuts every sum
    tail = torch.zeros_like(reward) if tail is None else tail
    out = torch.empty_like(reward)
    running = torch.zeros_like(reward[0])
    for t in range(reward.shape[0] - 1, -1, -1):
        running = reward[t] + gamma * ((1.0 - cut[t]) * running + cut[t] * tail[t])
        out[t] = running
    return out


def complete_episode_mask(ended: torch.Tensor) -> torch.Tensor:
    """1 where the step's episode ends inside the rollout (its reward-to-go is a full Monte-Carlo sum).

    Steps of an episode still running at the rollout end have a reward-to-go cut short; REINFORCE
    without a learned value cannot bootstrap them, so it leaves them out of the gradient.
    """
    # a step is complete iff some step at or after it (same env) ended: reverse cumulative max
    return ended.flip(0).cummax(0).values.flip(0)


def td_errors(rollout: Rollout, gamma: float) -> torch.Tensor:
    """``delta_t = r_t + gamma (1 - terminated_t) V(s'_t) - V(s_t)`` (001 batch actor-critic step 3)."""
    return rollout.reward + gamma * (1.0 - rollout.terminated) * rollout.next_value - rollout.value


def gae(rollout: Rollout, gamma: float, gae_lambda: float) -> torch.Tensor:
    """GAE(lambda) advantages (001, Schulman et al. 2016), [T, N].

    ``A_t = sum_l (gamma lambda)^l delta_{t+l}``, the sum stopping at episode ends, computed backwards as
    ``A_t = delta_t + gamma lambda (1 - ended_t) A_{t+1}``. lambda = 0 is the one-step advantage
    ``r + gamma V(s') - V(s)``; lambda = 1 is the Monte-Carlo return minus V(s), bootstrapped only where
    the rollout or a time limit cuts the episode (A3C's per-segment return).
    """
    delta = td_errors(rollout, gamma)
    decay = gamma * gae_lambda * (1.0 - rollout.ended)
    adv = torch.empty_like(delta)
    running = torch.zeros_like(delta[0])
    for t in range(delta.shape[0] - 1, -1, -1):
        running = delta[t] + decay[t] * running
        adv[t] = running
    return adv


def n_step_advantage(rollout: Rollout, gamma: float, n: int) -> torch.Tensor:
    """n-step advantage (001 V3): ``sum_{l<n} gamma^l r_{t+l} + gamma^n V(s_{t+n}) - V(s_t)``, [T, N].

    Uses n rewards, t .. t+n-1, then bootstraps from V(s_{t+n}) (the seed's sum "to t+n" counts one
    reward more than the bootstrap it pairs with; this is the standard form). It equals
    ``sum_{l<n} gamma^l delta_{t+l}`` (the V terms telescope), which is how it is computed: n shifted,
    masked adds over the whole [T, N] block. Windows stop early at episode ends and at the rollout end.
    """
    delta = td_errors(rollout, gamma)
    T = delta.shape[0]
    adv = delta.clone()
    alive = torch.ones_like(delta)  # 1 while no episode end lies in [t, t + l - 1]
    for lag in range(1, min(n, T)):
        alive = alive[: T - lag] * (1.0 - rollout.ended[lag - 1 : T - 1])
        adv[: T - lag] += (gamma**lag) * alive * delta[lag:]
    return adv


def normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return (x - x.mean()) / (x.std() + eps)
