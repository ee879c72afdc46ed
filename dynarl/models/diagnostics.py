"""Model diagnostics: the seeds' model-error theory made measurable (inventory section 3, T7-T9).

All functions take a trained :class:`DynamicsModel` and *real* held-out data, use the elites, and work in
two unit systems: data units, and normalised target units (deltas divided by the training std, the
units the model is trained in, so that every dimension counts alike).

- :func:`one_step_error`: per-dimension one-step MSE.
- :func:`k_step_error`: open-loop k-step error along real trajectories, the compounding-error curve
  (003 Lemma B.2 predicts at most linear growth of the state-marginal divergence; 001's "curse of long
  rollouts").
- :func:`uncertainty`: ensemble disagreement (epistemic, 001) beside the predicted variance (aleatoric).
- :func:`calibration`: share of true next states inside the predicted 1 and 2 sigma intervals.
- :func:`model_error`: estimates of eps_m (000 section 3.3 / 003 MBPO), see its docstring.
- :func:`plot_diagnostics`: one PNG of whatever of the above a list of rows (or a CSV) holds.
"""

from __future__ import annotations

import math

import torch

from dynarl.models.dynamics import DynamicsModel

GAUSS_1SIGMA = math.erf(1 / math.sqrt(2))  # 0.6827
GAUSS_2SIGMA = math.erf(2 / math.sqrt(2))  # 0.9545


def _scale(model: DynamicsModel) -> torch.Tensor:
    return model.target_normalizer.std[: model.obs_dim]


@torch.no_grad()
def _mixture(model: DynamicsModel, obs: torch.Tensor, act: torch.Tensor):
    """Elite predictions and their moment-matched mixture: (means [E,N,d], vars [E,N,d], mean [N,d], epistemic, aleatoric)."""
    pred = model.predict(obs, act, model.elite_idx)
    means, variances = pred["next_obs_mean"], pred["next_obs_var"]
    epistemic = means.var(0, correction=0)  # disagreement of the members' means
    aleatoric = variances.mean(0)  # the members' own predicted noise
    return means, variances, means.mean(0), epistemic, aleatoric


@torch.no_grad()
def one_step_error(model: DynamicsModel, obs, act, next_obs) -> dict:
    """One-step prediction error on real transitions.

    ``normalized_mse``: the elites' mean-prediction MSE in normalised delta units, averaged over elites and
    dimensions (the trainer's holdout score restricted to the state); ``*_per_dim``: [obs] tensors;
    ``ensemble_normalized_mse``: the same for the mean of the elites' means.
    """
    means, _, mean, _, _ = _mixture(model, obs, act)
    s = _scale(model)
    member_err = ((means - next_obs) / s).square()  # [E, N, d]
    ens_err = ((mean - next_obs) / s).square()
    return {
        "normalized_mse": float(member_err.mean()),
        "normalized_mse_per_dim": member_err.mean(dim=(0, 1)),
        "mse_per_dim": (means - next_obs).square().mean(dim=(0, 1)),
        "ensemble_normalized_mse": float(ens_err.mean()),
    }


@torch.no_grad()
def k_step_error(model: DynamicsModel, obs_seq: torch.Tensor, act_seq: torch.Tensor, max_k: int | None = None) -> dict:
    """Open-loop k-step error: roll the elites' mean model from ``obs_seq[:, 0]`` through the real actions.

    ``obs_seq`` [B, T+1, obs] and ``act_seq`` [B, T, act] are real trajectories (no termination inside).
    Propagation is ``expectation`` (mean of elites' means), so the curve measures model bias, not noise.
    Returns ``mse`` [K, obs] (data units), ``normalized_mse`` [K, obs] (divided by the squared training
    std of the one-step delta, so k=1 matches :func:`one_step_error`'s ensemble figure) and ``k`` [K].
    """
    K = act_seq.shape[1] if max_k is None else min(max_k, act_seq.shape[1])
    s, errs = obs_seq[:, 0], []
    for k in range(K):  # a loop over horizon steps
        pred = model.predict(s, act_seq[:, k], model.elite_idx)
        s = pred["next_obs_mean"].mean(0)
        errs.append((s - obs_seq[:, k + 1]).square().mean(0))
    mse = torch.stack(errs)
    return {"k": torch.arange(1, K + 1), "mse": mse, "normalized_mse": mse / _scale(model).square()}


