"""DQN and Double DQN update rules (seed 001; inventory H5, H6, H8).

DQN (Mnih et al. 2015) regresses Q_phi(s, a) on the target of a slowly moving copy Q_phi':

    y = r + d (1 - terminated) Q_phi'(s', a*),  a* = argmax_a' Q_phi'(s', a')          (DQN: max backup)
                                                 a* = argmax_a' Q_phi(s', a')           (Double DQN)

Double DQN (van Hasselt et al. 2016): the online network *selects* the action and the target network
*evaluates* it. (Seed 001 types Q_phi' inside both argmaxes, inventory appendix A.6; its prose, followed
here, says the current network selects.) ``d`` is ``batch.discount`` when a buffer filled it (gamma^m for
an m-step return, inventory H7) and gamma otherwise. Truncated transitions bootstrap: a time limit is not
a terminal state.

The loss is Huber with delta = 1 (``smooth_l1``, H8 and Mnih 2015) or 1/2 (Q - y)^2; the two agree for
|Q - y| <= 1. Gradients are clipped to a global norm (``max_grad_norm``, 10 as in Stable-Baselines3).
Epsilon-greedy exploration is not here: the algorithm's schedule owns it and calls :meth:`act` for the
greedy action.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from dynarl.config import non_negative, one_of, param, positive, positive_sizes, unit_interval, unit_interval_open_closed
from dynarl.data.batch import Batch
from dynarl.errors import EnvError
from dynarl.learners.base import Learner, LossOptions, adam, soft_update, target_copy
from dynarl.nn.q_networks import QNetwork


@dataclass
class DQNLearnerConfig(LossOptions):
    """DQN hyper-parameters; defaults are Stable-Baselines3's (RL Zoo tunes CartPole-v1 to lr 2.3e-3).

    ``target_update_interval`` counts *learner updates* (gradient steps). Stable-Baselines3 counts env
    steps (10_000 by default with ``train_freq=4``, one gradient step each: 2_500 updates); the algorithm
    that owns the env clock converts its env-step interval into updates before building this config.
    """

    gamma: float = param(0.99, unit_interval_open_closed, "discount (a batch's own ``discount`` overrides it per row)")
    lr: float = param(1e-4, positive, "Adam learning rate (SB3 default; RL Zoo uses 2.3e-3 on CartPole-v1)")
    hidden_sizes: tuple[int, ...] = param((64, 64), positive_sizes, "hidden layer widths of the Q network")
    loss: str = param("huber", one_of("huber", "mse"), "huber: smooth L1 with delta 1 (Mnih 2015); mse: 1/2 (Q - y)^2")
    double_q: bool = param(False, help="Double DQN: the online network selects argmax_a Q(s', a), the target network evaluates it")
    dueling: bool = param(False, help="dueling head Q = V + A - mean_a A (Wang et al. 2016)")
    target_update: str = param("hard", one_of("hard", "polyak"), "hard: copy phi -> phi' every target_update_interval updates; polyak: lerp every update")
    target_update_interval: int = param(2500, positive, "learner updates between hard target copies (SB3's 10_000 env steps / train_freq 4)")
    tau: float = param(0.005, unit_interval, "Polyak rate: phi' <- (1 - tau) phi' + tau phi after every update (DDPG's convention, Lillicrap et al. 2016)")
    max_grad_norm: float = param(10.0, non_negative, "clip the gradient's global norm to this (0: no clipping)")


def _check_spaces(obs_space, action_space) -> None:
    from gymnasium import spaces

    if not isinstance(action_space, spaces.Discrete):
        raise EnvError(f"DQN needs a Discrete action space; this env has {action_space}: use SAC, TD3 or DDPG for continuous actions")
    if not isinstance(obs_space, (spaces.Box, spaces.Discrete)):
        raise EnvError(f"DQN needs a Box or Discrete observation space; this env has {obs_space}: wrap it in gymnasium.wrappers.FlattenObservation")


class DQNLearner(Learner):
    """Q-learning with a target network, optionally Double DQN and a dueling head.

    ``act`` and ``q_values`` work on indices 0..n-1 of the Discrete action space (``batch.act`` holds the
    same indices, float or long, shape [B] or [B, 1]); an action space with ``start != 0`` is shifted by
    the caller. ``last_td_error`` holds the detached per-row Q(s, a) - y of the latest update, for a
    prioritised buffer.
    """

    name = "dqn"
    per_seed = ("q_loss", "act")

    def __init__(self, cfg: DQNLearnerConfig, obs_space, action_space, device: torch.device):
        super().__init__(device)
        _check_spaces(obs_space, action_space)
        from gymnasium import spaces

        self.cfg = cfg
        self.n_actions = int(action_space.n)
        if isinstance(obs_space, spaces.Discrete):
            net_kwargs = dict(obs_shape=(), n_obs_categories=int(obs_space.n))
            self._obs_start = int(obs_space.start)
        else:
            net_kwargs = dict(obs_shape=tuple(obs_space.shape), scale_uint8=obs_space.dtype == "uint8")
            self._obs_start = 0
        self.q = QNetwork(n_actions=self.n_actions, hidden_sizes=cfg.hidden_sizes, dueling=cfg.dueling, **net_kwargs).to(device)
        self.q_target = target_copy(self.q)
        self.modules = {"q": self.q, "q_target": self.q_target}
        self.optimizers = {"q": adam(self.q.parameters(), cfg.lr)}
        self.last_td_error: torch.Tensor | None = None
        self._wrap_losses("q_loss")
        _, self._round_values = self._as_configured(self.next_value)  # a whole round's V'(s') (with_next_values), run as the loss runs

    def _obs(self, obs: torch.Tensor) -> torch.Tensor:
        # Discrete observation spaces may start at a value other than 0; the network one-hots indices
        return obs - self._obs_start if self._obs_start else obs

    @torch.no_grad()
    def q_values(self, obs: torch.Tensor) -> torch.Tensor:
        """Q_phi(s, .) [B, n_actions] (no gradient)."""
        return self.q(self._obs(obs))

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Greedy action indices argmax_a Q_phi(s, a), long [B]; exploration belongs to the algorithm."""
        return self.q(self._obs(obs)).argmax(1)  # q_values' pass, without a second no_grad scope (every env step acts)

    @torch.no_grad()
    def next_value(self, next_obs: torch.Tensor) -> torch.Tensor:
        """V'(s') = Q_phi'(s', a*), with a* chosen by Q_phi' (DQN) or Q_phi (Double DQN)."""
        next_obs = self._obs(next_obs)
        q_next = self.q_target(next_obs)
        if self.cfg.double_q:
            best = self.q(next_obs).argmax(1, keepdim=True)
            return q_next.gather(1, best).squeeze(1)
        return q_next.max(1).values

    def td_target(self, batch: Batch) -> torch.Tensor:
        """y = r + d (1 - terminated) V'(s'), with V'(s') from the batch where it was computed ahead (no gradient
        either way: :meth:`next_value` takes none)."""
        v_next = self.next_value(batch.next_obs) if batch.next_value is None else batch.next_value
        discount = self.cfg.gamma if batch.discount is None else batch.discount.reshape(-1)
        return batch.reward.reshape(-1) + discount * (1.0 - batch.terminated.reshape(-1)) * v_next

    def with_next_values(self, batch: Batch, updates: int) -> Batch:
        """``batch``, the rows of the next ``updates`` updates in order, with ``next_value`` filled in one pass where
        none of those updates moves V'(s'): DQN's max backup over a hard-copied target network whose next copy
        comes after the last of them at the earliest (Double DQN's online argmax moves with every update, a Polyak
        target too). One large matmul per layer values a whole round (CartPole's preset: 128 x 64 rows between
        copies, as RL Zoo's) instead of one small one per update; unchanged otherwise, and for a single update, whose
        own pass is the same pass (compiled, inside its gradient's graph)."""
        cfg = self.cfg
        if updates < 2 or cfg.double_q or cfg.target_update != "hard" or self.num_updates % cfg.target_update_interval + updates > cfg.target_update_interval:
            return batch
        return batch.replace(next_value=self._round_values(batch.next_obs))

    def q_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """(loss, metrics, Q(s, a) - y): the per-row Huber or squared error, weighted by ``batch.weights``, averaged;
        the mean Q(s, a) and mean |Q(s, a) - y| as metrics (here, so that a compiled update computes them in its graph)."""
        act = batch.act.reshape(-1, 1).long()
        q_sa = self.q(self._obs(batch.obs)).gather(1, act).squeeze(1)
        y = self.td_target(batch)
        if self.cfg.loss == "huber":
            per_row = F.smooth_l1_loss(q_sa, y, reduction="none", beta=1.0)
        else:
            per_row = 0.5 * (q_sa - y).pow(2)
        if batch.weights is not None:
            per_row = per_row * batch.weights.reshape(-1)
        td = (q_sa - y).detach()
        return per_row.mean(), {"q": q_sa.detach().mean(-1), "td_abs": td.abs().mean(-1)}, td

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        loss, metrics, td = self._minimise("q", "q_loss", batch, max_grad_norm=self.cfg.max_grad_norm)
        self._watch(loss)
        self.num_updates += 1
        self.update_target()
        self.last_td_error = td
        return {"q_loss": loss.detach(), **metrics}

    def update_target(self) -> None:
        """phi' <- phi every ``target_update_interval`` updates (hard), or phi' <- (1 - tau) phi' + tau phi (polyak)."""
        if self.cfg.target_update == "polyak":
            soft_update(self.q_target, self.q, self.cfg.tau)
        elif self.num_updates % self.cfg.target_update_interval == 0:
            with torch.no_grad():  # entered only when a copy is due (a decorator would enter it on every update)
                torch._foreach_copy_(list(self.q_target.parameters()), list(self.q.parameters()))
