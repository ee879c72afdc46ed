"""Model-fitting losses: MSE (M1), diagonal Gaussian NLL (M3, 000 eq. 2 / 003), SLBO's H-step loss (000 eq. 5).

Every loss keeps the ensemble's leading member dimension and returns one value per member ([M]): the
trainer sums them (each member's gradient only sees its own loss) and logs them per member.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mse_loss(mean: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """001/003 deterministic model loss E_D[(f(s, a) - target)^2], averaged over rows and dims: [M]."""
    return (mean - target).square().mean(dim=(-2, -1))


def gaussian_nll(mean: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Diagonal Gaussian NLL of 003, ``E_D[(mu - s')^2 / sigma + log sigma]`` with sigma the *variance*.

    This is 000 eq. 2 (``(mu - s')^T Sigma^-1 (mu - s') + log det Sigma``, read with Sigma, erratum 2) for a
    diagonal Sigma, divided by the dimension: the mean over rows and dimensions, as in PETS/MBPO. It equals
    twice the Gaussian negative log-likelihood minus log(2 pi), so its minimiser is the MLE. Returns [M].
    """
    inv_var = torch.exp(-logvar)
    return ((mean - target).square() * inv_var + logvar).mean(dim=(-2, -1))


def soft_bound_logvar(raw: torch.Tensor, max_logvar: torch.Tensor, min_logvar: torch.Tensor) -> torch.Tensor:
    """Softly clamp a predicted log-variance into [min_logvar, max_logvar] (PETS/MBPO).

    ``softplus`` keeps the gradient alive near the bounds (a hard clamp would zero it), and the bounds are
    themselves learned, pulled together by :func:`logvar_bound_penalty`.
    """
    logvar = max_logvar - F.softplus(max_logvar - raw)
    return min_logvar + F.softplus(logvar - min_logvar)


def logvar_bound_penalty(max_logvar: torch.Tensor, min_logvar: torch.Tensor, coef: float = 0.01) -> torch.Tensor:
    """``coef * (sum max_logvar - sum min_logvar)``: keeps the learned bounds tight (PETS/MBPO use 0.01)."""
    return coef * (max_logvar.sum() - min_logvar.sum())


def termination_loss(logit: torch.Tensor, terminated: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of a learned done-classifier (M8; not in the seeds), per member: [M]."""
    return F.binary_cross_entropy_with_logits(logit, terminated.to(logit.dtype).expand_as(logit), reduction="none").mean(-1)


def h_step_delta_loss(pred_states: torch.Tensor, true_states: torch.Tensor) -> torch.Tensor:
    """SLBO's multi-step model loss (000 eq. 5, inventory M6).

    ``L^(H) = 1/H sum_{i=1..H} || (s^_{t+i} - s^_{t+i-1}) - (s_{t+i} - s_{t+i-1}) ||_2``

    where ``s^`` is the model's own H-step rollout from ``s^_t = s_t`` and the norm is *not* squared.
    ``pred_states``/``true_states``: [..., B, H+1, dim]; returns the mean over B: [...].
    """
    pred_delta = pred_states[..., 1:, :] - pred_states[..., :-1, :]
    true_delta = true_states[..., 1:, :] - true_states[..., :-1, :]
    return torch.linalg.vector_norm(pred_delta - true_delta, dim=-1).mean(dim=(-2, -1))
