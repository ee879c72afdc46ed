"""MOPO's uncertainty penalties u(s, a) and the penalised reward r~ = r - lambda u (Yu et al. 2020; seeds 001, 004).

MOPO learns on model transitions whose reward is ``r~(s, a) = r^(s, a) - lambda u(s, a)`` (001; 004's lower
bound ``V >= E[r - gamma/(1-gamma) 2 D_TV(p^ || p) r_max]``, inventory C6/T12), with ``u`` estimated from a
probabilistic ensemble's per-member Gaussians ``N(mu_i(s, a), diag(sigma_i^2(s, a)))``:

- :func:`aleatoric`: ``max_i ||Sigma_i||_F``, the MOPO paper's default;
- :func:`disagreement`: ``max_i ||mu_i - mu_bar||_2``, 004's "ensemble penalty" ``max_i |mu_i - mu_true|``;
- :func:`tv_bound`: 004's estimate of the total-variation term, ``max_i (or mean_i) (mu_i - mu_bar)^2 / sigma_i^2``.

Every estimator takes the ensemble's means and variances shaped [members, B, D] (any leading batch shape
between members and D works) and returns [B]; members and dimensions are reduced with tensor ops, never a
Python loop. All members must predict for the *same* (s, a) rows: call ``model.predict(obs [B, obs], act,
members)`` (shared input), not the grouped per-member rows a TS1 rollout step uses.

Units and dimensions. :meth:`DynamicsModel.predict` returns data units (not the normalised training units),
as MOPO's and OfflineRL-Kit's models do, so ``aleatoric`` and ``disagreement`` weigh dimensions by their
scale; ``tv_bound`` divides by the variance and is scale-free. Which output dimensions enter is the caller's
choice through :func:`ensemble_outputs` (``include_reward``); :data:`INCLUDES_REWARD` holds the reference
choices: MOPO's code takes the aleatoric norm over the full output [s' - s, r] and the disagreement over the
next state only; 004 derives the TV term for p(s' | s, a), assuming the model's and the true reward agree.
Adding the observation to a predicted delta shifts every member alike, so means may be given as next states
or as deltas: the penalties are the same.
"""

from __future__ import annotations

from typing import Callable

import torch

from dynarl.errors import ConfigError

Penalty = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# variances are floored here before dividing (tv_bound): a collapsed or deterministic (zero-variance) member then
# gives a large finite penalty, not inf or 0/0 = NaN; identical means still give exactly 0
MIN_VAR = 1e-12


def _check(mean: torch.Tensor, var: torch.Tensor) -> None:
    if mean.shape != var.shape or mean.dim() < 2:
        raise ValueError(f"mean and var must share one shape [members, ..., D]; got {tuple(mean.shape)} and {tuple(var.shape)}")


def aleatoric(mean: torch.Tensor, var: torch.Tensor, norm: str = "covariance") -> torch.Tensor:
    """MOPO's aleatoric penalty ``u(s, a) = max_i ||Sigma_i(s, a)||_F`` (Yu et al. 2020, practical algorithm): [B].

    For the diagonal ``Sigma_i = diag(sigma_i^2)`` the Frobenius norm is ``sqrt(sum_d sigma_{i,d}^4)``
    (``norm="covariance"``, the paper's formula, the default). MOPO's released code (``fake_env.py``) and
    OfflineRL-Kit compute ``max_i ||sigma_i||_2 = max_i sqrt(sum_d sigma_{i,d}^2)`` instead, the Frobenius
    norm of ``Sigma_i^(1/2)`` (``norm="std"``); their published lambdas are tuned for that one. ``mean`` is
    unused (kept so that every penalty has one signature).
    """
    _check(mean, var)
    if norm == "covariance":
        per_member = torch.linalg.vector_norm(var, dim=-1)
    elif norm == "std":
        # sqrt(sum_d var_d) directly: no sqrt of each var, so a zero variance has no infinite gradient
        per_member = var.sum(-1).clamp_min(0.0).sqrt()
    else:
        raise ConfigError(f"norm={norm!r} is invalid: must be 'covariance' (the paper's ||Sigma||_F) or 'std' (MOPO's code, ||sigma||_2)")
    return per_member.amax(dim=0)