@torch.no_grad()
def uncertainty(model: DynamicsModel, obs, act) -> dict:
    """Mean epistemic (variance of the elites' means) and aleatoric (mean predicted variance) uncertainty,
    in normalised delta units, averaged over rows and dimensions; per-row values are ``*_per_row`` [N]."""
    _, _, _, epistemic, aleatoric = _mixture(model, obs, act)
    s2 = _scale(model).square()
    ep, al = (epistemic / s2).mean(-1), (aleatoric / s2).mean(-1)
    return {"epistemic_var": float(ep.mean()), "aleatoric_var": float(al.mean()), "epistemic_var_per_row": ep, "aleatoric_var_per_row": al}


@torch.no_grad()
def calibration(model: DynamicsModel, obs, act, next_obs) -> dict:
    """Share of true next-state coordinates inside mu +- 1 sigma and mu +- 2 sigma (Gaussian: 0.683, 0.954).

    ``coverage_*``: each elite's own Gaussian N(mu_m, sigma_m^2), the distribution the NLL fits and that a
    TS1/TS-inf particle samples from, averaged over elites. ``mixture_coverage_*``: the elites' moment-
    matched mixture (mean of means; variance = mean aleatoric + variance of the means). The mixture is
    typically *wider* than the truth needs, because the truth sits nearer the members' average than the
    members sit to each other. Per-dimension ``[obs]`` tensors are given for the member figures.
    """
    means, variances, mean, epistemic, aleatoric = _mixture(model, obs, act)
    z_m = (next_obs - means).abs() / variances.sqrt().clamp_min(1e-12)  # [E, N, d]
    z = (next_obs - mean).abs() / (epistemic + aleatoric).sqrt().clamp_min(1e-12)
    in1, in2 = (z_m <= 1).float(), (z_m <= 2).float()
    return {
        "coverage_1sigma": float(in1.mean()),
        "coverage_2sigma": float(in2.mean()),
        "coverage_1sigma_per_dim": in1.mean(dim=(0, 1)),
        "coverage_2sigma_per_dim": in2.mean(dim=(0, 1)),
        "mixture_coverage_1sigma": float((z <= 1).float().mean()),
        "mixture_coverage_2sigma": float((z <= 2).float().mean()),
    }


@torch.no_grad()
def model_error(model: DynamicsModel, obs, act, next_obs) -> dict:
    """Estimates of the model error eps_m of 000 section 3.3 / 003 (MBPO bound, inventory T7).

    003 defines ``eps_m = E_{s,a ~ D_env}[D_TV(p(s'|s,a) || p_theta(s'|s,a))]`` (000 takes a max over time
    steps of the same expectation, erratum 4). The real conditional p(s'|s,a) is unknown (and a point mass
    for deterministic simulators, against which the TV of any density is 1), so two documented proxies
    are reported, both on fresh real data (s, a, s'):

    - ``eps_m_tv``: ``E[D_TV(N(mu, Sigma) || N(s', Sigma))] = E[2 Phi(Delta / 2) - 1]``, the TV between the
      model's predictive (moment-matched over elites, diagonal Sigma) and the same Gaussian centred at
      the real outcome; Delta is the Mahalanobis distance ``||(mu - s') / sigma||``. It lies in [0, 1] and
      is 0 only when the prediction is exact relative to the model's own stated uncertainty. Gaussian
      models only (``nan`` for deterministic ones).
    - ``eps_m_l1``: ``E ||mu - s'||_1 / dim`` in normalised delta units, scale-free and defined for every model.
    """
    _, _, mean, epistemic, aleatoric = _mixture(model, obs, act)
    s = _scale(model)
    out = {"eps_m_l1": float(((mean - next_obs) / s).abs().mean())}
    var = epistemic + aleatoric
    if model.probabilistic:
        delta = ((mean - next_obs).square() / var.clamp_min(1e-12)).sum(-1).sqrt()
        out["eps_m_tv"] = float(torch.special.erf(delta / (2 * math.sqrt(2))).mean())  # 2 Phi(x) - 1 = erf(x / sqrt 2)
    else:
        out["eps_m_tv"] = float("nan")
    return out


