"""Learning-curve plots from run folders' metrics.csv."""

from __future__ import annotations

import os
from pathlib import Path

from dynarl.errors import DynarlError
from dynarl.run.logger import read_metrics


def _read(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise DynarlError(f"'{run_dir}' has no metrics.csv; is it a dynarl run folder?")
    return read_metrics(path)[1]


def check_output(out: str | Path) -> Path:
    """``out`` if matplotlib can write that format into an existing, writable folder, else DynarlError."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backend_bases import FigureCanvasBase

    out = Path(out)
    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = out.suffix.lstrip(".").lower()
    if suffix not in formats:
        raise DynarlError(f"--out '{out}': unsupported image type '{out.suffix or '(none)'}'; use one of {', '.join('.' + f for f in sorted(formats))} (e.g. curves.png)")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise DynarlError(f"--out '{out}': folder '{folder}' does not exist; create it or choose another path")
    if not os.access(folder, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise DynarlError(f"--out '{out}': cannot write there (permission denied); choose a path you can write to")
    return out


def _series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in rows:
        if r.get(key) not in (None, ""):
            xs.append(float(r.get("env_steps") or r["gradient_steps"]))
            ys.append(float(r[key]))
    return xs, ys


MODEL_DIAGNOSTICS = "model_diagnostics.csv"


def plot_model_diagnostics(run_dirs: list[str | Path], out: str | Path) -> list[Path]:
    """For each run that logged ``model_diagnostics.csv`` (model fit per epoch, compounding error,
    calibration, epistemic vs aleatoric variance), draw it beside ``out`` as ``<out>_<run>_model.png``."""
    from dynarl.run.diagnostics_plot import plot_diagnostics

    out = Path(out)
    drawn = []
    for run_dir in run_dirs:
        csv_path = Path(run_dir) / MODEL_DIAGNOSTICS
        if csv_path.is_file():
            drawn.append(plot_diagnostics(csv_path, out.with_name(f"{out.stem}_{Path(run_dir).name}_model.png")))
    return drawn


def plot_runs(run_dirs: list[str | Path], out: str | Path) -> Path:
    """Evaluation return (and training episode return) against env steps, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    clocks = set()
    for run_dir in run_dirs:
        rows = _read(Path(run_dir))
        clocks.add("gradient steps" if rows and "gradient_steps" in rows[0] else "environment steps")
        label = Path(run_dir).name
        xs, ys = _series(rows, "eval/mean_reward")
        if xs:
            ax.plot(xs, ys, marker="o", ms=3, label=f"{label} (eval)")
        xs, ys = _series(rows, "rollout/ep_rew_mean")
        if xs:
            ax.plot(xs, ys, alpha=0.4, label=f"{label} (train)")
    ax.set_xlabel(" / ".join(sorted(clocks)) if len(clocks) > 1 else clocks.pop())  # runs of both clocks share the axis: say so
    ax.set_ylabel("return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(out)
    try:
        fig.savefig(out, dpi=110)
    except OSError as e:
        raise DynarlError(f"cannot write the plot to '{out}' ({e.strerror or e}); choose a path you can write to") from None
    finally:
        plt.close(fig)
    return out
