"""Plots of world-model diagnostics: the rows of :mod:`dynarl.models.diagnostics` and the trainer, or a run's
``model_diagnostics.csv``, drawn into one PNG (``dynarl plot RUN`` calls it for runs that fit a model)."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

from dynarl.models.diagnostics import GAUSS_1SIGMA, GAUSS_2SIGMA


def _read_rows(rows_or_csv) -> list[dict]:
    if isinstance(rows_or_csv, (str, Path)):
        with open(rows_or_csv, newline="") as f:
            return list(csv.DictReader(f))
    return list(rows_or_csv)


def _num(row: dict, key: str) -> float | None:
    v = row.get(key)
    if v in (None, ""):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def plot_diagnostics(rows_or_csv, out_png: str | Path) -> Path:
    """Draw the diagnostics found in ``rows_or_csv`` (rows from :func:`diagnostics_rows` and/or the trainer's
    per-epoch rows, or a CSV of them) into one PNG: model fit per epoch, the compounding-error curve,
    calibration against the Gaussian levels, epistemic vs aleatoric variance. Missing panels are skipped.

    A run's ``model_diagnostics.csv`` (one row per model fit, indexed by ``env_steps``: :func:`fit_summary`
    and :func:`fresh_data_row`) is drawn over the run instead: the holdout curve of every fit, one- and
    k-step error, calibration, epistemic vs aleatoric variance and eps_m against env steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _read_rows(rows_or_csv)
    if any(_num(r, "env_steps") is not None for r in rows):
        return _plot_model_fits(rows, out_png, plt)
    fit = [(r_e, _num(r, "train_loss"), _num(r, "holdout_mse")) for r in rows if (r_e := _num(r, "epoch")) is not None]
    ksteps = [(k, _num(r, "k_step_normalized_mse")) for r in rows if (k := _num(r, "k")) is not None and _num(r, "k_step_normalized_mse") is not None]
    summary = next((r for r in rows if r.get("diagnostic") == "summary"), {})
    panels = []
    if fit:
        panels.append("fit")
    if ksteps:
        panels.append("k_step")
    if _num(summary, "coverage_1sigma") is not None:
        panels.append("calibration")
    if _num(summary, "epistemic_var") is not None:
        panels.append("uncertainty")
    if not panels:
        panels = ["empty"]

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "fit":
            ep = [f[0] for f in fit]
            ax.plot(ep, [f[2] for f in fit], marker="o", ms=3, label="holdout MSE (normalised)")
            _log_y(ax)
            ax.set_xlabel("epoch")
            ax.set_title("model fit")
            ax2 = ax.twinx()
            ax2.plot(ep, [f[1] for f in fit], color="tab:orange", alpha=0.6, label="train loss")
            ax2.set_ylabel("train loss", color="tab:orange")
            ax.legend(fontsize=7, loc="upper right")
        elif panel == "k_step":
            ax.plot([k for k, _ in ksteps], [v for _, v in ksteps], marker="o", ms=3)
            _log_y(ax)
            ax.set_xlabel("k (open-loop steps)")
            ax.set_ylabel("MSE (normalised)")
            ax.set_title("compounding error")
        elif panel == "calibration":
            got = [_num(summary, "coverage_1sigma"), _num(summary, "coverage_2sigma")]
            ax.bar([0, 1], got, width=0.4, label="measured")
            ax.bar([0.4, 1.4], [GAUSS_1SIGMA, GAUSS_2SIGMA], width=0.4, alpha=0.5, label="Gaussian")
            ax.set_xticks([0.2, 1.2], ["1 sigma", "2 sigma"])
            ax.set_ylim(0, 1)
            ax.set_title("calibration")
            ax.legend(fontsize=7)
        elif panel == "uncertainty":
            names = ["epistemic", "aleatoric"] + (["epistemic OOD"] if _num(summary, "epistemic_var_ood") is not None else [])
            vals = [_num(summary, "epistemic_var"), _num(summary, "aleatoric_var"), _num(summary, "epistemic_var_ood")][: len(names)]
            ax.bar(names, [v if v is not None else 0.0 for v in vals])
            _log_y(ax)
            ax.set_title("uncertainty (normalised var)")
        else:
            ax.text(0.5, 0.5, "no diagnostics in the rows", ha="center", va="center")
            ax.set_axis_off()
        ax.grid(alpha=0.3)
    return _save(fig, out_png)


def _log_y(ax) -> None:
    """A log y-axis when the panel holds a positive value (an ensemble of one has no epistemic variance: all
    zeros, which matplotlib cannot log-scale), else the linear one."""
    values = [float(y) for line in ax.get_lines() for y in line.get_ydata()] + [p.get_height() for p in ax.patches]
    if any(v > 0 for v in values):
        ax.set_yscale("log")


