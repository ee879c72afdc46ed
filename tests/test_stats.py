"""Aggregate statistics with stratified bootstrap CIs (Agarwal et al. 2021) and `compare` on fabricated runs.

Expected values are computed by hand (IQM follows scipy.stats.trim_mean(x, 0.25): int(0.25 n) scores
dropped at each end)."""

import csv
import itertools
import json

import numpy as np
import pytest

from dynarl.errors import DynarlError
from dynarl.run import stats
from dynarl.run.stats import compare, group_runs, iqm, learning_curves, mean, median, optimality_gap, probability_of_improvement, probability_of_improvement_ci, read_runs, stratified_bootstrap_ci


def test_iqm_trims_a_quarter_at_each_end():
    assert iqm(np.arange(1, 9)) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert iqm([10, 1, 9, 2, 8, 3, 7, 4, 6, 5]) == pytest.approx(5.5)  # n=10: drop 2 each end -> mean of 3..8
    assert iqm([7, 1, 6, 2, 5, 3, 4]) == pytest.approx(4.0)  # n=7: drop int(1.75)=1 each end -> mean of 2..6
    assert iqm([1, 2, 3, 1000]) == pytest.approx(2.5)  # the outlier is dropped
    assert iqm(np.arange(1, 9).reshape(4, 2)) == pytest.approx(4.5)  # over all runs x tasks


def test_mean_median_and_optimality_gap_by_hand():
    m = np.array([[1.0, 10.0, 4.0], [3.0, 20.0, 5.0], [2.0, 30.0, 6.0]])  # task means 2, 20, 5
    assert mean(m) == pytest.approx(9.0)
    assert median(m) == pytest.approx(5.0)  # median of the task means (rliable)
    assert median([3, 1, 2, 10]) == pytest.approx(2.5)  # one task: median over runs
    assert mean([[1, 2, 3], [10]]) == pytest.approx(6.0)  # per-task lists: mean of task means 2 and 10
    assert optimality_gap([0.5, 1.5, 0.8]) == pytest.approx((0.5 + 0 + 0.2) / 3)
    assert optimality_gap(np.array([[50.0, 120.0], [90.0, 100.0]]), threshold=100) == pytest.approx((50 + 0 + 10 + 0) / 4)
    with pytest.raises(DynarlError, match="NaN"):
        iqm([1.0, float("nan")])


def test_probability_of_improvement_counts_pairs_with_half_ties():
    # pairs x>y: 1>0; 2>0 and two ties; 3 beats all three -> (1 + 1 + 2*0.5 + 3) / 9
    assert probability_of_improvement([1, 2, 3], [2, 2, 0]) == pytest.approx(6 / 9)
    assert probability_of_improvement([2, 2, 0], [1, 2, 3]) == pytest.approx(3 / 9)
    assert probability_of_improvement([4, 5, 4], [5, 4, 4]) == pytest.approx(0.5)
    # per task, then averaged over tasks: task 2 has x=[5] against y=[1, 2] -> 1
    assert probability_of_improvement([[1, 2, 3], [5]], [[2, 2, 0], [1, 2]]) == pytest.approx((6 / 9 + 1) / 2)
    low, high = probability_of_improvement_ci([1, 2, 3, 4, 5], [1.5, 2.5, 3.5, 4.5, 0.5], reps=4000, rng=0)
    assert 0 <= low <= probability_of_improvement([1, 2, 3, 4, 5], [1.5, 2.5, 3.5, 4.5, 0.5]) <= high <= 1
    assert probability_of_improvement_ci([10, 11, 12], [1, 2], reps=1000, rng=0) == (1.0, 1.0)  # always better


def test_bootstrap_ci_of_the_mean_of_a_normal_sample():
    n, sd, true_mean = 2000, 3.0, 1.0
    x = np.random.default_rng(0).normal(true_mean, sd, size=n)
    low, high = stratified_bootstrap_ci(x, mean, reps=20_000, rng=1)
    assert low < true_mean < high
    assert (high - low) / (2 * 1.96 * sd / np.sqrt(n)) == pytest.approx(1.0, abs=0.15)


