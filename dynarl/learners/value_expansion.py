"""Model-based value expansion (Feinberg et al. 2018, "Model-Based Value Estimation for Efficient
Model-Free Reinforcement Learning", MVE): H-step model targets for an off-policy critic.

The path. From a sampled transition ``(s_0, a_0, r_0, s_1)`` (real, or a model row in the Dyna loop) the
model imagines H - 1 more steps from ``s_1 = s^_1`` with the learner's target policy:

    a^_k, b_k = target_policy(s^_k),  (s^_{k+1}, r^_k, terminated_k) = model(s^_k, a^_k),   k = 1 .. H-1

(``a^_0 = a_0``, ``r^_0 = r_0``). ``b_k`` is the target policy's per-step bonus (SAC's ``-alpha log pi``,
which makes every target below the *soft* Q-value; 0 for DDPG/TD3) and ``V'`` is the learner's own
bootstrap :meth:`ActorCriticLearner.next_value`. Every state of the path gets its own (H - k)-step target,
written backwards (MVE section 3.1 and Algorithm 1, ``Q^_t = sum_{k=t}^{H-1} gamma^{k-t} r^_k +
gamma^{H-t} Q'(s^_H, a^_H)``):

    Q^_{H-1} = r^_{H-1} + gamma d_{H-1} V'(s^_H)
    Q^_k     = r^_k + gamma d_k [b_{k+1} + Q^_{k+1}]                        k = H-2 .. 0

``d_k = 1 - terminated_k``: a path that terminates stops earning and stops bootstrapping (no bootstrap
after a predicted terminal), and the states after it are not states of the MDP, so ``m_k`` (1 while no
step before k terminated; ``m_0 = 1``) masks them out of the loss. ``Q^_0`` with H = 1 is the learner's
one-step target exactly.

Two forms (``target=``):

- ``"td_k"`` (MVE's Algorithm 1, the "TD-k trick", the default): the critic is trained on every state of
  the path, each with its own target, averaged over the H states as the paper averages:

      J_Q = 1/H sum_{k=0}^{H-1} E[ 1/2 m_k (Q(s^_k, a^_k) - Q^_k)^2 ]   (summed over the learner's critics)

  The states after a termination contribute zero (the expectation over the path counts them as absorbing,
  with nothing left to fit). The paper reports that without it (Q trained only at ``s_0``, while its
  targets bootstrap from the imagined states' distribution) MVE does worse. The authors' code (vlad17/mve,
  ``cmpc/ddpg/ddpg.py``) sums the H terms instead of averaging them (a constant factor, which Adam
  removes) and imagines with the target actor as here; its ``model_horizon`` counts the imagined steps
  after ``s_1``, so it is H - 1 here (H counts the real step: H = 1 is one-step TD).
- ``"real_state"`` (seed 003's form): only ``Q^_0`` replaces the one-step target and the critic is
  trained at ``s_0`` alone, with the learner's own loss.

The actor is trained as the learner trains it, on the sampled states ``s_0`` only (MVE's actor update is
DDPG's, "dynamics-free"): value expansion changes only the critic's loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dynarl.data.batch import Batch
from dynarl.errors import ConfigError
from dynarl.learners.base import ActorCriticLearner
from dynarl.models.model_env import ModelEnv

MVE_TARGETS = ("td_k", "real_state")


@dataclass
class Expansion:
    """One batch's H-state path: ``obs`` [H, B, obs], ``act`` [H, B, act], ``target`` Q^_k [H, B] and
    ``mask`` m_k [H, B] (bool: the state is reached before any termination)."""

    obs: torch.Tensor
    act: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor


class ValueExpansion:
    """``ValueExpansion(learner, model_env, horizon, target)``: gives ``learner`` H-step MVE targets.

    It installs itself as ``learner.value_expansion``: the learner's ``td_target`` then returns ``Q^_0`` and
    its ``critic_loss`` (still under the learner's bf16 / torch.compile wrapping) calls :meth:`critic_loss`.
    One implementation for every :class:`ActorCriticLearner` (SAC, TD3, DDPG): it sees them only through
    ``target_policy``, ``next_value`` and ``critic``.
    """

    def __init__(self, learner: ActorCriticLearner, model_env: ModelEnv, horizon: int, target: str = "td_k"):
        if horizon < 1:
            raise ConfigError(f"value-expansion horizon={horizon} is invalid: must be >= 1 (1 = the one-step target)")
        if target not in MVE_TARGETS:
            raise ConfigError(f"mve_target={target!r} is invalid: must be one of {', '.join(map(repr, MVE_TARGETS))}")
        self.model_env = model_env
        self.horizon = horizon
        self.target = target
        learner.value_expansion = self

    @torch.no_grad()
    def expand(self, learner: ActorCriticLearner, batch: Batch) -> Expansion:
        """Imagine the path from ``batch.next_obs`` and write every state's target backwards."""
        gamma = learner.cfg.gamma
        obs, act, reward, bonus = [batch.obs], [batch.act], [batch.reward], []
        cont = [batch.terminated == 0]  # d_k as bool
        state = batch.next_obs
        if self.horizon > 1:
            self.model_env.reset(state)
        for _ in range(1, self.horizon):  # the imagined steps k = 1 .. H-1
            a, b = learner.target_policy(state)
            obs.append(state)
            act.append(a)
            bonus.append(b)
            state, r, done, _ = self.model_env.step(a)  # done: terminated at this step or before
            reward.append(r)
            cont.append(~done)
        value = learner.next_value(state)  # V'(s^_H)
        targets = [None] * self.horizon
        for k in reversed(range(self.horizon)):
            # torch.where, not a product: what lies past a termination never reaches a target, even if non-finite
            targets[k] = reward[k] + gamma * torch.where(cont[k], value, 0.0)
            if k > 0:
                value = bonus[k - 1] + targets[k]
        mask = [torch.ones_like(cont[0])] + [cont[0] & c for c in cont[:-1]]  # m_k: no termination before k
        return Expansion(torch.stack(obs), torch.stack(act), torch.stack(targets), torch.stack(mask))

    def __call__(self, learner: ActorCriticLearner, batch: Batch) -> torch.Tensor:
        """``Q^_0``: the H-step target at the sampled state (``learner.td_target``)."""
        return self.expand(learner, batch).target[0]

    def critic_loss(self, learner: ActorCriticLearner, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """MVE's TD-k loss over the H states (module docstring), or with ``"real_state"`` the same loss at the
        sampled state alone (the learner's one-step loss with ``Q^_0`` as its target); also ``{"q": the mean Q at
        the sampled states}``."""
        path = self.expand(learner, batch)
        if self.target == "real_state":
            path = Expansion(path.obs[:1], path.act[:1], path.target[:1], path.mask[:1])
        H, B = path.target.shape
        q = learner.critic(path.obs.reshape(H * B, -1), path.act.reshape(H * B, -1)).view(-1, H, B)
        err = torch.where(path.mask, (q - path.target).pow(2), 0.0)
        return 0.5 * err.mean((1, 2)).sum(), {"q": q[:, 0].detach().mean()}
