"""PPO training throughput on CartPole-v1: dynarl against Stable-Baselines3 in the same run.

Both use SB3's default PPO settings with 8 envs (n_steps 2048 per env, batch 64, 10 epochs, lr 3e-4,
GAE 0.95, clip 0.2, separate 64x64 tanh policy and value networks, grad-norm clip 0.5), one torch
thread, no evaluation. Env steps/s counts collection and updates together (whole iterations).

    python benchmarks/ppo_speed.py [--iterations 2] [--threads 1]

Prints one JSON line: ``{"dynarl_steps_per_s": ..., "sb3_steps_per_s": ..., "speedup_vs_sb3": ...}``
(the SB3 fields only when stable-baselines3 is importable).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

N_ENVS, N_STEPS = 8, 2048


def dynarl_speed(iterations: int, seed: int, **overrides) -> float:
    from dynarl.algos.on_policy import PPO

    agent = PPO("CartPole-v1", n_envs=N_ENVS, n_steps=N_STEPS, seed=seed, quiet=True, eval_every=10**9, log_every=10**9, checkpoint_every=10**9, **overrides)
    agent._reset_env()
    agent.train_step()  # warm-up iteration (allocations, first-call costs)
    start, steps = time.perf_counter(), agent.env_steps
    for _ in range(iterations):
        agent.train_step()
    speed = (agent.env_steps - steps) / (time.perf_counter() - start)
    agent.close()
    return speed


def sb3_speed(iterations: int, seed: int) -> float | None:
    try:
        from stable_baselines3 import PPO as SB3PPO
        from stable_baselines3.common.env_util import make_vec_env
    except ImportError:
        return None
    env = make_vec_env("CartPole-v1", n_envs=N_ENVS, seed=seed)
    model = SB3PPO("MlpPolicy", env, n_steps=N_STEPS, device="cpu", seed=seed, verbose=0)
    model.learn(N_ENVS * N_STEPS)  # warm-up iteration
    start = time.perf_counter()
    model.learn(iterations * N_ENVS * N_STEPS, reset_num_timesteps=False)
    speed = iterations * N_ENVS * N_STEPS / (time.perf_counter() - start)
    env.close()
    return speed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2, help="timed iterations of 8 x 2048 env steps each")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ours = dynarl_speed(args.iterations, args.seed)
    theirs = sb3_speed(args.iterations, args.seed)
    out = {
        "benchmark": "ppo_speed",
        "env": "CartPole-v1",
        "n_envs": N_ENVS,
        "n_steps": N_STEPS,
        "iterations": args.iterations,
        "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "dynarl_steps_per_s": round(ours, 1),
    }
    if theirs is not None:
        out.update(sb3_steps_per_s=round(theirs, 1), speedup_vs_sb3=round(ours / theirs, 2))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