def diagnostics_rows(model: DynamicsModel, obs, act, next_obs, obs_seq=None, act_seq=None, max_k: int | None = None, ood_obs=None, ood_act=None) -> list[dict]:
    """All diagnostics as flat rows for a CSV / :func:`plot_diagnostics`: one ``summary`` row and one
    ``k_step`` row per k (when trajectories are given). Per-dimension values get a ``_d{i}`` suffix."""
    summary: dict = {"diagnostic": "summary"}
    one = one_step_error(model, obs, act, next_obs)
    summary["one_step_normalized_mse"] = one["normalized_mse"]
    summary.update({f"one_step_mse_d{i}": v for i, v in enumerate(one["mse_per_dim"].tolist())})
    unc = uncertainty(model, obs, act)
    summary["epistemic_var"], summary["aleatoric_var"] = unc["epistemic_var"], unc["aleatoric_var"]
    if ood_obs is not None:
        summary["epistemic_var_ood"] = uncertainty(model, ood_obs, ood_act)["epistemic_var"]
    if model.probabilistic:
        cal = calibration(model, obs, act, next_obs)
        summary["coverage_1sigma"], summary["coverage_2sigma"] = cal["coverage_1sigma"], cal["coverage_2sigma"]
    summary.update(model_error(model, obs, act, next_obs))
    rows = [summary]
    if obs_seq is not None:
        ks = k_step_error(model, obs_seq, act_seq, max_k)
        for k, mse, nmse in zip(ks["k"].tolist(), ks["mse"], ks["normalized_mse"]):
            row = {"diagnostic": "k_step", "k": k, "k_step_normalized_mse": float(nmse.mean())}
            row.update({f"k_step_mse_d{i}": v for i, v in enumerate(mse.tolist())})
            rows.append(row)
    return rows


def _spread(n: int, m: int, device) -> torch.Tensor:
    """``min(n, m)`` indices spread evenly over ``range(n)``: a fixed subsample that draws no random numbers,
    so logging diagnostics never moves a run's random streams (exact resume)."""
    if n <= m:
        return torch.arange(n, device=device)
    return torch.linspace(0, n - 1, m, device=device).round().long()


@torch.no_grad()
def fresh_data_row(model: DynamicsModel, obs, act, next_obs, done, max_rows: int = 256, max_starts: int = 32, max_k: int = 10) -> dict:
    """The diagnostics of one model on real transitions it was not trained on, as one flat CSV row.

    ``obs, act, next_obs`` [N, ...] are consecutive real transitions in time order and ``done`` [N] marks the
    last step of an episode (terminated or truncated). The loops pass the transitions gathered since the
    previous model fit, *before* fitting on them: held-out data from the state distribution the model was
    used on (003's eps_m is an expectation over exactly that data). Kept cheap for every fit: at most
    ``max_rows`` rows (an even, non-random subsample) for the one-step figures, and ``max_starts`` open-loop
    rollouts of up to ``max_k`` steps for the compounding error, each ended where its real episode ends.

    Columns: ``one_step_nmse`` (normalised one-step MSE of the elites, :func:`one_step_error`),
    ``k_step_nmse_{k}`` (the expectation rollout's normalised MSE after k steps, :func:`k_step_error`),
    ``coverage_1sigma`` / ``coverage_2sigma`` (the elites' own Gaussians, Gaussian: 0.683 / 0.954) and
    ``mixture_coverage_*`` (:func:`calibration`, Gaussian models only), ``epistemic_var`` / ``aleatoric_var``
    (:func:`uncertainty`), ``eps_m_tv`` / ``eps_m_l1`` (:func:`model_error`), ``diag_rows``, ``diag_starts``.
    """
    dev = model.device
    obs, act, next_obs = obs.to(dev, torch.float32), act.to(dev, torch.float32), next_obs.to(dev, torch.float32)
    done = done.to(dev).bool()
    n = obs.shape[0]
    if n == 0:
        return {}
    idx = _spread(n, max_rows, dev)
    o, a, nx = obs[idx], act[idx], next_obs[idx]
    row: dict = {"diag_rows": int(idx.numel())}
    row["one_step_nmse"] = one_step_error(model, o, a, nx)["normalized_mse"]
    if model.probabilistic:
        cal = calibration(model, o, a, nx)
        row.update({k: cal[k] for k in ("coverage_1sigma", "coverage_2sigma", "mixture_coverage_1sigma", "mixture_coverage_2sigma")})
    unc = uncertainty(model, o, a)
    row["epistemic_var"], row["aleatoric_var"] = unc["epistemic_var"], unc["aleatoric_var"]
    row.update(model_error(model, o, a, nx))

    # open-loop rollouts from evenly spaced real states through the real actions, up to the episode's end
    starts = _spread(n, max_starts, dev)
    K = max_k
    steps = starts.unsqueeze(1) + torch.arange(K, device=dev)  # [S, K] row of the k-th step
    in_data = steps < n
    steps = steps.clamp_max(n - 1)
    ended_before = torch.cumsum(done[steps].long(), dim=1) - done[steps].long()  # episode ends before step k
    valid = in_data & (ended_before == 0)
    s, scale2 = obs[starts], _scale(model).square()
    row["diag_starts"] = int(starts.numel())
    for k in range(K):  # a loop over horizon steps; the starts are one batch
        ok = valid[:, k]
        if not bool(ok.any()):
            break
        s = model.predict(s, act[steps[:, k]], model.elite_idx)["next_obs_mean"].mean(0)
        err = ((s - next_obs[steps[:, k]]).square() / scale2).mean(-1)
        row[f"k_step_nmse_{k + 1}"] = float(err[ok].mean())
    return row


