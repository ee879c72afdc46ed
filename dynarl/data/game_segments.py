"""Replay of self-play games for MuZero: positions sampled with their K-step unroll targets.

Every env step of every sub-env is one row: (o_t, a_t, u_{t+1}, nu_t, pi_t, done_t) with nu_t the root's
search value and pi_t the root's visit distribution; ``done_t`` says whether the episode ended after a_t
(1 terminated, 2 truncated) and for those rows the final observation and its predicted value are kept. The
sub-envs step in lock-step, so the rows sit in one ring per sub-env and an episode's steps are consecutive.

Sampling a position t gives the targets of the unroll k = 0..K (Schrittwieser et al. 2020, eq. 1 and
appendix G):

    policy  pi_{t+k}                                              (masked past the episode's end)
    value   z_{t+k} = sum_{j<m} gamma^j u_{t+k+j+1} + gamma^n nu_{t+k+n}     m = n inside the episode
    reward  u_{t+k}   (k >= 1, the reward of a_{t+k-1})

n-step value targets stop at the episode's end: after a termination nothing is added (m < n rewards); after
a truncation (a time limit, not a terminal state) the value of the final observation is bootstrapped with
gamma^m. Past a termination the targets are the paper's absorbing state: value 0, reward 0, no policy loss,
and the unroll continues with uniformly random actions. Past a truncation the game's continuation is
unknown, so those value and reward targets are masked out instead of being set to 0.

Two-player games (``two_player=True``, zero-sum, alternating moves): u_{t+1} is the reward of the player who
played a_t and nu_t the value for the player to move at t, so the targets are for the player to move at t+k
(the MuZero pseudocode's ``to_play`` sign): a reward earned j plies later counts (-1)^j, as does the bootstrap
n (or m) plies later,

    z_{t+k} = sum_{j<m} (-gamma)^j u_{t+k+j+1} + (-gamma)^n nu_{t+k+n}

(the sign is folded into ``bootstrap_discount``, so reanalysed values are signed the same way). Reward targets
stay the mover's rewards, as the search's two-player backup reads them.

A position is sampled only once the rows its targets need (K + n after it) have been played or its episode
has ended, so a target never reads a step that has not happened yet. ``value_prefix``, ``bootstrap_discount``
and ``bootstrap_obs`` are returned apart so that an algorithm can recompute the bootstrap values with a
newer network (reanalysis) without re-reading the buffer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from dynarl.errors import ConfigError

RUNNING, TERMINATED, TRUNCATED = 0, 1, 2


@dataclass
class SegmentBatch:
    """B positions with their unroll targets; K unroll steps, A actions."""

    obs: torch.Tensor  # [B, *obs] o_t
    actions: torch.Tensor  # [B, K] long: a_t .. a_{t+K-1} (uniform random past the end)
    target_reward: torch.Tensor  # [B, K] u_{t+1} .. u_{t+K}
    reward_mask: torch.Tensor  # [B, K] 1 where the reward target counts
    value_prefix: torch.Tensor  # [B, K+1] sum_{j<m} gamma^j u_{t+k+j+1}
    bootstrap_discount: torch.Tensor  # [B, K+1] gamma^m where a value is bootstrapped, else 0
    bootstrap_value: torch.Tensor  # [B, K+1] the stored value bootstrapped from (search value, or the final observation's value)
    bootstrap_obs: torch.Tensor  # [B, K+1, *obs] the observation it belongs to (for reanalysis)
    value_mask: torch.Tensor  # [B, K+1]
    target_policy: torch.Tensor  # [B, K+1, A] visit distributions (zero past the end)
    policy_mask: torch.Tensor  # [B, K+1]
    unroll_obs: torch.Tensor | None = None  # [B, K+1, *obs] o_{t+k} when asked for (reanalysis of the policy targets; rows past the end: any)

    @property
    def target_value(self) -> torch.Tensor:
        """z_{t+k} = value_prefix + bootstrap_discount * bootstrap_value, [B, K+1]."""
        return self.value_prefix + self.bootstrap_discount * self.bootstrap_value

    def replace(self, **changes) -> "SegmentBatch":
        return replace(self, **changes)

    def __len__(self) -> int:
        return int(self.obs.shape[0])


class GameSegmentBuffer:
    """Rings of ``capacity // n_envs`` rows per sub-env; ``sample`` returns :class:`SegmentBatch`."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], n_actions: int, n_envs: int, unroll_steps: int, td_steps: int, gamma: float, device: torch.device | str = "cpu", two_player: bool = False):
        self.two_player = bool(two_player)
        self.rows = int(capacity) // int(n_envs)
        self.n_envs, self.n_actions = int(n_envs), int(n_actions)
        self.K, self.n, self.gamma = int(unroll_steps), int(td_steps), float(gamma)
        if self.rows <= self.K + self.n:
            raise ConfigError(f"buffer_size={capacity} holds {self.rows} steps per env with n_envs={n_envs}; a sample needs unroll_steps + td_steps + 1 = {self.K + self.n + 1}: raise buffer_size")
        self.obs_shape = tuple(obs_shape)
        self.device = torch.device(device)
        shape = (self.n_envs, self.rows)
        z = dict(device=self.device)
        self.obs = torch.zeros(*shape, *self.obs_shape, **z)
        self.action = torch.zeros(shape, dtype=torch.long, **z)
        self.reward = torch.zeros(shape, **z)
        self.root_value = torch.zeros(shape, **z)
        self.policy = torch.zeros(*shape, self.n_actions, **z)
        self.done = torch.zeros(shape, dtype=torch.int8, **z)
        self.end_obs = torch.zeros(*shape, *self.obs_shape, **z)
        self.end_value = torch.zeros(shape, **z)
        self.head = 0  # the next row to write (the sub-envs write in lock-step)
        self.count = 0  # rows written per sub-env, up to ``rows``
        self.episode_rows = torch.zeros(self.n_envs, dtype=torch.long, **z)  # rows of each sub-env's unfinished episode

    def __len__(self) -> int:
        return self.count * self.n_envs

    def add(self, obs, action, reward, root_value, policy, terminated, truncated, end_obs=None, end_value=None) -> None:
        """One row per sub-env: o_t, a_t, u_{t+1}, nu_t, pi_t, and how the step ended; ``end_obs`` / ``end_value``
        (the final observation and its value) are read only where ``truncated``."""
        t = lambda x, dtype=torch.float32: torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=dtype, device=self.device)  # noqa: E731
        h = self.head
        self.obs[:, h] = t(obs).reshape(self.n_envs, *self.obs_shape)
        self.action[:, h] = t(action, torch.long).reshape(-1)
        self.reward[:, h] = t(reward).reshape(-1)
        self.root_value[:, h] = t(root_value).reshape(-1)
        self.policy[:, h] = t(policy).reshape(self.n_envs, self.n_actions)
        term, trunc = t(terminated, torch.bool).reshape(-1), t(truncated, torch.bool).reshape(-1)
        done = torch.where(term, TERMINATED, torch.where(trunc, TRUNCATED, RUNNING)).to(torch.int8)
        self.done[:, h] = done
        self.end_obs[:, h] = t(end_obs).reshape(self.n_envs, *self.obs_shape) if end_obs is not None else 0.0
        self.end_value[:, h] = t(end_value).reshape(-1) if end_value is not None else 0.0
        self.head = (h + 1) % self.rows
        self.count = min(self.count + 1, self.rows)
        self.episode_rows = torch.where(done != RUNNING, 0, self.episode_rows + 1)

    def sampleable(self) -> int:
        """How many positions have all their targets (the last K + n steps of unfinished episodes wait)."""
        return int(self._valid_counts().sum())

    def _valid_counts(self) -> torch.Tensor:
        self.youngest = torch.minimum(self.episode_rows, torch.tensor(self.K + self.n, device=self.device)).clamp(max=self.count)
        return self.count - self.youngest

    def sample(self, batch_size: int, generator: torch.Generator | None = None, unroll_obs: bool = False) -> SegmentBatch:
        """``batch_size`` positions uniformly over the sampleable ones (with replacement), with their targets;
        ``unroll_obs``: also o_{t+k}, k = 0..K (for reanalysing the policy targets)."""
        counts = self._valid_counts()
        total = int(counts.sum())
        if total == 0:
            raise ValueError("no position of the buffer has its K + n following steps yet: play more steps before sampling")
        K, n, g = self.K, self.n, self.gamma
        dev = self.device
        # uniform over (sub-env, age) pairs, age 0 = the newest row, ages below ``youngest`` still wait for their targets
        draw = torch.randint(total, (batch_size,), generator=generator, device=dev)
        cum = counts.cumsum(0)
        env = torch.searchsorted(cum, draw, right=True)
        age = self.youngest[env] + draw - (cum[env] - counts[env])
        start = (self.head - 1 - age) % self.rows
        W = K + n + 1  # rows t .. t + K + n
        offsets = torch.arange(W, device=dev)
        rows = (start[:, None] + offsets) % self.rows  # [B, W]
        envs = env[:, None].expand(-1, W)

        done = self.done[envs, rows].long()  # [B, W]
        ended = done != RUNNING
        BIG = W + 1
        first_end = torch.where(ended, offsets, BIG).min(1).values  # o_end: the window offset of the episode's last row (BIG: none)
        kind = done.gather(1, first_end.clamp(max=W - 1)[:, None]).squeeze(1) * (first_end < BIG)  # RUNNING / TERMINATED / TRUNCATED
        in_episode = offsets[None] <= first_end[:, None]  # [B, W] rows t+o that belong to the episode
        terminated = (kind == TERMINATED)[:, None]

        k = torch.arange(K + 1, device=dev)
        rewards = self.reward[envs, rows] * in_episode  # [B, W]
        # value prefix: sum_{j<n} gamma^j u_{t+k+j+1} over the episode's rows (n small: a loop over j, batched over rows)
        prefix = torch.zeros(batch_size, K + 1, device=dev)
        sg = -g if self.two_player else g  # two players: a reward j plies later belongs to the other side when j is odd
        for j in range(n):
            prefix += sg**j * rewards[:, j : j + K + 1]
        inside = in_episode[:, : K + 1]  # position t+k is in the episode
        boot_inside = (k[None] + n) <= first_end[:, None]  # t+k+n is still in the episode: bootstrap from its search value
        boot_trunc = inside & ~boot_inside & (kind == TRUNCATED)[:, None]  # the episode was cut by a time limit: bootstrap from its final observation
        m = (first_end[:, None] - k[None] + 1).clamp(min=0)  # rewards before the end
        discount = torch.where(boot_inside, g**n, torch.where(boot_trunc, torch.tensor(g, device=dev) ** m.float(), 0.0))
        if self.two_player:  # the bootstrapped value is for the player to move n (or m) plies later: (-1)^n
            discount = discount * torch.where(boot_inside, (-1.0) ** n, 1.0 - 2.0 * (m % 2).float())
        boot_rows = torch.where(boot_inside, rows[:, n : n + K + 1], rows.gather(1, first_end.clamp(max=W - 1)[:, None]).expand(-1, K + 1))
        benv = env[:, None].expand(-1, K + 1)
        boot_value = torch.where(boot_inside, self.root_value[benv, boot_rows], torch.where(boot_trunc, self.end_value[benv, boot_rows], 0.0))
        obs_inside = self.obs[benv, boot_rows]
        obs_end = self.end_obs[benv, boot_rows]
        sel = boot_inside.reshape(*boot_inside.shape, *([1] * len(self.obs_shape)))
        boot_obs = torch.where(sel, obs_inside, obs_end)

        value_mask = (inside | terminated).float()
        prev_inside = in_episode[:, :K]  # a_{t+k-1} was played in the episode (k = 1..K)
        reward_mask = (prev_inside | terminated).float()
        target_reward = rewards[:, :K]
        random_actions = torch.randint(self.n_actions, (batch_size, K), generator=generator, device=dev)
        actions = torch.where(prev_inside, self.action[envs[:, :K], rows[:, :K]], random_actions)
        policy = self.policy[envs[:, : K + 1], rows[:, : K + 1]] * inside[..., None]
        return SegmentBatch(
            obs=self.obs[env, start],
            actions=actions,
            target_reward=target_reward,
            reward_mask=reward_mask,
            value_prefix=prefix * (inside | terminated),
            bootstrap_discount=discount,
            bootstrap_value=boot_value,
            bootstrap_obs=boot_obs,
            value_mask=value_mask,
            target_policy=policy,
            policy_mask=inside.float(),
            unroll_obs=self.obs[envs[:, : K + 1], rows[:, : K + 1]] if unroll_obs else None,
        )

    # --- checkpoint state ---------------------------------------------------------------------------------

    _TENSORS = ("obs", "action", "reward", "root_value", "policy", "done", "end_obs", "end_value", "episode_rows")

    def state_dict(self) -> dict:
        return {**{k: getattr(self, k).clone() for k in self._TENSORS}, "head": self.head, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        for k in self._TENSORS:
            getattr(self, k).copy_(state[k])
        self.head, self.count = int(state["head"]), int(state["count"])
