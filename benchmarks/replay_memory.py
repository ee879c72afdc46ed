"""Replay memory of the value-based family: bytes per transition of DQN's buffer on CartPole-v1 and on a 10x10x6
uint8 observation (MinAtar's shape), and the peak RSS of a full 1M-transition buffer of the latter (goal < 700 MB),
beside Stable-Baselines3's ReplayBuffer bytes per transition for the same spaces. Prints one JSON line.

    python benchmarks/replay_memory.py [--transitions 1000000]

The buffer is the one ``dynarl.DQN`` builds (each observation stored once, uint8 kept as uint8, actions in one
byte); it is filled with 8 env streams of 100-step episodes, wrapping once, then sampled.
"""

from __future__ import annotations

import argparse
import json
import resource

import numpy as np


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--transitions", type=int, default=1_000_000)
    args = p.parse_args()
    import torch

    from dynarl.data.stream_replay import StreamReplayBuffer

    cpu = torch.device("cpu")
    cartpole = StreamReplayBuffer(1000, (4,), torch.float32, (), torch.uint8, 1, cpu)
    before = _rss_mb()
    n_envs, shape = 8, (10, 10, 6)
    buf = StreamReplayBuffer(args.transitions, shape, torch.uint8, (), torch.uint8, n_envs, cpu, n_step=3)
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 255, (n_envs, *shape), dtype=np.uint8)
    t = 0
    for _ in range(args.transitions // n_envs + args.transitions // (8 * n_envs)):  # fill, then wrap an eighth more
        t += 1
        nxt = rng.integers(0, 255, (n_envs, *shape), dtype=np.uint8)
        done = np.full(n_envs, t % 100 == 0)
        buf.add(obs, rng.integers(0, 6, n_envs), rng.random(n_envs).astype(np.float32), nxt, done, np.zeros(n_envs, bool))
        obs = nxt
    for _ in range(100):
        buf.sample(256)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sb3 = {"cartpole": 2 * 4 * 4 + 8 + 4 + 4 + 4, "uint8_10x10x6": 2 * 600 + 8 + 4 + 4 + 4}  # obs + next_obs + int64 action + float32 reward, done, timeout
    print(json.dumps({
        "benchmark": "replay_memory", "transitions": args.transitions, "valid_transitions": len(buf),
        "bytes_per_transition": {"cartpole": cartpole.nbytes(), "uint8_10x10x6": buf.nbytes()},
        "sb3_bytes_per_transition": sb3,
        "rss_before_buffer_mb": round(before, 1), "peak_rss_mb": round(peak, 1), "buffer_rss_mb": round(peak - before, 1),
        "goal_mb": 700,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
