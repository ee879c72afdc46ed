"""Tabular Q-learning and Dyna-Q's deterministic learned model (seeds 000, 001, 003; inventory B1, H3).

:class:`TabularQLearner` is Watkins' one-step Q-learning on a table (001's online Q-learning, 003's Dyna-Q
update)::

    Q(S, A) <- Q(S, A) + alpha [R + gamma (1 - terminated) max_a Q(S', a) - Q(S, A)]

with alpha the step size (000 writes gamma there: a seed typo, Appendix A item 1). :class:`TabularModel` is
Dyna-Q's ``Model(S, A) <- R, S'`` (Sutton & Barto Figure 8.1): it assumes a deterministic environment, keeps
the last outcome of every observed pair and replays observed pairs for planning. Dyna-Q itself (real step,
model update, n planning updates) is a loop over these two in ``dynarl.algos``.

Both tables live on the CPU whatever the device: an update is a short sequential Python loop over rows
(each row must see the previous rows' changes), which runs on a NumPy view of the table and would only
pay a host<->device copy per element on an accelerator.

Batches carry state and action indices as numbers of any dtype, shaped ``[B]`` or ``[B, 1]`` (what a replay
buffer with ``obs_dim = act_dim = 1`` stores); :meth:`TabularModel.sample` returns that layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from gymnasium import spaces
from torch import nn

from dynarl.config import param, unit_interval, unit_interval_open_closed
from dynarl.data.batch import Batch
from dynarl.errors import EnvError
from dynarl.learners.base import Learner


@dataclass
class QLearningConfig:
    """Hyper-parameters of tabular Q-learning; the defaults are Sutton & Barto's for the Dyna maze (Example 8.1)."""

    alpha: float = param(0.1, unit_interval_open_closed, "step size alpha of Q(S,A) <- Q(S,A) + alpha [target - Q(S,A)]")
    gamma: float = param(0.95, unit_interval, "discount")
    init: float = param(0.0, help="initial Q(s, a) of every pair (> 0: optimistic initial values)")


def _require_discrete(space, what: str, env_name: str | None, instead: str) -> spaces.Discrete:
    if not isinstance(space, spaces.Discrete):
        env = f"{env_name} has" if env_name else "got"
        raise EnvError(f"tabular Q-learning needs Discrete {what}; {env} {space}: {instead}")
    return space


def _indices(x: torch.Tensor, start: int) -> list[int]:
    """Row indices of a [B] or [B, 1] tensor of integer-valued numbers, as Python ints (one host copy)."""
    return [int(v) - start for v in x.reshape(-1).tolist()]


class QTable(nn.Module):
    """Q(s, a) as a float64 buffer [n_states, n_actions], so it checkpoints with ``state_dict`` and has no gradient."""

    def __init__(self, n_states: int, n_actions: int, init: float = 0.0):
        super().__init__()
        self.register_buffer("table", torch.full((n_states, n_actions), float(init), dtype=torch.float64))


