"""IQL, implicit Q-learning (Kostrikov et al. 2021; seed 001; inventory C3): never queries out-of-data actions.

Per update, in CORL's order (``algorithms/offline/iql.py``):

    L_V(psi)   = E_D[ l_2^tau(u) ],  u = min_i Q'_i(s, a) - V_psi(s),  l_2^tau(u) = |tau - 1(u < 0)| u^2    (eq. 5)
    L_Q(theta) = E_D[ (Q_theta,i(s, a) - (r + gamma (1 - terminated) V_psi(s')))^2 ]                          (eq. 6)
    L_pi(phi)  = E_D[ min(exp(beta (min_i Q'_i(s, a) - V_psi(s))), 100) * (-log pi_phi(a|s)) ]                 (eq. 7, AWR)

V(s') is taken before the V step and the advantage uses V before it; the target critics Q' are a Polyak copy of
the twin critics and are what both V and the policy regress against (CORL). With tau = 0.5 the expectile loss is
half the squared error, so V regresses on the mean of Q over the data's actions; a large tau approaches the
max over the data's support (seed: x = V - Q in its convention, here u = Q - V with the weight mirrored).

``actor="deterministic"`` replaces -log pi(a|s) by ||mu(s) - a||^2 (CORL's ``iql_deterministic`` for locomotion).
Optional cosine decay of the actor lr to 0 over ``actor_lr_decay_steps`` updates (the paper: 1M; 0 = constant),
computed from ``num_updates`` so a restored learner continues the schedule. ``Batch.discount`` (gamma^n per row)
replaces gamma when set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium as gym
import torch

from dynarl.config import non_negative, one_of, param, positive
from dynarl.data.batch import Batch
from dynarl.errors import EnvError
from dynarl.learners.base import ActorCriticConfig, Learner, adam, flat_dim, soft_update, target_copy
from dynarl.nn.pg_policies import ValueNet
from dynarl.nn.policies import DeterministicActor, GaussianActor, QEnsemble


def expectile_loss(u: torch.Tensor, tau: float) -> torch.Tensor:
    """E[|tau - 1(u < 0)| u^2]: the asymmetric squared loss whose minimiser over V (u = Q - V) is Q's tau-expectile."""
    return ((tau - (u < 0).float()).abs() * u.pow(2)).mean()


def _open_unit(x) -> str | None:
    return None if 0 < x < 1 else "must be in (0, 1)"


@dataclass
class IQLLearnerConfig(ActorCriticConfig):
    value_lr: float = param(3e-4, positive, "V network Adam learning rate")
    expectile: float = param(0.7, _open_unit, "tau of the expectile loss on V (0.5 = mean regression; CORL locomotion 0.7)")
    beta: float = param(3.0, non_negative, "inverse temperature of the advantage weights exp(beta (Q - V))")
    exp_adv_max: float = param(100.0, positive, "the advantage weights are clamped at this value (CORL)")
    actor: str = param("gaussian", one_of("gaussian", "deterministic"), "policy extraction: weighted -log pi(a|s) or weighted ||mu(s) - a||^2")
    actor_lr_decay_steps: int = param(0, non_negative, "cosine decay of the actor lr to 0 over this many updates (paper: 1M); 0 = off")


