"""Loading a 1M-transition HalfCheetah-v5 Minari dataset: seconds to load and memory held, against its raw size.

The dataset is written first (1,000 episodes x 1,000 steps with HalfCheetah-v5's spaces and dtypes: float64
observations of 17, float32 actions of 6, float64 rewards; synthetic values, since loading cost depends only
on sizes) into a temporary ``MINARI_DATASETS_PATH``. Then, in a fresh process, ``load_episodes`` and
``DatasetSource.from_episodes`` are timed, and the bytes the source holds and the process's peak RSS growth
are compared with the raw arrays' size (what the HDF5 file stores).

    python benchmarks/dataset_memory.py [--episodes 1000 --steps 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

DATASET = "bench/halfcheetah/synthetic-v0"


def write(episodes: int, steps: int) -> int:
    import gymnasium as gym
    import numpy as np

    from dynarl.data.datasets import write_dataset

    env = gym.make("HalfCheetah-v5")
    rng = np.random.default_rng(0)
    data, raw = [], 0
    for k in range(episodes):
        ep = {
            "obs": rng.standard_normal((steps + 1, 17)),
            "act": rng.uniform(-1, 1, (steps, 6)).astype(np.float32),
            "reward": rng.standard_normal(steps),
            "terminated": np.zeros(steps, bool),
            "truncated": np.r_[np.zeros(steps - 1, bool), True],
        }
        raw += sum(v.nbytes for v in ep.values())
        data.append(ep)
    write_dataset(DATASET, data, env, algorithm_name="synthetic", ref_min_score=-280.18, ref_max_score=12135.0)
    return raw


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def load() -> dict:
    import torch

    from dynarl.data.datasets import load_episodes
    from dynarl.sources.dataset import DatasetSource

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS: the peak below is this load's
    imported = _status_kb("VmRSS")
    start = time.perf_counter()
    episodes = load_episodes(DATASET)
    read_s = time.perf_counter() - start
    source = DatasetSource.from_episodes(episodes, torch.device("cpu"))
    del episodes
    total_s = time.perf_counter() - start
    held = source.observations.nbytes + source.obs_row.nbytes + source.next_row.nbytes + sum(v.nbytes for v in source.data.values())
    return {"transitions": len(source), "read_seconds": round(read_s, 2), "load_seconds": round(total_s, 2), "held_bytes": held,
            "rss_growth_bytes": (_status_kb("VmRSS") - imported) * 1024, "peak_rss_growth_bytes": (_status_kb("VmHWM") - imported) * 1024}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.load:
        print(json.dumps(load()))
        return
    with tempfile.TemporaryDirectory() as root:
        os.environ["MINARI_DATASETS_PATH"] = root
        start = time.perf_counter()
        raw = write(args.episodes, args.steps)
        write_s = time.perf_counter() - start
        out = subprocess.run([sys.executable, __file__, "--load"], capture_output=True, text=True, env=os.environ, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(raw_bytes=raw, write_seconds=round(write_s, 2), held_over_raw=round(result["held_bytes"] / raw, 3), rss_growth_over_raw=round(result["rss_growth_bytes"] / raw, 3), peak_rss_growth_over_raw=round(result["peak_rss_growth_bytes"] / raw, 3))
    print(json.dumps({"benchmark": "dataset_memory", **result}))


if __name__ == "__main__":
    main()
