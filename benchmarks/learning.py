"""Learning benchmark: train ALGO on ENV for STEPS over several seeds; print one JSON line.

    python benchmarks/learning.py sac Pendulum-v1 --steps 20000 --seeds 0 1 2 3 4 [key=value ...]
    python benchmarks/learning.py iql HalfCheetah-v5 --steps 10000 dataset=local/halfcheetah/medium-v0   # gradient steps

Each seed is a full `dynarl train` run (folder under --out); the line reports the final deterministic
evaluation return per seed, their mean, min and interquartile mean, and wall-clock per run. With
``--reach BAR`` it also reports, per seed, the first step whose evaluation reached BAR (null: never). ``steps`` and
``clock`` name the budget: env steps for online runs, gradient steps for offline ones (a run with a dataset).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _offline(results: list[dict]) -> bool:
    """Whether the runs counted gradient steps (offline: no env steps taken)."""
    return all(r["env_steps"] == 0 for r in results)


def _rates(results: list[dict]) -> dict:
    """Env steps per second; an offline run reports its gradient steps per second instead."""
    if _offline(results):
        return {"gradient_steps_per_second": [round(r["gradient_steps"] / r["wall_seconds"], 1) for r in results]}
    return {"env_steps_per_second": [r["env_steps_per_second"] for r in results]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("algo")
    p.add_argument("env")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="runs/bench")
    p.add_argument("--reach", type=float, default=None, help="report the first step (of the run's clock) whose evaluation is >= this")
    args, overrides = p.parse_known_args()
    results, reached = [], []
    for seed in args.seeds:
        out = Path(args.out) / f"{args.algo}-{args.env}-{args.steps}-s{seed}-{int(time.time())}"
        cmd = [sys.executable, "-m", "dynarl.cli", "train", args.algo, "--env", args.env, "--steps", str(args.steps), "--seed", str(seed), "--out", str(out), "quiet=true", *overrides]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(proc.stderr)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        if args.reach is not None:
            with open(out / "metrics.csv", newline="") as f:
                rows = csv.DictReader(f)
                clock = rows.fieldnames[0]  # env_steps, or gradient_steps for an offline run
                hits = [int(r[clock]) for r in rows if r.get("eval/mean_reward") and float(r["eval/mean_reward"]) >= args.reach]
            reached.append(hits[0] if hits else None)
    finals = np.array([r["eval_return_mean"] for r in results])
    # interquartile mean: drop the lowest and highest quarter of the sorted runs (all runs below 4 seeds)
    cut = len(finals) // 4
    iqm = float(np.sort(finals)[cut : len(finals) - cut].mean())
    print(json.dumps({
        "benchmark": "learning", "algo": args.algo, "env": args.env, "steps": args.steps,
        "clock": "gradient_steps" if _offline(results) else "env_steps", "seeds": args.seeds,
        "final_eval_returns": [round(float(x), 1) for x in finals], "mean": round(float(finals.mean()), 1),
        "std": round(float(finals.std()), 1), "min": round(float(finals.min()), 1), "iqm": round(iqm, 1),
        "wall_seconds_per_run": [r["wall_seconds"] for r in results], **_rates(results),
        **({"reach": args.reach, "first_step_reaching": reached} if args.reach is not None else {}),
        **({"normalized_scores": [round(float(r["normalized_score"]), 1) for r in results], "normalized_mean": round(float(np.mean([r["normalized_score"] for r in results])), 1)} if "normalized_score" in results[0] else {}),
        "overrides": overrides, "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
    }))


if __name__ == "__main__":
    main()
