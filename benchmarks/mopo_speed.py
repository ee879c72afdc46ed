"""Seconds per 1k policy updates of MOPO and COMBO including their model rollouts, beside offline CQL in the same run.

All three learn from the same Hopper-v5 dataset (``--dataset``, default: 20k uniform-random transitions made here in a
temp folder). MOPO and COMBO run at OfflineRL-Kit's rollout settings (one round of 50,000 rollouts of length 5 per
1,000 updates, a 7-member 4x200 ensemble, SAC 256x256 / COMBO 3x256); the ensemble is fitted once beforehand with a
few epochs only (fitting is a one-off cost, reported apart and not part of the per-update figure). Each measurement
is a fresh subprocess on ``--threads`` torch threads (1 by default), repeated ``--repeats`` times alternating; the
medians are reported. ``rollout_share_of_sac_update`` = rollout seconds / SAC update seconds per 1k updates (the
issue's goal: <= 0.25). ``mopo_bf16`` is MOPO with ``rollout_precision=bf16`` (the rollouts and the penalty in
bfloat16; its SAC updates stay fp32), reported as ``rollout_share_of_sac_update_bf16``.

    python benchmarks/mopo_speed.py [--threads 1] [--updates 1000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def make_dataset(root: str) -> str:
    import gymnasium as gym
    import numpy as np

    from dynarl.data.datasets import write_dataset
    from dynarl.run.collect import random_behavior, rollout_episodes

    os.environ["MINARI_DATASETS_PATH"] = root
    env = gym.make("Hopper-v5", max_episode_steps=1000)
    episodes, n, seed = [], 0, 0
    while n < 20_000:
        ep = rollout_episodes(env, random_behavior(env.action_space, np.random.default_rng(seed)), 1, seed)[0]
        episodes.append(ep)
        n, seed = n + len(ep["act"]), seed + 1
    write_dataset("bench/hopper/random-v0", episodes, env, algorithm_name="random", ref_min_score=-20.272305, ref_max_score=3234.3)
    return "bench/hopper/random-v0"


def worker(algo: str, dataset: str, updates: int) -> dict:

    from dynarl.algos import get_algorithm

    common = {"dataset": dataset, "seed": 0, "quiet": True}
    if algo == "mopo_bf16":
        algo, common["rollout_precision"] = "mopo", "bf16"
    agent = get_algorithm(algo)(**common, **({"trainer.max_epochs": 5} if algo in ("mopo", "combo") else {}))
    out = {}
    if algo in ("mopo", "combo"):
        start = time.perf_counter()
        agent._record_fit(agent.trainer.fit(**agent._model_data()))
        out["fit_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        agent._generate_rollouts()  # one round per 1k updates at rollout_freq=1000
        out["rollout_seconds"] = (time.perf_counter() - start) * 1000 / agent.cfg.rollout_freq
        sample = agent.sample_batch
    else:
        sample = lambda: agent.dataset.sample(agent.cfg.batch_size)  # noqa: E731
    for _ in range(20):  # warm-up
        agent.learner.update(sample())
    start = time.perf_counter()
    for _ in range(updates):
        agent.learner.update(sample())
    out["update_seconds"] = (time.perf_counter() - start) * 1000 / updates
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--updates", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--dataset", help="a local Minari Hopper dataset id (default: a random one made in a temp folder)")
    p.add_argument("--worker", nargs=2, metavar=("ALGO", "DATASET"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(worker(args.worker[0], args.worker[1], args.updates)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset
        if dataset is None:
            env["MINARI_DATASETS_PATH"] = tmp
            dataset = make_dataset(tmp)
        runs: dict[str, list[dict]] = {"cql": [], "mopo": [], "mopo_bf16": [], "combo": []}
        for _ in range(args.repeats):
            for algo in runs:
                cmd = [sys.executable, __file__, "--worker", algo, dataset, "--threads", str(args.threads), "--updates", str(args.updates)]
                res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                runs[algo].append(json.loads(res.stdout.strip().splitlines()[-1]))
                print(algo, runs[algo][-1], flush=True)

    def med(algo, key):
        return statistics.median(r[key] for r in runs[algo])

    mopo_total = med("mopo", "update_seconds") + med("mopo", "rollout_seconds")
    combo_total = med("combo", "update_seconds") + med("combo", "rollout_seconds")
    result = {
        "threads": args.threads,
        "seconds_per_1k_updates_cql": round(med("cql", "update_seconds"), 2),
        "seconds_per_1k_updates_mopo": round(mopo_total, 2),
        "seconds_per_1k_updates_combo": round(combo_total, 2),
        "mopo_sac_update_seconds": round(med("mopo", "update_seconds"), 2),
        "rollout_seconds_per_1k_updates": round(med("mopo", "rollout_seconds"), 2),
        "rollout_share_of_sac_update": round(med("mopo", "rollout_seconds") / med("mopo", "update_seconds"), 3),
        "rollout_seconds_per_1k_updates_bf16": round(med("mopo_bf16", "rollout_seconds"), 2),
        "rollout_share_of_sac_update_bf16": round(med("mopo_bf16", "rollout_seconds") / med("mopo_bf16", "update_seconds"), 3),
        "mopo_vs_cql": round(mopo_total / med("cql", "update_seconds"), 3),
        "combo_vs_cql": round(combo_total / med("cql", "update_seconds"), 3),
        "model_fit_seconds_5_epochs": round(med("mopo", "fit_seconds"), 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