def holdout_curve(fit_rows: list[dict]) -> dict:
    """The trainer's per-epoch holdout MSE (mean over members) in a few numeric CSV columns: ``holdout_mse_e{e}``
    at epochs 1, 2, 4, 8, ... (powers of two, enough to draw the curve on a log axis) and ``holdout_mse_last``
    at the last epoch run."""
    out = {}
    e = 1
    while e <= len(fit_rows):
        out[f"holdout_mse_e{e}"] = fit_rows[e - 1]["holdout_mse"]
        e *= 2
    if fit_rows:
        out["holdout_mse_last"] = fit_rows[-1]["holdout_mse"]
    return out


def fit_summary(result) -> dict:
    """The columns of one :class:`dynarl.models.trainer.FitResult` for a model-fit row: the restored elites'
    holdout MSE, epochs run, last training loss and the per-epoch holdout curve (:func:`holdout_curve`)."""
    m = result.metrics
    return {
        "model_holdout_mse": m["model_holdout_mse"],
        "model_epochs": m["model_epochs"],
        "model_train_loss": m["model_train_loss"],
        **holdout_curve(result.rows),
    }


@torch.no_grad()
def fit_variance_scale(model: DynamicsModel, obs, act, next_obs, reward=None, levels=(0.5, 1.0, 1.5, 2.0)) -> torch.Tensor:
    """Per-dimension factor c on the predicted variance that calibrates the elites' Gaussians on held-out data.

    Recalibration as in Kuleshov et al. (2018), used for model-based RL by Malik et al. (2019); not in the
    seeds nor in PETS/MBPO. For each target dimension it picks c from a log grid (all candidates at once)
    so that the shares of |y - mu_m| / (c sigma_m) below ``levels`` best match the Gaussian ones in squared
    error. Noise-free simulators give heavy-tailed residuals (most tiny, a few large, e.g. at Pendulum's
    velocity clip), for which the NLL's variance is right on average but too wide for most rows; this
    corrects the typical row. Returns [target_dim] (a variance factor, c^2) for ``model.variance_scale``.
    """
    mean_n, logvar_n, _ = model(obs, act, model.elite_idx)
    target = model.target_normalizer.normalize(model.targets(obs, next_obs, reward))
    z = (mean_n - target).abs() * torch.exp(-0.5 * logvar_n)  # [E, N, D] at c = 1
    c = torch.logspace(-2, 2, 321, device=z.device)
    lv = torch.tensor(levels, device=z.device)
    goal = torch.erf(lv / math.sqrt(2))
    zs = z.reshape(-1, z.shape[-1]).T.sort(dim=1).values.contiguous()  # [D, E * N], sorted per dimension
    thresholds = (c.unsqueeze(1) * lv).reshape(1, -1).expand(zs.shape[0], -1).contiguous()  # [D, C * L]
    # share of |z| <= c * level for every dimension, candidate and level at once: [D, C, L]
    cover = torch.searchsorted(zs, thresholds, right=True).view(zs.shape[0], c.numel(), lv.numel()) / zs.shape[1]
    best = (cover - goal).square().sum(-1).argmin(1)  # [D]
    return c[best].square()