def test_bootstrap_ci_covers_the_iqm_at_about_the_stated_rate():
    """The IQM of N(0, 1) is 0 by symmetry; 200 samples of 40 runs, 95% intervals."""
    rng = np.random.default_rng(2)
    covered = sum(lo < 0 < hi for lo, hi in (stratified_bootstrap_ci(rng.normal(size=40), iqm, reps=1000, rng=rng) for _ in range(200)))
    assert 0.88 <= covered / 200 <= 0.99


def test_stratified_resampling_keeps_each_tasks_runs_and_counts(monkeypatch):
    """Task 0 scores lie in [0, 1), task 1 in [100, 101) with 3 runs of 5: no replicate mixes them."""
    monkeypatch.setattr(stats, "_CHUNK_ELEMENTS", 100)  # force many small chunks
    rng = np.random.default_rng(3)
    task0, task1 = rng.random(5), 100 + rng.random(3)
    seen = []

    def record(batch):
        seen.append(batch.copy())
        return mean(batch)

    stratified_bootstrap_ci([task0, task1], record, reps=1234, rng=0)
    batch = np.concatenate(seen)
    assert batch.shape == (1234, 5, 2) and len(seen) > 1
    assert np.isin(batch[:, :, 0], task0).all()
    assert np.isin(batch[:, :3, 1], task1).all() and np.isnan(batch[:, 3:, 1]).all()
    assert len(np.unique(batch[:, :, 0])) == 5  # every run of the task is drawn somewhere


