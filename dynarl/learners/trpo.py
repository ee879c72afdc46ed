"""TRPO: the KL-constrained surrogate step (seed 002; inventory E7), the policy learner SLBO drives (000).

    maximise   L(theta) = E_{s, a ~ pi_old}[pi_theta(a|s) / pi_old(a|s) A(s, a)]
    subject to E_s[D_KL(pi_old(.|s) || pi_theta(.|s))] <= delta        (delta = max_kl)

Standard details not in the seed (Schulman et al. 2015): the natural-gradient direction
``x = F^-1 g`` by ``cg_iters`` conjugate-gradient iterations on Fisher-vector products (the Hessian of
the mean KL times a vector, plus ``cg_damping`` v); the largest step along it that satisfies the
quadratic model of the constraint, ``sqrt(2 delta / x^T F x) x``; a backtracking line search that
shrinks the step by ``backtrack_coef`` until the *exact* mean KL is within delta and the surrogate
improves (else the policy is left unchanged). The value network is fitted separately by ``vf_iters``
epochs of minibatch Adam on the GAE value targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dynarl.config import non_negative, param, positive, unit_interval_open_closed
from dynarl.data.rollout import Rollout, normalize
from dynarl.learners.base import adam
from dynarl.learners.policy_gradient import PGLearnerConfig, PolicyGradientLearner


@dataclass
class TRPOLearnerConfig(PGLearnerConfig):
    max_kl: float = param(0.01, positive, "delta, the bound on the mean KL(pi_old || pi_new)")
    cg_iters: int = param(10, positive, "conjugate-gradient iterations for F^-1 g")
    cg_damping: float = param(0.1, non_negative, "damping added to the Fisher-vector product")
    backtrack_iters: int = param(10, positive, "line-search trials")
    backtrack_coef: float = param(0.8, unit_interval_open_closed, "step shrink factor per trial")
    lr: float = param(1e-3, positive, "value-network Adam learning rate (the policy step has no learning rate)")
    vf_iters: int = param(10, positive, "value-fitting epochs per update")
    vf_batch_size: int = param(128, positive, "value-fitting minibatch size")
    max_grad_norm: float = param(0.0, non_negative, "clip the value network's gradient norm (0: no clipping)")


def flat_grad(y: torch.Tensor, params: list[torch.Tensor], **kwargs) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(y, params, **kwargs)])


def conjugate_gradient(Avp, b: torch.Tensor, iters: int, residual_tol: float = 1e-10) -> torch.Tensor:
    """Solve ``A x = b`` for symmetric positive-definite A given only ``Avp(v) = A v``."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    for _ in range(iters):
        Ap = Avp(p)
        alpha = rr / (p @ Ap)
        x += alpha * p
        r -= alpha * Ap
        rr_new = r @ r
        if rr_new < residual_tol:
            break
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


