"""d3rlpy's CQL or IQL on one of our local Minari datasets, for a same-data comparison with dynarl's.

Runs under an interpreter with d3rlpy, gymnasium[mujoco] and h5py (not dynarl). The HDF5 file is read
directly, keeping Minari's N+1 observations per episode aligned (d3rlpy 2.8's ``get_minari`` concatenates the
N+1-row observation arrays and appears to shift every episode after the first; see anchors wave2 1.3).
Evaluation uses dynarl's episode seeds (seed + 1_000_003 + k) and the dataset's reference returns, so the
normalised score is comparable with a dynarl run's ``summary.json``.

    /tmp/d3venv/bin/python benchmarks/d3rlpy_same_data.py iql local/halfcheetah/medium-v0 --steps 10000 --seed 0
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

EVAL_SEED_OFFSET = 1_000_003


def read(dataset_id: str):
    import h5py
    import numpy as np

    root = Path(os.environ.get("MINARI_DATASETS_PATH") or Path.home() / ".minari" / "datasets") / dataset_id / "data"
    meta = json.loads((root / "metadata.json").read_text())
    obs, act, rew, term, trunc = [], [], [], [], []
    with h5py.File(root / "main_data.hdf5", "r") as f:
        for k in sorted(f, key=lambda name: int(name.split("_")[1])):
            ep = f[k]
            obs.append(ep["observations"][:-1])  # the N observations actions were taken in
            act.append(ep["actions"][()])
            rew.append(ep["rewards"][()])
            term.append(ep["terminations"][()])
            trunc.append(ep["truncations"][()])
    cat = lambda xs, dtype: np.concatenate(xs).astype(dtype)  # noqa: E731
    env_id = json.loads(meta["env_spec"])["id"]
    return env_id, meta, cat(obs, np.float32), cat(act, np.float32), cat(rew, np.float32), cat(term, np.float32), cat(trunc, np.float32)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("algo", choices=("cql", "iql"))
    p.add_argument("dataset")
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    import d3rlpy
    import gymnasium as gym
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    d3rlpy.seed(args.seed)
    env_id, meta, obs, act, rew, term, trunc = read(args.dataset)
    env = gym.make(env_id)  # before training: a missing MuJoCo fails now, not after the whole fit
    dataset = d3rlpy.dataset.MDPDataset(obs, act, rew, term, timeouts=trunc)
    scaler = d3rlpy.preprocessing.StandardObservationScaler()
    config = (d3rlpy.algos.CQLConfig if args.algo == "cql" else d3rlpy.algos.IQLConfig)(observation_scaler=scaler)
    agent = config.create(device="cpu:0")
    start = time.perf_counter()
    agent.fit(dataset, n_steps=args.steps, n_steps_per_epoch=args.steps, logger_adapter=d3rlpy.logging.NoopAdapterFactory(), show_progress=False)
    train_s = time.perf_counter() - start
    returns = []
    for k in range(args.eval_episodes):
        o, _ = env.reset(seed=args.seed + EVAL_SEED_OFFSET + k)
        done, ret = False, 0.0
        while not done:
            o, r, te, tr, _ = env.step(agent.predict(np.asarray(o, dtype=np.float32)[None])[0])
            ret += float(r)
            done = te or tr
        returns.append(ret)
    low, high = meta.get("ref_min_score"), meta.get("ref_max_score")
    mean = float(np.mean(returns))
    print(json.dumps({"benchmark": "d3rlpy_same_data", "library": f"d3rlpy {d3rlpy.__version__}", "algo": args.algo, "dataset": args.dataset, "seed": args.seed, "gradient_steps": args.steps,
                      "eval_return_mean": round(mean, 1), "normalized_score": round(100 * (mean - low) / (high - low), 1) if low is not None and high is not None else None,
                      "train_seconds": round(train_s, 1), "updates_per_s": round(args.steps / train_s, 2), "threads": args.threads}))


if __name__ == "__main__":
    main()
