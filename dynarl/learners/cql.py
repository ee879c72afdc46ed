"""CQL(H): SAC with the conservative regulariser of Kumar et al. 2020 (seed 001; inventory C4).

The seed's loss, with the entropy-regularised inner maximisation (CQL(H), Kumar et al. eq. 4):

    min_Q  alpha (E_{s~D}[log sum_a exp Q(s, a)] - E_{(s,a)~D}[Q(s, a)]) + 1/2 E_D[(Q(s, a) - B^pi Q'(s, a))^2]

Term 1 pushes Q down where it is large (mu* ~ exp Q), term 2 pushes it up on the dataset's pairs, term 3 is
SAC's Bellman loss (:meth:`ActorCriticLearner.bellman_loss`) without its 1/2: the seed and the paper write 1/2,
but Kumar et al.'s code (rlkit's ``nn.MSELoss``), CORL and d3rlpy train on the full mean squared error, and the
published alphas (5 and 10) were tuned with it, so that is the scale here. The rest of SAC's update (actor,
temperature, Polyak target) and its order are unchanged. For continuous actions the log-integral is estimated by
importance sampling from three proposals, N samples each (the standard estimator, not in the seed):

    T log sum_a exp(Q/T) ~= T logsumexp_j (Q(s, a_j)/T - log mu(a_j|s)),
    a_j ~ U[-1, 1]^|A| (log mu = -|A| log 2), pi(.|s) and pi(.|s') (log mu = their log pi),

with the constant -log 3N dropped, as in the reference codes (so the Lagrangian threshold means the same).
The reference codes (Kumar's, CORL) write ``logsumexp((Q - log mu)/T) T``; at the default T = 1 both agree.

Lagrangian version (``lagrange``): the weight is ``cql_alpha * alpha'``, alpha' = exp(log alpha') >= 0 learned so
that the gap E[logsumexp] - E_D[Q] tracks ``target_action_gap`` (CORL's form: the threshold applies to the
unscaled gap). Defaults: cql_alpha = 5.0 (the paper's Gym setting and d3rlpy's ``conservative_weight``; CORL's
locomotion YAMLs use 10), actor lr 1e-4 (paper; CORL 3e-5), N = 10, T = 1, threshold 10 (d3rlpy ``alpha_threshold``).
Not included: CORL's BC warm-start of the actor, max-backup, clipped gaps, orthogonal init.

COMBO reuses this learner: :meth:`cql_split` is the hook that chooses which (s, a) pairs are pushed up (the
dataset's) and at which states Q is pushed down (COMBO: model rollouts), from the critic's batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium as gym
import torch
from torch import nn

from dynarl.config import non_negative, param, positive
from dynarl.data.batch import Batch
from dynarl.errors import EnvError
from dynarl.learners.base import adam, flat_dim
from dynarl.learners.sac import SACLearner, SACLearnerConfig

CRITIC_ROWS_PER_PASS = 1024  # state-action rows per critic pass over the importance samples


@dataclass
class CQLLearnerConfig(SACLearnerConfig):
    actor_lr: float = param(1e-4, positive, "actor Adam learning rate (CQL paper: 1e-4; CORL: 3e-5)")
    cql_alpha: float = param(5.0, non_negative, "alpha, the conservative weight (paper's Gym setting and d3rlpy's conservative_weight: 5.0; CORL: 10); 0 = SAC")
    cql_n_actions: int = param(10, positive, "N: actions sampled from each of the 3 proposals (uniform, pi(.|s), pi(.|s')) per state")
    cql_temperature: float = param(1.0, positive, "T: the soft maximum is T log sum exp(Q/T)")
    lagrange: bool = param(False, help="learn alpha' >= 0 (weight cql_alpha * alpha') so that E[logsumexp] - E_D[Q] tracks target_action_gap")
    target_action_gap: float = param(10.0, help="threshold of the Lagrangian version (d3rlpy alpha_threshold: 10)")
    cql_alpha_lr: float = param(3e-4, positive, "Adam learning rate of log alpha' (Lagrangian version)")
    deterministic_backup: bool = param(False, help="drop the entropy bonus from the critic target, y = r + gamma (1 - d) min_i Q'_i(s', a') with a' ~ pi (OfflineRL-Kit's COMBO default; CORL's backup_entropy=false); false: SAC's soft target")


class CQLLearner(SACLearner):
    name = "cql"

    def __init__(self, cfg: CQLLearnerConfig, obs_space: gym.Space, action_space: gym.Space, device: torch.device):
        if not isinstance(action_space, gym.spaces.Box):
            raise EnvError(f"CQL needs a Box action space; this env has {action_space}")
        super().__init__(cfg, obs_space, action_space, device)
        self.act_dim = flat_dim(action_space)
        self._cql_alpha = torch.tensor(float(cfg.cql_alpha), device=device)
        if cfg.lagrange:
            self.log_alpha_prime = nn.Parameter(torch.zeros((), device=device))  # alpha' = 1 at the start (CORL)
            self.modules["cql_alpha"] = nn.ParameterDict({"log_alpha_prime": self.log_alpha_prime})
            self.optimizers["cql_alpha"] = adam([self.log_alpha_prime], cfg.cql_alpha_lr)

    @torch.no_grad()
    def target_policy(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        """SAC's (a', -alpha log pi(a'|s')), or (a', 0) with ``deterministic_backup`` (the same draw of a')."""
        act, bonus = super().target_policy(obs)
        return (act, 0.0) if self.cfg.deterministic_backup else (act, bonus)

    def conservative_weight(self) -> torch.Tensor:
        """alpha, or alpha * alpha' with alpha' = exp(log alpha') clamped to [0, 1e6] (Lagrangian; CORL's clamp)."""
        if not self.cfg.lagrange:
            return self._cql_alpha
        return self._cql_alpha * self.log_alpha_prime.exp().clamp(max=1e6)

    @torch.no_grad()
    def cql_proposals(self, obs: torch.Tensor, next_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The 3N importance samples per state and their log densities: actions [B, 3N, A], log mu [B, 3N].

        Order along dim 1: N uniform on [-1, 1]^|A|, N from pi(.|s), N from pi(.|s') (all evaluated at s).
        """
        n, b = self.cfg.cql_n_actions, obs.shape[0]
        uniform = torch.rand(b, n, self.act_dim, device=obs.device) * 2 - 1
        uniform_log_density = torch.full((b, n), -self.act_dim * math.log(2.0), device=obs.device)
        pi_act, pi_log_prob = self.actor.sample_n(torch.cat([obs, next_obs]), n)  # one pass for s and s'
        pi_act, pi_log_prob = pi_act.view(2, b, n, self.act_dim), pi_log_prob.view(2, b, n)
        act = torch.cat([uniform, pi_act[0], pi_act[1]], 1)
        log_density = torch.cat([uniform_log_density, pi_log_prob[0], pi_log_prob[1]], 1)
        return act, log_density

    def cql_logsumexp(self, obs: torch.Tensor, act: torch.Tensor, log_density: torch.Tensor) -> torch.Tensor:
        """T logsumexp_j (Q_i(s, a_j)/T - log mu(a_j|s)) per critic and state: [members, B].

        The critics see the B x 3N samples in passes of about ``CRITIC_ROWS_PER_PASS`` rows: one pass over all
        7,680 rows (batch 256, N = 10) keeps 16 MB activations that stream from memory, and was 20-30% slower
        per update in fp32 and 35% in bf16 on one CPU core (``benchmarks/offline_speed.py``)."""
        b, m = act.shape[:2]
        per_pass = max(1, CRITIC_ROWS_PER_PASS // b)  # proposals per pass
        passes = []
        for part in act.split(per_pass, 1):
            k = part.shape[1]
            passes.append(self.critic(obs.repeat_interleave(k, 0), part.reshape(b * k, -1)).view(-1, b, k))
        q = torch.cat(passes, 2)
        t = self.cfg.cql_temperature
        return t * torch.logsumexp(q / t - log_density, dim=-1)

    def cql_regularizer(self, q_data: torch.Tensor, pushdown_obs: torch.Tensor, pushdown_next_obs: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per critic i: E_{s~rho}[T log sum_a exp(Q_i(s, a)/T)] - E_{(s,a)~D}[Q_i(s, a)], shape [members].

        ``q_data`` [members, n] holds the critics' values at the pairs pushed up (the Bellman term's own forward
        pass, so they cost nothing extra); Q is pushed down at the states ``pushdown_obs`` (with
        ``pushdown_next_obs`` for the pi(.|s') proposal). Extras: ``q_ood`` (the mean soft maximum) and
        ``q_data`` (the mean data Q), detached.
        """
        q_ood = self.cql_logsumexp(pushdown_obs, *self.cql_proposals(pushdown_obs, pushdown_next_obs)).mean(1)
        q_data = q_data.mean(1)
        return q_ood - q_data, {"q_ood": q_ood.detach().mean(), "q_data": q_data.detach().mean()}

    def cql_split(self, batch: Batch) -> tuple[int, torch.Tensor, torch.Tensor]:
        """Hook: (n, states pushed down, their next states) for the critic's batch; Q is pushed up at its first n pairs.

        CQL: every pair, and down at the same states. COMBO overrides it to push up the dataset rows (which its
        loop puts first) and push down at model-rollout states of its mixed batch (its Bellman term still
        covers the whole batch).
        """
        return len(batch), batch.obs, batch.next_obs

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """2 J_Q (SAC's J_Q without its 1/2, see the module docstring) plus sum_i w gap_i (w = alpha; Lagrangian:
        alpha alpha' (gap_i - target_action_gap), alpha' fixed here). With alpha = 0: SAC's J_Q exactly. Also the
        metrics: SAC's, ``cql_loss``, ``cql_alpha`` (w), ``q_ood``, ``q_data`` and ``gap`` (per critic, for alpha')."""
        if not self.cfg.lagrange and self.cfg.cql_alpha == 0:
            # nothing to push: skip the 3N extra critic passes (and their random draws), so alpha = 0 is SAC exactly
            bellman, metrics = super().critic_loss(batch)
            return bellman, {**metrics, "cql_loss": torch.zeros_like(bellman.detach()), "cql_alpha": self._cql_alpha}
        q = self.critic(batch.obs, batch.act)
        half_bellman, metrics = self.bellman_loss(batch, q) if self.value_expansion is None else super().critic_loss(batch)
        bellman = 2.0 * half_bellman  # the full mean squared error of the reference codes
        n, pushdown_obs, pushdown_next_obs = self.cql_split(batch)
        gap, extras = self.cql_regularizer(q[:, :n], pushdown_obs, pushdown_next_obs)
        weight = self.conservative_weight().detach()
        threshold = self.cfg.target_action_gap if self.cfg.lagrange else 0.0
        cql_loss = (weight * (gap - threshold)).sum()
        return bellman + cql_loss, {**metrics, "cql_loss": cql_loss.detach(), "cql_alpha": weight, **extras, "gap": gap.detach()}

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        metrics = super().update(batch)  # SAC's update, with critic_loss above and its metrics
        gap = metrics.pop("gap", None)
        if self.cfg.lagrange:
            # max_{alpha' >= 0} alpha alpha' (gap - threshold), averaged over the critics (CORL)
            alpha_prime_loss = -(self.conservative_weight() * (gap - self.cfg.target_action_gap)).mean()
            self._step("cql_alpha", alpha_prime_loss)
            metrics["cql_alpha_loss"] = alpha_prime_loss.detach()
        self._watch(metrics["cql_loss"])
        return metrics