class TabularQLearner(Learner):
    """One-step Q-learning on a table (see the module docstring); ``act`` is greedy with random tie-breaking.

    ``update`` applies the rows of a batch in order, so a later row sees the earlier rows' updates (a batch
    of one row is online Q-learning; Dyna-Q's n planning updates are one batch of n rows). Truncated rows
    bootstrap: a time limit is not a terminal state. Optional batch fields: ``discount`` replaces gamma per
    row (n-step returns), ``weights`` scale the step size per row, ``intrinsic_reward`` is added to the reward.
    Exploration (epsilon-greedy) is the algorithm's job.
    """

    name = "q_learning"

    def __init__(self, cfg: QLearningConfig, obs_space: spaces.Space, action_space: spaces.Space, device: torch.device, *, env_name: str | None = None):
        super().__init__(device)
        self.cfg = cfg
        obs_space = _require_discrete(obs_space, "observations", env_name, "use DQN, SAC or PPO for vector observations, or discretise the observation (gymnasium.wrappers.DiscretizeObservation)")
        action_space = _require_discrete(action_space, "actions", env_name, "use SAC, TD3 or DDPG for continuous actions, or discretise the action (gymnasium.wrappers.DiscretizeAction)")
        self.n_states, self.n_actions = int(obs_space.n), int(action_space.n)
        self._obs_start, self._act_start = int(obs_space.start), int(action_space.start)
        self.q = QTable(self.n_states, self.n_actions, cfg.init)
        self.modules = {"q": self.q}

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Q(S,A) <- Q(S,A) + alpha w [R + discount (1 - terminated) max_a Q(S',a) - Q(S,A)] for each row in order."""
        q = self.q.table.numpy()  # a view: the writes below are the table's
        s, a, s_next = _indices(batch.obs, self._obs_start), _indices(batch.act, self._act_start), _indices(batch.next_obs, self._obs_start)
        reward = batch.reward.reshape(-1).tolist()
        if batch.intrinsic_reward is not None:
            reward = [r + b for r, b in zip(reward, batch.intrinsic_reward.reshape(-1).tolist())]
        # bootstrap weight gamma (1 - terminated); truncation does not stop bootstrapping
        discount = batch.discount.reshape(-1).tolist() if batch.discount is not None else [self.cfg.gamma] * len(s)
        bootstrap = [d * (1.0 - t) for d, t in zip(discount, batch.terminated.reshape(-1).tolist())]
        step = [self.cfg.alpha] * len(s) if batch.weights is None else [self.cfg.alpha * w for w in batch.weights.reshape(-1).tolist()]
        abs_td = q_sum = 0.0
        for i in range(len(s)):
            q_sa = float(q[s[i], a[i]])
            # max over a row of a few actions: Python's max on a list beats a NumPy reduction call here
            target = reward[i] + (bootstrap[i] * max(q[s_next[i]].tolist()) if bootstrap[i] else 0.0)
            delta = target - q_sa
            q[s[i], a[i]] = q_sa + step[i] * delta
            abs_td += abs(delta)
            q_sum += q_sa
        self.num_updates += 1
        n = max(len(s), 1)
        return {"td_error": torch.tensor(abs_td / n), "q": torch.tensor(q_sum / n)}

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """argmax_a Q(s, a) for each state of ``obs`` ([B] or [B, 1]) as int64 [B].

        Ties are broken uniformly at random with torch's global RNG, as in Sutton & Barto's Example 8.1: with
        all-zero Q at the start a fixed tie-break would repeat one action (e.g. into the top edge) until an
        exploratory step moves the agent. ``deterministic`` takes the lowest maximal action and draws nothing.
        """
        s = obs.reshape(-1).to("cpu", torch.long) - self._obs_start
        q = self.q.table[s]
        best = q == q.max(1, keepdim=True).values
        if deterministic:
            a = best.to(torch.uint8).argmax(1)  # argmax returns the first maximal index
        else:
            a = torch.where(best, torch.rand(q.shape, dtype=torch.float64), -1.0).argmax(1)
        return (a + self._act_start).to(obs.device)

    def all_finite(self) -> bool:
        return super().all_finite() and bool(torch.isfinite(self.q.table).all())


class TabularModel(nn.Module):
    """Dyna-Q's deterministic model: ``Model(S, A) <- R, S'`` for the last observed outcome of each pair.

    ``sample(n)`` draws n previously observed (S, A) pairs uniformly at random (torch's global RNG) and
    returns their modelled transitions as a :class:`Batch`. Note the book's planning step draws a previously
    observed state and then an action previously taken in it; uniform over pairs (as here) weights a state by
    how many of its actions were tried, and is the common simplification (Figure 8.2 does not depend on it).
    All state is in buffers, so ``state_dict``/``load_state_dict`` checkpoint it exactly.
    """

    def __init__(self, n_states: int, n_actions: int):
        super().__init__()
        self.n_states, self.n_actions = int(n_states), int(n_actions)
        shape = (self.n_states, self.n_actions)
        self.register_buffer("next_state", torch.zeros(shape, dtype=torch.long))
        self.register_buffer("reward", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("terminated", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("observed", torch.zeros(shape, dtype=torch.bool))
        # flat indices s * n_actions + a in order of first observation; the first num_pairs entries are in use
        self.register_buffer("pairs", torch.zeros(self.n_states * self.n_actions, dtype=torch.long))
        self.register_buffer("num_pairs", torch.zeros((), dtype=torch.long))

    def update(self, s: int, a: int, r: float, s_next: int, terminated: bool) -> None:
        """Model(S, A) <- R, S' (and whether S' ended the episode): the latest outcome replaces the earlier one."""
        s, a = int(s), int(a)
        if not self.observed[s, a]:
            self.observed[s, a] = True
            self.pairs[self.num_pairs] = s * self.n_actions + a
            self.num_pairs += 1
        self.next_state[s, a] = int(s_next)
        self.reward[s, a] = float(r)
        self.terminated[s, a] = float(terminated)

    def sample(self, n: int) -> Batch:
        """n modelled transitions of uniformly drawn observed pairs: obs, act, next_obs float32 [n, 1], the rest [n]."""
        k = int(self.num_pairs)
        if k == 0:
            raise RuntimeError("TabularModel.sample: no (state, action) pair observed yet; call update with a real transition first")
        flat = self.pairs[torch.randint(k, (n,))]
        s, a = flat // self.n_actions, flat % self.n_actions
        f32 = torch.float32
        return Batch(
            obs=s.to(f32).unsqueeze(1),
            act=a.to(f32).unsqueeze(1),
            reward=self.reward[s, a].to(f32),
            next_obs=self.next_state[s, a].to(f32).unsqueeze(1),
            terminated=self.terminated[s, a].to(f32),
            truncated=torch.zeros(n, dtype=f32),  # the model has no time limit
        )

    @property
    def num_observed(self) -> int:
        """The number of distinct observed (S, A) pairs."""
        return int(self.num_pairs)