def disagreement(mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """004's ensemble penalty ``u(s, a) = max_i ||mu_i(s, a) - mu_bar(s, a)||_2``, ``mu_bar = 1/N sum_i mu_i``: [B].

    004 writes ``max_i |mu_i - mu_true|`` for a scalar state with ``mu_true`` estimated by the ensemble mean;
    for vectors the Euclidean norm is MOPO's code's choice. ``var`` is unused.
    """
    _check(mean, var)
    return torch.linalg.vector_norm(mean - mean.mean(dim=0, keepdim=True), dim=-1).amax(dim=0)


def tv_bound(mean: torch.Tensor, var: torch.Tensor, reduce: str = "max", min_var: float = MIN_VAR) -> torch.Tensor:
    """004's estimate of the total-variation term: ``reduce_i sum_d (mu_{i,d} - mu_bar_d)^2 / sigma_{i,d}^2``: [B].

    004 (inventory C6) assumes ``sigma_true = sigma_i`` and ``mu_true = mu_bar = 1/N sum_i mu_i`` and, for a
    scalar state, arrives at ``D_TV(p^ || p) <= 1/N sum_i |(mu_i - mu_true)^2 / sigma_i^2|
    <= max_i (mu_i - mu_true)^2 / sigma_i^2`` (its own words: the last steps are "not rigorous"; mean or max
    both work, max is more conservative). ``reduce="mean"`` is the first bound, ``reduce="max"`` the second.

    Dimensions are *summed*: a diagonal Gaussian's density is a product over d, so the exponent of 004's
    density ratio, and hence every step after it, is a sum over d; the result is the squared Mahalanobis
    distance ``(mu_i - mu_bar)^T Sigma_i^-1 (mu_i - mu_bar)`` (twice the KL between the two Gaussians of
    covariance ``Sigma_i``). A mean over d would instead shrink the penalty as uninformative dimensions are
    added. The seed's absolute value is dropped (the quantity is non-negative). Kept as the seed has it: no
    factor 1/2 (004 drops it from the Gaussian exponent, inventory erratum 20), and no cap at 1 although a TV distance is
    at most 1, so the value is an uncertainty score that lambda scales (lambda absorbs 004's
    ``2 gamma r_max / (1 - gamma)``). Variances are floored at ``min_var`` so that a zero variance gives a large
    finite value, not inf or NaN.
    """
    _check(mean, var)
    if reduce not in ("max", "mean"):
        raise ConfigError(f"reduce={reduce!r} is invalid: must be 'max' (the conservative bound) or 'mean'")
    dev = mean - mean.mean(dim=0, keepdim=True)
    per_member = (dev.square() / var.clamp_min(min_var)).sum(-1)
    return per_member.amax(dim=0) if reduce == "max" else per_member.mean(dim=0)


PENALTIES: dict[str, Penalty] = {"aleatoric": aleatoric, "disagreement": disagreement, "tv_bound": tv_bound}

# whether the reference implementation of each penalty reads the reward dimension (see the module docstring)
INCLUDES_REWARD: dict[str, bool] = {"aleatoric": True, "disagreement": False, "tv_bound": False}


def ensemble_outputs(pred: dict[str, torch.Tensor], include_reward: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, var)`` [E, B, D] from :meth:`DynamicsModel.predict`: the next state, then the reward if asked.

    ``include_reward=True`` needs a model that learns the reward (``learn_reward=True``); with a reward
    function of the task the reward has no predicted uncertainty, so leave it out.
    """
    mean, var = pred["next_obs_mean"], pred["next_obs_var"]
    if include_reward:
        if "reward_mean" not in pred:
            raise ValueError("include_reward=True needs a model that predicts the reward (learn_reward=True)")
        mean = torch.cat([mean, pred["reward_mean"].unsqueeze(-1)], dim=-1)
        var = torch.cat([var, pred["reward_var"].unsqueeze(-1)], dim=-1)
    return mean, var


def penalized_reward(reward: torch.Tensor, u: torch.Tensor, penalty_coef: float) -> torch.Tensor:
    """MOPO's ``r~(s, a) = r(s, a) - lambda u(s, a)`` (001; Yu et al. 2020), with ``lambda = penalty_coef >= 0``.

    ``lambda = 0`` returns ``reward`` itself, bit for bit (so MOPO with lambda = 0 is MBPO on the dataset,
    even where ``u`` is inf).
    """
    if not penalty_coef >= 0:  # also rejects NaN
        raise ConfigError(f"penalty_coef={penalty_coef} is invalid: MOPO's lambda must be >= 0 (a negative lambda would reward model uncertainty)")
    if reward.shape != u.shape:
        # [B, 1] - [B] would broadcast to [B, B] silently
        raise ValueError(f"reward and u must have the same shape; got {tuple(reward.shape)} and {tuple(u.shape)}")
    if penalty_coef == 0:
        return reward
    return reward - penalty_coef * u.to(reward.dtype)