class TRPOLearner(PolicyGradientLearner):
    name = "trpo"

    def __init__(self, cfg: TRPOLearnerConfig, obs_space, action_space, device: torch.device):
        super().__init__(cfg, obs_space, action_space, device)
        self._policy_params = list(self.policy.parameters())
        self._value_params = list(self.value.parameters())
        self.optimizers = {"value": adam(self._value_params, cfg.lr)}

    # --- the pieces of the step -------------------------------------------------------------------------

    def surrogate(self, obs, act, old_log_prob, adv) -> torch.Tensor:
        """L(theta) = E[pi_theta(a|s) / pi_old(a|s) A] (+ c2 H, the entropy bonus SLBO adds)."""
        params = self.policy(obs)
        ratio = torch.exp(self.policy.log_prob(params, act) - old_log_prob)
        objective = (ratio * adv).mean()
        if self.cfg.ent_coef > 0:
            objective = objective + self.cfg.ent_coef * self.policy.entropy(params).mean()
        return objective

    def mean_kl(self, obs, old_params) -> torch.Tensor:
        return self.policy.kl(old_params, self.policy(obs)).mean()

    def fisher_vector_product(self, obs, old_params):
        """v -> F v + damping v, with F the Hessian of the mean KL at theta_old (two backward passes)."""
        kl = self.mean_kl(obs, old_params)
        grad_kl = flat_grad(kl, self._policy_params, create_graph=True)

        def fvp(v: torch.Tensor) -> torch.Tensor:
            return flat_grad(grad_kl @ v, self._policy_params, retain_graph=True) + self.cfg.cg_damping * v

        return fvp

    def _flat_params(self) -> torch.Tensor:
        return torch.cat([p.data.reshape(-1) for p in self._policy_params])

    @torch.no_grad()
    def _set_flat_params(self, flat: torch.Tensor) -> None:
        i = 0
        for p in self._policy_params:
            n = p.numel()
            p.copy_(flat[i : i + n].view_as(p))
            i += n

    # --- the update ------------------------------------------------------------------------------------

    def policy_step(self, obs, act, old_log_prob, adv) -> dict[str, torch.Tensor]:
        """One natural-gradient step with a KL-constrained backtracking line search."""
        cfg = self.cfg
        with torch.no_grad():
            old_params = self.policy(obs)
        surrogate = self.surrogate(obs, act, old_log_prob, adv)
        g = flat_grad(surrogate, self._policy_params)
        fvp = self.fisher_vector_product(obs, old_params)
        x = conjugate_gradient(fvp, g, cfg.cg_iters)  # x ~ F^-1 g
        xFx = (x @ fvp(x)).clamp_min(1e-12)
        full_step = torch.sqrt(2 * cfg.max_kl / xFx) * x  # the step at which the quadratic KL model equals delta
        old_flat = self._flat_params()
        old_objective = surrogate.detach()
        accepted, kl, new_objective, frac = False, torch.zeros(()), old_objective, 0.0
        for j in range(cfg.backtrack_iters):
            frac = cfg.backtrack_coef**j
            self._set_flat_params(old_flat + frac * full_step)
            with torch.no_grad():
                kl = self.mean_kl(obs, old_params)
                new_objective = self.surrogate(obs, act, old_log_prob, adv)
            if bool(kl <= cfg.max_kl) and bool(new_objective > old_objective):
                accepted = True
                break
        if not accepted:
            self._set_flat_params(old_flat)
            kl, new_objective, frac = torch.zeros(()), old_objective, 0.0
        self._watch(surrogate)
        return {"surrogate_improvement": (new_objective - old_objective).detach(), "kl": kl.detach(), "step_fraction": torch.tensor(frac), "line_search_accepted": torch.tensor(float(accepted))}

    def value_step(self, obs, ret) -> torch.Tensor:
        """``vf_iters`` epochs of minibatch Adam on (V_phi(s) - V_target)^2."""
        cfg, n = self.cfg, obs.shape[0]
        loss = torch.zeros(())
        for _ in range(cfg.vf_iters):
            perm = torch.randperm(n, device=self.device)
            for start in range(0, n, cfg.vf_batch_size):
                idx = perm[start : start + cfg.vf_batch_size]
                loss = (self.value(obs[idx]) - ret[idx]).square().mean()
                self._clipped_step("value", loss, self._value_params)
                self._watch(loss)
        return loss.detach()

    def update(self, rollout: Rollout) -> dict[str, torch.Tensor]:
        adv, ret = self.advantages(rollout)
        obs, act, old_log_prob = rollout.flat("obs"), rollout.flat("act"), rollout.flat("log_prob")
        adv, ret = adv.reshape(-1), ret.reshape(-1)
        if self.cfg.normalize_advantage:
            adv = normalize(adv)
        metrics = self.policy_step(obs, act, old_log_prob, adv)
        metrics["value_loss"] = self.value_step(obs, ret)
        self.num_updates += 1
        return metrics
