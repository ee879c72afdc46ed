"""Aggregate statistics over seeds with stratified bootstrap confidence intervals, and `dynarl compare`.

Follows Agarwal et al. 2021, "Deep Reinforcement Learning at the Edge of the Statistical Precipice"
(the ``rliable`` library), in plain numpy:

- scores are a matrix [runs, tasks] (or a list of per-task 1-D arrays when tasks have different run
  counts; a 1-D array is the runs of one task);
- IQM: the interquartile mean of all run x task scores, ``scipy.stats.trim_mean(scores, 0.25, axis=None)``;
- mean and median: of the per-task mean scores (rliable's ``aggregate_mean`` / ``aggregate_median``);
  with one task the median is taken over runs, since rliable's would equal the mean;
- optimality gap: ``gamma - mean(min(scores, gamma))``, i.e. the mean shortfall below ``gamma``;
- probability of improvement: P(X > Y) + P(X = Y)/2 per task (Mann-Whitney U / (n m)), averaged over tasks;
- confidence intervals: percentile intervals of the stratified bootstrap (runs resampled with replacement
  within each task), 50,000 replicates and 95% by default, as rliable's ``get_interval_estimates``.

Internally a sample is padded with NaN to [runs, tasks] so that every statistic works on a batch of
bootstrap replicates at once ([reps, runs, tasks]); real scores must be finite.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from dynarl.errors import DynarlError
from dynarl.run.logger import read_metrics

_CHUNK_ELEMENTS = 4_000_000  # bound on replicates x runs x tasks held at once (~32 MB of float64)


# --- scores as a NaN-padded [runs, tasks] matrix -------------------------------------------------------------


def _as_matrix(scores) -> np.ndarray:
    """[runs, tasks] float array from a 1-D array or list of numbers (one task), a 2-D array, or a list of
    per-task 1-D arrays (a list of lists is per task; shorter tasks padded with NaN). Rejects empty tasks
    and non-finite scores."""
    if isinstance(scores, np.ndarray) or not isinstance(scores, (list, tuple)) or not all(np.ndim(s) == 1 for s in scores):
        m = np.asarray(scores, dtype=np.float64)
        if m.ndim == 1:
            m = m[:, None]
        if m.ndim != 2:
            raise DynarlError(f"scores must be 1-D (runs) or 2-D (runs x tasks), got shape {m.shape}")
        tasks = [m[:, t] for t in range(m.shape[1])]
    else:
        tasks = [np.asarray(s, dtype=np.float64) for s in scores]
    if not tasks or any(t.size == 0 for t in tasks):
        raise DynarlError("scores are empty: every task needs at least one run")
    if not all(np.isfinite(t).all() for t in tasks):
        raise DynarlError("scores hold NaN or inf; drop runs that never evaluated before aggregating")
    m = np.full((max(t.size for t in tasks), len(tasks)), np.nan)
    for j, t in enumerate(tasks):
        m[: t.size, j] = t
    return m


def _scores(x) -> np.ndarray:
    """A batch of padded samples [..., runs, tasks] is used as is; anything else goes through _as_matrix."""
    return x if isinstance(x, np.ndarray) and x.ndim >= 3 else _as_matrix(x)


# --- aggregate metrics (each reduces the last two axes [runs, tasks]) --------------------------------------


def iqm(x) -> np.ndarray | float:
    """Interquartile mean of all scores: the mean of the middle 50% after dropping ``int(0.25 n)`` scores
    at each end (``scipy.stats.trim_mean(x, 0.25, axis=None)``, rliable's ``aggregate_iqm``)."""
    s = _scores(x)
    flat = np.sort(s.reshape(*s.shape[:-2], -1), axis=-1)  # NaN padding sorts last
    n = int(np.isfinite(s[(0,) * (s.ndim - 2)]).sum())  # the same count in every replicate
    cut = int(0.25 * n)
    return flat[..., cut : n - cut].mean(axis=-1)


def mean(x) -> np.ndarray | float:
    """Mean over tasks of the per-task mean score (rliable's ``aggregate_mean``)."""
    return np.nanmean(_scores(x), axis=-2).mean(axis=-1)


def median(x) -> np.ndarray | float:
    """Median over tasks of the per-task mean score (rliable's ``aggregate_median``); with a single task,
    the median over runs."""
    s = _scores(x)
    if s.shape[-1] == 1:
        return np.nanmedian(s[..., 0], axis=-1)
    return np.median(np.nanmean(s, axis=-2), axis=-1)


def optimality_gap(x, threshold: float = 1.0) -> np.ndarray | float:
    """Mean of ``max(threshold - score, 0)`` over all scores (rliable's ``aggregate_optimality_gap``,
    ``gamma - mean(min(scores, gamma))``); use ``threshold=100`` for D4RL-style normalized scores."""
    s = _scores(x)
    return np.nanmean(np.maximum(threshold - s, 0.0).reshape(*s.shape[:-2], -1), axis=-1)


# --- stratified bootstrap ----------------------------------------------------------------------------------


def _resample(m: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` stratified bootstrap samples [n, runs, tasks] of the padded matrix ``m``: each task's runs are
    drawn with replacement from that task only, keeping its run count (and its padding)."""
    runs, tasks = m.shape
    counts = np.isfinite(m).sum(axis=0)  # runs per task
    idx = rng.integers(0, counts, size=(n, runs, tasks))  # row draws, per task (column)
    sample = m[idx, np.arange(tasks)]
    sample[:, np.arange(runs)[:, None] >= counts[None, :]] = np.nan
    return sample


def _chunks(reps: int, elements_per_rep: int):
    """Replicate counts that keep each vectorised chunk under _CHUNK_ELEMENTS elements."""
    chunk = max(1, _CHUNK_ELEMENTS // elements_per_rep)
    for start in range(0, reps, chunk):
        yield min(chunk, reps - start)


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _check(reps: int, confidence: float) -> None:
    if reps < 1 or not 0 < confidence < 1:
        raise DynarlError(f"bootstrap needs reps >= 1 and 0 < confidence < 1 (got reps={reps}, confidence={confidence})")


def stratified_bootstrap_ci(scores, statistic: Callable = iqm, reps: int = 50_000, confidence: float = 0.95, rng: np.random.Generator | int | None = None) -> tuple[float, float]:
    """Percentile confidence interval of ``statistic`` under the stratified bootstrap (Agarwal et al. 2021,
    rliable's ``get_interval_estimates(method="percentile", task_bootstrap=False)``).

    ``scores``: [runs, tasks], a list of per-task 1-D arrays, or a 1-D array of runs of one task.
    ``statistic``: :func:`iqm`, :func:`mean`, :func:`median`, :func:`optimality_gap`, or any function that
    reduces the last two axes of a NaN-padded batch [reps, runs, tasks]. Replicates are vectorised and
    drawn in memory-bounded chunks."""
    _check(reps, confidence)
    rng = np.random.default_rng(rng)
    m = _as_matrix(scores)
    values = np.concatenate([np.asarray(statistic(_resample(m, n, rng))).reshape(-1) for n in _chunks(reps, m.size)])
    return _interval(values, confidence)


# --- probability of improvement ----------------------------------------------------------------------------


def _poi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y)/2 per task, averaged over tasks; x [..., n, tasks], y [..., m, tasks], NaN-padded
    (NaN compares false both ways, so padding drops out of the counts)."""
    a, b = x[..., :, None, :], y[..., None, :, :]
    u = (a > b).sum(axis=(-3, -2)) + 0.5 * (a == b).sum(axis=(-3, -2))  # Mann-Whitney U per task
    pairs = np.isfinite(x[(0,) * (x.ndim - 2)]).sum(axis=0) * np.isfinite(y[(0,) * (y.ndim - 2)]).sum(axis=0)
    return (u / pairs).mean(axis=-1)


def _paired(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_matrix(x), _as_matrix(y)
    if x.shape[1] != y.shape[1]:
        raise DynarlError(f"probability of improvement needs the same tasks on both sides (got {x.shape[1]} and {y.shape[1]})")
    return x, y


def probability_of_improvement(x, y) -> float:
    """P(X > Y) with ties counted 1/2: per task the Mann-Whitney U statistic over all run pairs divided by
    ``n m``, then averaged over tasks (Agarwal et al. 2021, rliable's ``probability_of_improvement``).
    ``x``, ``y``: runs of one task (1-D) or [runs, tasks] / per-task lists over the same tasks."""
    return float(_poi(*_paired(x, y)))


def probability_of_improvement_ci(x, y, reps: int = 50_000, confidence: float = 0.95, rng: np.random.Generator | int | None = None) -> tuple[float, float]:
    """Percentile CI of :func:`probability_of_improvement`, resampling each side's runs within each task."""
    _check(reps, confidence)
    rng = np.random.default_rng(rng)
    x, y = _paired(x, y)
    values = [_poi(_resample(x, n, rng), _resample(y, n, rng)) for n in _chunks(reps, x.shape[0] * y.shape[0] * x.shape[1])]  # pair comparisons
    return _interval(np.concatenate(values), confidence)


# --- a table of aggregates ---------------------------------------------------------------------------------


def aggregate_table(groups: dict, reps: int = 50_000, rng: np.random.Generator | int | None = None, confidence: float = 0.95, threshold: float | None = 1.0) -> list[dict]:
    """One row per group: ``{"group", "runs", "mean", "mean_low", "mean_high", "median", ..., "iqm", ...,
    "optimality_gap", ...}`` with stratified bootstrap CIs. ``groups`` maps a name to scores ([runs, tasks],
    per-task list or 1-D); ``threshold=None`` leaves the optimality gap out (it needs normalized scores)."""
    rng = np.random.default_rng(rng)
    metrics = {"mean": mean, "median": median, "iqm": iqm}
    if threshold is not None:
        metrics["optimality_gap"] = lambda s: optimality_gap(s, threshold)
    rows = []
    for name, scores in groups.items():
        m = _as_matrix(scores)
        row = {"group": name, "runs": int(np.isfinite(m).sum())}
        for key, f in metrics.items():
            row[key] = float(f(m[None])[0])  # m may hold padding, which only batches accept
            row[f"{key}_low"], row[f"{key}_high"] = stratified_bootstrap_ci(scores, f, reps, confidence, rng)
        rows.append(row)
    return rows


# --- run folders -------------------------------------------------------------------------------------------


def _load_json(path: Path) -> dict:
    try:
        out = json.loads(path.read_text())
    except FileNotFoundError:
        what = "the run has not finished (summary.json is written at the end of training)" if path.name == "summary.json" else "is it a dynarl run folder?"
        raise DynarlError(f"'{path.parent}' has no {path.name}; {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DynarlError(f"'{path}' is not valid JSON ({e}); rerun or drop that run") from None
    if not isinstance(out, dict):
        raise DynarlError(f"'{path}' is not a JSON object; rerun or drop that run")
    return out


def read_runs(run_dirs: Sequence[str | Path]) -> list[dict]:
    """Each run folder's ``summary.json`` (algo, env, seed, eval_return_mean, normalized_score for offline
    runs, ...) with ``config`` (its ``config.json``) and ``run_dir`` added."""
    runs = []
    for d in run_dirs:
        d = Path(d)
        if not d.is_dir():
            raise DynarlError(f"'{d}' is not a run folder (it is {'a file' if d.exists() else 'missing'}); give the folders that `dynarl train` wrote")
        config = _load_json(d / "config.json")
        runs.append({**_load_json(d / "summary.json"), "config": config, "run_dir": str(d)})
    return runs


def _lookup(run: dict, key: str) -> tuple[bool, object]:
    """``(True, value)`` of a summary key, else of a config key (dotted keys reach into nested config
    sections); ``(False, None)`` where the run has neither."""
    if key in run:
        return True, run[key]
    node = run["config"]
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def group_runs(runs: list[dict], keys: Sequence[str] = ("algo", "env")) -> dict[str, list[dict]]:
    """Runs by the values of ``keys`` (summary keys, or config keys such as ``learner.tau``), e.g.
    ``{"sac Pendulum-v1": [...]}``, in sorted order. A key that only some runs have (``penalty_coef`` for MOPO
    runs beside BC runs) reads ``-`` in the others' labels; a key that no run has is an error (a typo, mostly)."""
    found = {k: [_lookup(run, k) for run in runs] for k in keys}
    for k, lookups in found.items():
        if runs and not any(has for has, _ in lookups):
            raise DynarlError(f"cannot group by '{k}': no run has such a summary or config key (run '{runs[0]['run_dir']}', for one)")
    groups: dict[str, list[dict]] = {}
    for i, run in enumerate(runs):
        label = " ".join(str(found[k][i][1]) if found[k][i][0] else "-" for k in keys)
        groups.setdefault(label, []).append(run)
    return dict(sorted(groups.items()))


def _metrics(run_dir: str | Path) -> tuple[list[str], list[dict]]:
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise DynarlError(f"'{run_dir}' has no metrics.csv; is it a dynarl run folder?")
    return read_metrics(path)


def learning_curves(run_dirs: Sequence[str | Path], key: str = "eval/mean_reward") -> list[tuple[np.ndarray, np.ndarray]]:
    """Per run, (steps, values) of the evaluation rows of ``metrics.csv`` (rows where ``eval/mean_reward``
    is set); steps are the run's clock, the first column (env_steps, or gradient_steps offline)."""
    curves = []
    for d in run_dirs:
        columns, rows = _metrics(d)
        rows = [r for r in rows if r.get("eval/mean_reward", "") != "" and r.get(key, "") != ""]
        curves.append((np.array([float(r[columns[0]]) for r in rows]), np.array([float(r[key]) for r in rows])))
    return curves


# --- dynarl compare ----------------------------------------------------------------------------------------


def _group_scores(runs: list[dict], score: str, task_key: str | None) -> list[np.ndarray]:
    """A group's scores as per-task run arrays; tasks are envs unless the group is already one env."""
    by_task: dict[str, list[float]] = {}
    for run in runs:
        value = run.get(score)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise DynarlError(f"run '{run['run_dir']}' has no finite {score} in summary.json (it never evaluated?); drop it from the comparison")
        by_task.setdefault(str(run.get(task_key)) if task_key else "", []).append(float(value))
    return [np.array(v) for _, v in sorted(by_task.items())]


def _fmt(row: dict, key: str) -> str:
    return f"{row[key]:.4g} [{row[key + '_low']:.4g}, {row[key + '_high']:.4g}]"


def _bootstrap_band(curves: np.ndarray, reps: int, confidence: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Percentile band of the mean curve over seeds: whole runs resampled with replacement (per grid point)."""
    runs = curves.shape[0]
    means = [curves[rng.integers(0, runs, size=(n, runs))].mean(axis=1) for n in _chunks(reps, curves.size)]
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(np.concatenate(means), [tail, 100 - tail], axis=0)
    return low, high


def _plot_curves(groups: dict, key: str, clock: str, out: Path, reps: int, confidence: float, rng: np.random.Generator) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, runs in groups.items():
        curves = [c for c in learning_curves([r["run_dir"] for r in runs], key) if len(c[0])]
        if not curves:
            continue
        lo, hi = max(c[0][0] for c in curves), min(c[0][-1] for c in curves)  # the steps every run reached
        grid = np.linspace(lo, hi, 100) if hi > lo else np.array([hi])
        ys = np.stack([np.interp(grid, s, v) for s, v in curves])
        line = ax.plot(grid, ys.mean(axis=0), marker="o" if grid.size == 1 else None, label=f"{name} (n={len(curves)})")[0]
        if len(curves) > 1:
            band_lo, band_hi = _bootstrap_band(ys, reps, confidence, rng)
            ax.fill_between(grid, band_lo, band_hi, color=line.get_color(), alpha=0.2)
    ax.set_xlabel(clock.replace("_", " "))
    ax.set_ylabel(key)
    ax.set_title(f"mean over seeds, {confidence:.0%} bootstrap band")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_grouped_curves(run_dirs: Sequence[str | Path], group: Sequence[str], out: str | Path, reps: int = 2_000, seed: int = 0, confidence: float = 0.95) -> Path:
    """``dynarl plot --group``: one line per group of runs (the mean over its seeds) with a bootstrap band."""
    runs = read_runs(run_dirs)
    clocks = sorted({_metrics(r["run_dir"])[0][0] for r in runs})
    _plot_curves(group_runs(runs, group), "eval/mean_reward", " or ".join(clocks), Path(out), reps, confidence, np.random.default_rng(seed))
    return Path(out)


def _plot_intervals(rows: list[dict], metrics: dict[str, str], out: Path, confidence: float) -> None:
    """rliable-style interval plot: one panel per metric, one bar per group (point estimate and CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 0.6 * len(rows) + 1.4), squeeze=False)
    for ax, (key, title) in zip(axes[0], metrics.items()):
        for i, row in enumerate(rows):
            ax.barh(i, row[f"{key}_high"] - row[f"{key}_low"], left=row[f"{key}_low"], height=0.6, alpha=0.6, color=f"C{i}")
            ax.vlines(row[key], i - 0.3, i + 0.3, color="k")
        ax.set_yticks(range(len(rows)), [r["group"] for r in rows] if ax is axes[0][0] else [""] * len(rows))
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{confidence:.0%} stratified bootstrap CIs", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def compare(run_dirs: Sequence[str | Path], group: Sequence[str] = ("algo", "env"), out_dir: str | Path = ".", reps: int = 50_000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Aggregate finished runs by ``group`` and write ``results.md``, ``results.csv``, ``curves.png`` and
    ``intervals.png`` into ``out_dir`` (Agarwal et al. 2021 metrics with stratified bootstrap CIs).

    The score is ``normalized_score`` when every run has one (then the optimality gap below 100 is
    reported too), else ``eval_return_mean``. A group holding several envs treats them as tasks (stratified
    bootstrap over each env's runs), which needs normalized scores. With exactly two groups the probability
    of improvement of the first over the second is added (when both hold one task or the same envs). Returns ``{"score", "rows", "probability_of_improvement",
    "files"}``."""
    if not run_dirs:
        raise DynarlError("compare needs at least one run folder")
    _check(reps, confidence)
    runs = read_runs(run_dirs)
    normalized = all(isinstance(r.get("normalized_score"), (int, float)) and math.isfinite(r["normalized_score"]) for r in runs)
    score = "normalized_score" if normalized else "eval_return_mean"
    groups = group_runs(runs, group)
    task_key = None if "env" in group else "env"
    scores = {name: _group_scores(g, score, task_key) for name, g in groups.items()}
    if not normalized and any(len(s) > 1 for s in scores.values()):
        raise DynarlError("a group holds runs of several envs but the runs have no normalized_score, and raw returns of different envs cannot be aggregated; group by env too (e.g. --group algo,env)")
    rng = np.random.default_rng(seed)
    rows = aggregate_table(scores, reps, rng, confidence, threshold=100.0 if normalized else None)
    metrics = {"mean": "mean", "median": "median", "iqm": "IQM"} | ({"optimality_gap": "optimality gap (< 100)"} if normalized else {})

    poi = None
    if len(scores) == 2:
        (a, x), (b, y) = scores.items()
        envs = [{str(r.get(task_key)) for r in g} if task_key else {""} for g in groups.values()]
        if len(x) == len(y) == 1 or envs[0] == envs[1]:  # tasks pair up by env
            poi = {"a": a, "b": b, "p": probability_of_improvement(x, y)}
            poi["low"], poi["high"] = probability_of_improvement_ci(x, y, reps, confidence, rng)

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        files = {name: out / name for name in ("results.md", "results.csv", "curves.png", "intervals.png")}
        lines = [
            f"Score: `{score}` per run (summary.json); {confidence:.0%} stratified bootstrap CIs, {reps} replicates, seed {seed} (Agarwal et al. 2021).",
            "",
            f"| {' / '.join(group)} | runs | " + " | ".join(f"{t} of {score} [CI]" for t in metrics.values()) + " |",
            "|---|---:|" + "---:|" * len(metrics),
        ]
        lines += [f"| {r['group']} | {r['runs']} | " + " | ".join(_fmt(r, k) for k in metrics) + " |" for r in rows]
        if poi:
            lines += ["", f"Probability of improvement P({poi['a']} > {poi['b']}) = {poi['p']:.3f} [{poi['low']:.3f}, {poi['high']:.3f}]"]
        files["results.md"].write_text("\n".join(lines) + "\n")
        with open(files["results.csv"], "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]) + ["score"])
            w.writeheader()
            w.writerows({**r, "score": score} for r in rows)
        columns = [_metrics(r["run_dir"])[0] for r in runs]
        key = "eval/normalized_score" if normalized and all("eval/normalized_score" in c for c in columns) else "eval/mean_reward"
        _plot_curves(groups, key, " or ".join(sorted({c[0] for c in columns})), files["curves.png"], reps, confidence, rng)
        _plot_intervals(rows, metrics, files["intervals.png"], confidence)
    except OSError as e:
        raise DynarlError(f"cannot write the comparison into '{out}' ({e.strerror or e}); choose a folder you can write to") from None
    return {"score": score, "rows": rows, "probability_of_improvement": poi, "files": {k: str(v) for k, v in files.items()}}