def _fake_run(root, name, summary, metrics_header, metrics_rows):
    d = root / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"algo": summary["algo"], "env": summary["env"], "seed": summary["seed"], "learner": {"tau": 0.005}}))
    (d / "summary.json").write_text(json.dumps(summary))
    with open(d / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(metrics_header)
        w.writerows(metrics_rows)
    return d


def _exact_bootstrap_quantiles(values, qs):
    """Quantiles of the mean over all n^n equally likely resamples (exact, for small n)."""
    means = np.array([np.mean(c) for c in itertools.product(values, repeat=len(values))])
    return np.quantile(means, qs)


def test_compare_raw_returns_by_hand(tmp_path):
    returns = {"sac": [-200.0, -150.0, -180.0, -100.0], "td3": [-120.0, -130.0, -90.0, -170.0]}
    dirs = []
    for algo, values in returns.items():
        for seed, final in enumerate(values):
            rows = [[0, "", "", -1500], [500, -800 + seed, "", -1200], [1000, final, 0.5, ""], [1500, "", "", ""], [2000, final + 10, 0.5, -300]]
            summary = {"algo": algo, "env": "Pendulum-v1", "seed": seed, "eval_return_mean": final + 10}
            dirs.append(_fake_run(tmp_path, f"{algo}_{seed}", summary, ["env_steps", "eval/mean_reward", "eval/std_reward", "rollout/ep_rew_mean"], rows))
    steps, values = learning_curves([dirs[0]])[0]
    assert steps.tolist() == [500, 1000, 2000] and values.tolist() == [-800, -200, -190]

    out = compare(dirs, out_dir=tmp_path / "cmp", reps=20_000, seed=0)
    assert out["score"] == "eval_return_mean"
    sac, td3 = out["rows"]
    assert (sac["group"], sac["runs"], td3["group"]) == ("sac Pendulum-v1", 4, "td3 Pendulum-v1")
    # final returns +10: sac -190 -140 -170 -90, td3 -110 -120 -80 -160
    assert (sac["mean"], sac["median"], sac["iqm"]) == pytest.approx((-147.5, -155.0, -155.0))
    assert (td3["mean"], td3["median"], td3["iqm"]) == pytest.approx((-117.5, -115.0, -115.0))
    assert "optimality_gap" not in sac  # raw returns have no threshold
    lo_lo, lo_hi, hi_lo, hi_hi = _exact_bootstrap_quantiles([-190, -140, -170, -90], [0.015, 0.035, 0.965, 0.985])
    assert lo_lo <= sac["mean_low"] <= lo_hi and hi_lo <= sac["mean_high"] <= hi_hi
    # sac beats td3 in: -140 > -160; -90 > -110, -120, -160 -> 4 of 16 pairs
    poi = out["probability_of_improvement"]
    assert (poi["a"], poi["b"], poi["p"]) == ("sac Pendulum-v1", "td3 Pendulum-v1", pytest.approx(0.25))
    assert 0 <= poi["low"] <= 0.25 <= poi["high"] <= 1

    md = (tmp_path / "cmp" / "results.md").read_text()
    assert "eval_return_mean" in md and "| sac Pendulum-v1 | 4 | -147.5 [" in md and "optimality gap" not in md
    assert "P(sac Pendulum-v1 > td3 Pendulum-v1) = 0.250 [" in md
    with open(tmp_path / "cmp" / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["group"] for r in table] == ["sac Pendulum-v1", "td3 Pendulum-v1"]
    assert float(table[1]["mean"]) == pytest.approx(-117.5) and float(table[0]["mean_low"]) == pytest.approx(sac["mean_low"])
    for png in ("curves.png", "intervals.png"):
        assert (tmp_path / "cmp" / png).read_bytes()[:4] == b"\x89PNG"


def test_compare_normalized_scores_stratified_over_envs(tmp_path):
    scores = {("iql", "hopper"): [50.0, 70.0, 90.0], ("iql", "walker"): [100.0, 110.0], ("cql", "hopper"): [40.0, 60.0], ("cql", "walker"): [80.0, 120.0, 100.0]}
    dirs = []
    for (algo, env), values in scores.items():
        for seed, s in enumerate(values):
            rows = [[1000, s - 20, s / 2 - 10], [2000, "", ""], [3000, s, s / 2]]
            summary = {"algo": algo, "env": env, "seed": seed, "eval_return_mean": s / 2, "normalized_score": s}
            dirs.append(_fake_run(tmp_path, f"{algo}_{env}_{seed}", summary, ["gradient_steps", "eval/normalized_score", "eval/mean_reward"], rows))
    assert learning_curves([dirs[0]], key="eval/normalized_score")[0][1].tolist() == [30, 50]

    out = compare(dirs, group=("algo",), out_dir=tmp_path / "cmp", reps=5000, seed=1)
    assert out["score"] == "normalized_score"
    cql, iql = out["rows"]
    # iql: task means 70 and 105; all five scores 50 70 90 100 110 (IQM drops one each end); shortfall below 100: 50 30 10 0 0
    assert (iql["runs"], iql["mean"], iql["median"], iql["iqm"], iql["optimality_gap"]) == (5, pytest.approx(87.5), pytest.approx(87.5), pytest.approx(260 / 3), pytest.approx(18.0))
    assert (cql["mean"], cql["iqm"], cql["optimality_gap"]) == (pytest.approx(75.0), pytest.approx(80.0), pytest.approx(24.0))
    # P(cql > iql): hopper 1 of 6 pairs; walker 120 beats both (2), 100 ties 100 (0.5) -> 2.5 of 6
    assert out["probability_of_improvement"]["p"] == pytest.approx((1 / 6 + 2.5 / 6) / 2)
    md = (tmp_path / "cmp" / "results.md").read_text()
    assert "optimality gap" in md and "normalized_score" in md and "| iql | 5 | 87.5 [" in md


def test_read_runs_grouping_and_errors(tmp_path):
    d = _fake_run(tmp_path, "a", {"algo": "sac", "env": "E", "seed": 0, "eval_return_mean": 1.0}, ["env_steps", "eval/mean_reward"], [[10, 1.0]])
    runs = read_runs([d])
    assert runs[0]["config"]["learner"]["tau"] == 0.005 and runs[0]["run_dir"] == str(d)
    assert list(group_runs(runs, ("algo", "learner.tau"))) == ["sac 0.005"]
    with pytest.raises(DynarlError, match="no run has such a summary or config key"):
        group_runs(runs, ("learner.gamma",))
    m = _fake_run(tmp_path, "m", {"algo": "mopo", "env": "E", "seed": 0, "eval_return_mean": 1.0}, ["env_steps", "eval/mean_reward"], [[10, 1.0]])
    config = json.loads((m / "config.json").read_text())
    (m / "config.json").write_text(json.dumps({**config, "penalty_coef": 5.0}))
    # a key that only some runs have: the others read "-" (BC beside MOPO runs grouped by lambda)
    assert list(group_runs(read_runs([d, m]), ("algo", "penalty_coef"))) == ["mopo 5.0", "sac -"]
    (d / "summary.json").unlink()
    with pytest.raises(DynarlError, match="has no summary.json"):
        read_runs([d])
    e = _fake_run(tmp_path, "b", {"algo": "sac", "env": "F", "seed": 0, "eval_return_mean": 2.0}, ["env_steps", "eval/mean_reward"], [[10, 2.0]])
    f = _fake_run(tmp_path, "c", {"algo": "sac", "env": "G", "seed": 0, "eval_return_mean": 3.0}, ["env_steps", "eval/mean_reward"], [[10, 3.0]])
    with pytest.raises(DynarlError, match="group by env too"):
        compare([e, f], group=("algo",), out_dir=tmp_path / "cmp", reps=10)


def test_dynarl_compare_on_real_run_folders(tmp_path, capsys):
    """The command on folders dynarl itself wrote: one line per group, the four files, exit 0; a bad --reps exits 2."""
    from dynarl import SAC
    from dynarl.cli import main

    runs = []
    for seed in (0, 1):
        run = tmp_path / f"sac-{seed}"
        SAC("Pendulum-v1", seed=seed, learning_starts=50, batch_size=16, eval_every=100, eval_episodes=1, quiet=True, **{"learner.hidden_sizes": (16, 16)}).learn(200, run_dir=run)
        runs.append(str(run))
    assert main(["compare", *runs, "--out", str(tmp_path / "cmp"), "--reps", "500"]) == 0
    table = capsys.readouterr().out
    assert "| sac Pendulum-v1 | 2 |" in table and "eval_return_mean" in table
    assert {p.name for p in (tmp_path / "cmp").iterdir()} == {"results.md", "results.csv", "curves.png", "intervals.png"}
    assert main(["compare", *runs, "--reps", "0"]) == 2 and "--reps 0 is invalid" in capsys.readouterr().err
    # dynarl plot --group: one line per group, the mean over its seeds
    assert main(["plot", *runs, "--group", "algo,env", "--out", str(tmp_path / "grouped.png")]) == 0
    assert (tmp_path / "grouped.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_agrees_with_rliable_where_installed():
    """The optional cross-check the issue asks for: rliable's point estimates (its ``metrics`` module; scipy's
    trim_mean for the IQM) on ragged-free [runs, tasks] scores. Skipped where rliable is not installed; run here
    with rliable 1.2 it agreed to the last digit on every statistic."""
    rl = pytest.importorskip("rliable.metrics")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(10, 3)), rng.normal(size=(7, 3)) + 0.3
    assert iqm(x) == pytest.approx(rl.aggregate_iqm(x), abs=1e-12)
    assert stats.mean(x) == pytest.approx(rl.aggregate_mean(x), abs=1e-12)
    assert stats.median(x) == pytest.approx(rl.aggregate_median(x), abs=1e-12)
    assert optimality_gap(x, 1.0) == pytest.approx(rl.aggregate_optimality_gap(x, 1.0), abs=1e-12)
    assert probability_of_improvement(x, y) == pytest.approx(rl.probability_of_improvement(x, y), abs=1e-12)