def _plot_model_fits(rows: list[dict], out_png: str | Path, plt) -> Path:
    """One panel per diagnostic over a run's model fits (rows of ``model_diagnostics.csv``)."""
    rows = [r for r in rows if _num(r, "env_steps") is not None]
    steps = [_num(r, "env_steps") for r in rows]

    def series(key):
        pts = [(x, v) for x, r in zip(steps, rows) if (v := _num(r, key)) is not None and math.isfinite(v)]
        return [p[0] for p in pts], [p[1] for p in pts]

    curves = []  # per fit: (env steps, epochs, holdout MSE)
    epoch_keys = [(int(k[len("holdout_mse_e"):]), k) for k in {k for r in rows for k in r} if re.fullmatch(r"holdout_mse_e\d+", k)]
    for x, r in zip(steps, rows):
        pts = sorted((e, v) for e, k in epoch_keys if (v := _num(r, k)) is not None)
        last, epochs = _num(r, "holdout_mse_last"), _num(r, "model_epochs")
        if last is not None and epochs is not None and (not pts or epochs > pts[-1][0]):
            pts.append((epochs, last))
        if pts:
            curves.append((x, [p[0] for p in pts], [p[1] for p in pts]))
    k_keys = sorted({k for r in rows for k in r if k.startswith("k_step_nmse_")}, key=lambda k: int(k.rsplit("_", 1)[1]))
    panels = [p for p, present in (
        ("fit", curves or series("model_holdout_mse")[0]),
        ("error", series("one_step_nmse")[0] or k_keys),
        ("calibration", series("coverage_1sigma")[0]),
        ("uncertainty", series("epistemic_var")[0]),
        ("eps_m", series("eps_m_tv")[0] or series("eps_m_l1")[0]),
    ) if present] or ["empty"]

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, panel in zip(axes[0], panels):
        if panel == "fit":
            if curves:
                for i, (x, e, c) in enumerate(curves):
                    ax.plot(e, c, marker="o", ms=2, color=cmap(i / max(len(curves) - 1, 1)), lw=1, label=f"{x:.0f} steps" if i in (0, len(curves) - 1) else None)
                ax.set_xscale("log", base=2)
                ax.set_xlabel("epoch")
                ax.legend(fontsize=7, title="fit at", title_fontsize=7)
            else:
                ax.plot(*series("model_holdout_mse"), marker="o", ms=3)
                ax.set_xlabel("environment steps")
            _log_y(ax)
            ax.set_title("holdout MSE (normalised) per fit")
        elif panel == "error":
            for i, key in enumerate(k_keys):
                k = int(key.rsplit("_", 1)[1])
                if k == 1 or k == len(k_keys) or k in (2, 5):
                    ax.plot(*series(key), marker="o", ms=2, color=cmap(i / max(len(k_keys) - 1, 1)), label=f"{k}-step (open loop)")
            if series("one_step_nmse")[0]:
                ax.plot(*series("one_step_nmse"), color="black", ls="--", lw=1, label="one-step (elites)")
            _log_y(ax)
            ax.set_xlabel("environment steps")
            ax.set_title("model error on fresh data (normalised MSE)")
            ax.legend(fontsize=7)
        elif panel == "calibration":
            for key, level, colour in (("coverage_1sigma", GAUSS_1SIGMA, "tab:blue"), ("coverage_2sigma", GAUSS_2SIGMA, "tab:orange")):
                ax.plot(*series(key), marker="o", ms=3, color=colour, label=f"within {key[-6]} sigma")
                ax.axhline(level, color=colour, ls=":", lw=1)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("environment steps")
            ax.set_title("calibration (dotted: Gaussian)")
            ax.legend(fontsize=7)
        elif panel == "uncertainty":
            ax.plot(*series("epistemic_var"), marker="o", ms=3, label="epistemic")
            ax.plot(*series("aleatoric_var"), marker="o", ms=3, label="aleatoric")
            _log_y(ax)
            ax.set_xlabel("environment steps")
            ax.set_title("uncertainty (normalised var)")
            ax.legend(fontsize=7)
        elif panel == "eps_m":
            ax.plot(*series("eps_m_tv"), marker="o", ms=3, label="eps_m (TV proxy)")
            ax.plot(*series("eps_m_l1"), marker="o", ms=3, label="eps_m (L1, normalised)")
            ax.set_xlabel("environment steps")
            ax.set_title("model error eps_m on fresh data")
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no model fits in the rows", ha="center", va="center")
            ax.set_axis_off()
        ax.grid(alpha=0.3)
    return _save(fig, out_png)


def _save(fig, out_png: str | Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = Path(out_png)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