class IQLLearner(Learner):
    name = "iql"

    def __init__(self, cfg: IQLLearnerConfig, obs_space: gym.Space, action_space: gym.Space, device: torch.device):
        if not isinstance(action_space, gym.spaces.Box):
            raise EnvError(f"IQL needs a Box action space; this env has {action_space}")
        super().__init__(device)
        obs_dim, act_dim = flat_dim(obs_space), flat_dim(action_space)
        self.cfg = cfg
        self.critic = QEnsemble(obs_dim, act_dim, cfg.hidden_sizes, members=2).to(device)
        self.critic_target = target_copy(self.critic)
        self.value = ValueNet(obs_dim, cfg.hidden_sizes, activation="relu", ortho_init=False).to(device)
        actor_cls = GaussianActor if cfg.actor == "gaussian" else DeterministicActor
        self.actor = actor_cls(obs_dim, act_dim, cfg.hidden_sizes).to(device)
        self.modules = {"actor": self.actor, "critic": self.critic, "critic_target": self.critic_target, "value": self.value}
        self.optimizers = {"actor": adam(self.actor.parameters(), cfg.actor_lr), "critic": adam(self.critic.parameters(), cfg.critic_lr),
                           "value": adam(self.value.parameters(), cfg.value_lr)}
        self._wrap_losses("next_value", "value_loss", "critic_loss", "actor_loss")

    @torch.no_grad()
    def next_value(self, next_obs: torch.Tensor) -> torch.Tensor:
        """V(s'), the bootstrap of the critic's target (taken before V's step, as CORL does)."""
        return self.value(next_obs).float()

    def value_loss(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L_V = E[l_2^tau(min_i Q'_i(s, a) - V(s))]; also the advantage min_i Q'_i(s, a) - V(s) (detached, V before its step)."""
        with torch.no_grad():
            q_target = self.critic_target(obs, act).min(0).values
        u = q_target - self.value(obs).float()
        return expectile_loss(u, self.cfg.expectile), u.detach()

    def critic_loss(self, batch: Batch, next_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L_Q = E[(Q_i(s, a) - y)^2] averaged over the twin critics (CORL), y = r + gamma (1 - terminated) V(s'); also mean Q."""
        gamma = self.cfg.gamma if batch.discount is None else batch.discount
        y = batch.reward + gamma * (1.0 - batch.terminated) * next_v
        q = self.critic(batch.obs, batch.act)
        return (q - y).pow(2).mean(1).mean(), q.detach().mean()

    def actor_loss(self, obs: torch.Tensor, act: torch.Tensor, adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L_pi = E[min(exp(beta A), exp_adv_max) * bc(s, a)], bc = -log pi(a|s) or ||mu(s) - a||^2; also the mean weight."""
        weights = torch.exp(self.cfg.beta * adv).clamp(max=self.cfg.exp_adv_max)
        if self.cfg.actor == "gaussian":
            bc = -self.actor.log_prob(obs, act)
        else:
            bc = (self.actor(obs) - act).pow(2).sum(-1)
        return (weights * bc).mean(), weights.mean()

    def _actor_lr(self) -> float:
        """Cosine decay from actor_lr to 0 over actor_lr_decay_steps (then 0), as CORL's CosineAnnealingLR within its horizon."""
        steps = self.cfg.actor_lr_decay_steps
        t = min(self.num_updates, steps)
        return self.cfg.actor_lr * 0.5 * (1.0 + math.cos(math.pi * t / steps))

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        next_v = self.next_value(batch.next_obs)
        value_loss, adv = self._minimise("value", "value_loss", batch.obs, batch.act)
        critic_loss, q = self._minimise("critic", "critic_loss", batch, next_v)
        soft_update(self.critic_target, self.critic, self.cfg.tau)
        if self.cfg.actor_lr_decay_steps:
            for group in self.optimizers["actor"].param_groups:
                group["lr"] = self._actor_lr()
        actor_loss, weight = self._minimise("actor", "actor_loss", batch.obs, batch.act, adv)
        self._watch(value_loss, critic_loss, actor_loss)
        self.num_updates += 1
        return {"value_loss": value_loss.detach(), "critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(), "q": q,
                "v_next": next_v.mean(),
                "adv": adv.mean(), "adv_weight": weight.detach()}

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """A sample of pi(.|s) (or tanh(mean) when deterministic); the deterministic actor always returns mu(s)."""
        if self.cfg.actor == "gaussian":
            return self.actor(obs, deterministic)[0]
        return self.actor(obs)

    @torch.no_grad()
    def log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """log pi(a|s) of the Gaussian actor (off-policy evaluation); the deterministic actor has no density."""
        if self.cfg.actor != "gaussian":
            raise ValueError("a deterministic IQL actor has no density; train with learner.actor=gaussian")
        return self.actor.log_prob(obs, act)
