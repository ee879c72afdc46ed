"""Trial-by-trial benchmark of the decision-time planners (PETS, POPLIN-A, POPLIN-P), as PETS reports them.

    python benchmarks/planning_trials.py pets --seeds 0 1 2 3 4 --trials 15 --settings mbrl-lib [key=value ...]

One trial is one training episode; trial 1 is the random one (``random_trials=1``). Each seed prints one
JSON line per finished trial (return, env steps, seconds since the start) as it ends, so a long run shows
its progress, then one JSON line per seed with all its trial returns and wall-clock, and a last line
with the mean over seeds of the return of the final trial (the issue's "mean by trial 15") and, per
seed, the mean of the last five trials.

``--settings preset`` runs the (algo, env) preset (CPU-sized); ``--settings mbrl-lib`` sets mbrl-lib's
cart-pole model and planner (7 Gaussian members of 4x200 SiLU, 5 elites, MBPO's per-layer weight decay,
batch 32, up to 50 epochs; CEM population 350, 10% elites, 5 iterations, horizon 15, 20 particles, TS1).
``key=value`` overrides go last, as on the command line. Seeds run one after another on one thread
unless ``torch_threads=N`` says otherwise: start one process per core to run seeds side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from dynarl.algos.pets import CARTPOLE
from dynarl.algos.registry import build_config, get_algorithm
from dynarl.config import apply_overrides, parse_overrides, validate
from dynarl.errors import ConfigError

MBRL_LIB_CARTPOLE = {
    "model.members": 7,
    "model.hidden_sizes": [200, 200, 200, 200],
    "model.weight_decay": [2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4],
    "trainer.num_elites": 5,
    "trainer.batch_size": 32,
    "trainer.max_epochs": 50,
    "planner.population_size": 350,
    "planner.elite_fraction": 0.1,
    "planner.num_iterations": 5,
    "planner.horizon": 15,
    "planner.particles": 20,
    "planner.propagation": "ts1",
}


def run_seed(algo: str, env: str, seed: int, trials: int, settings: dict, overrides: dict) -> dict:
    """Train one seed for ``trials`` episodes, printing each trial as it ends; return the seed's record."""
    cfg = build_config(algo, env, {**settings, "seed": seed, "steps": 10**9, "eval_every": 10**9, "quiet": True})
    apply_overrides(cfg, overrides, raw=True)
    validate(cfg)
    agent = get_algorithm(algo)(config=cfg)
    agent.collector.reset()
    returns, start = [], time.perf_counter()
    while agent.episodes < trials:
        before = agent.episodes
        agent.train_step()
        if agent.episodes > before:
            returns.append(float(agent.recent_returns[-1]))
            print(json.dumps({"algo": algo, "seed": seed, "trial": agent.episodes, "return": returns[-1],
                              "env_steps": agent.env_steps, "seconds": round(time.perf_counter() - start, 1)}), flush=True)
    return {"algo": algo, "env": env, "seed": seed, "trial_returns": returns, "env_steps": agent.env_steps,
            "wall_seconds": round(time.perf_counter() - start, 1), "model_fits": agent.model_fits}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("algo", choices=["pets", "poplin_a", "poplin_p"])
    p.add_argument("--env", default=CARTPOLE)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--trials", type=int, default=15)
    p.add_argument("--settings", choices=["preset", "mbrl-lib"], default="mbrl-lib")
    args, rest = p.parse_known_args()
    settings = {"torch_threads": 1, **(MBRL_LIB_CARTPOLE if args.settings == "mbrl-lib" else {})}
    records = []
    try:
        overrides = parse_overrides(rest)
        for seed in args.seeds:
            records.append(run_seed(args.algo, args.env, seed, args.trials, settings, overrides))
            print(json.dumps(records[-1]), flush=True)
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    finals = np.array([r["trial_returns"][-1] for r in records])
    print(json.dumps({
        "benchmark": "planning_trials", "algo": args.algo, "env": args.env, "settings": args.settings, "overrides": rest,
        "trials": args.trials, "seeds": args.seeds, "final_trial_returns": finals.round(1).tolist(),
        "mean_final_trial_return": round(float(finals.mean()), 1), "min_final_trial_return": round(float(finals.min()), 1),
        # one episode is a noisy figure: also the mean of each seed's last five trials
        "mean_last_5_trials_per_seed": [round(float(np.mean(r["trial_returns"][-5:])), 1) for r in records],
        "wall_seconds_per_seed": [r["wall_seconds"] for r in records],
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }))


if __name__ == "__main__":
    main()
