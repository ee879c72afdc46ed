"""DQN speed: env-steps/s on CartPole-v1 at RL Baselines3 Zoo's settings (lr 2.3e-3, batch 64, buffer 100k,
learning starts 1k, train_freq 256 with 128 gradient steps, [256, 256]), dynarl against Stable-Baselines3
in the same run, one torch thread each (``--threads``). Prints one JSON line with ``speedup_vs_sb3``.

    python benchmarks/dqn_speed.py [--steps 20000] [--threads 1] [--repeats 3] [--device cpu|cuda] [--compile] [--bf16]

Each measurement is a whole ``learn(steps)`` from scratch in its own process (collection, exploration and
the 128-update rounds: everything a user waits for), timed from the first env step to the last, with the
same seed on both sides. ``--repeats R`` alternates the sides (A B A B) and reports medians; the speedup is
the median of the ratios of runs taken side by side. The figures also give the bytes per transition of each
replay buffer (dynarl stores each observation once). ``--compile`` adds a side with ``learner.compile=true``,
timed from the end of its first training round (which compiles) to the last step, so it excludes the fast
random steps before that round too: a conservative figure. ``--bf16`` adds a side with
``learner.precision=bf16 learner.compile=true``, timed the same way (bf16 matmuls change the numbers, not the
algorithm; on CPUs without AVX512-BF16 or AMX it is slower, not faster).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

ZOO = {"lr": 2.3e-3, "batch_size": 64, "buffer_size": 100_000, "learning_starts": 1_000, "gamma": 0.99, "train_freq": 256, "gradient_steps": 128,
       "target_update_interval": 10, "exploration_fraction": 0.16, "exploration_final_eps": 0.04, "net_arch": [256, 256]}  # fmt: skip


def _measure_dynarl(steps: int, threads: int, device: str, compile_: bool = False, precision: str = "fp32") -> dict:
    import torch

    import dynarl

    # one 1-episode evaluation at the end is all that runs besides training (SB3's learn evaluates nothing)
    agent = dynarl.DQN("CartPole-v1", seed=0, steps=steps, torch_threads=threads, device=device, quiet=True, eval_every=10**9, eval_episodes=1, log_every=10**9,
                       checkpoint_every=10**9, **{"learner.compile": compile_, "learner.precision": precision})  # fmt: skip
    start = ZOO["learning_starts"] + ZOO["train_freq"] if compile_ else 0
    if start:
        agent.learn(start)  # the compiling round
    t = time.perf_counter()
    agent.learn(steps)
    dt = time.perf_counter() - t
    return {"env_steps_per_s": (steps - start) / dt, "updates": agent.learner.num_updates, "threads": torch.get_num_threads(), "bytes_per_transition": agent.buffer.nbytes()}


def _measure_sb3(steps: int, threads: int, device: str) -> dict:
    import gymnasium as gym
    import torch
    from stable_baselines3 import DQN

    torch.set_num_threads(threads)
    z = ZOO
    model = DQN("MlpPolicy", gym.make("CartPole-v1"), learning_rate=z["lr"], batch_size=z["batch_size"], buffer_size=z["buffer_size"], learning_starts=z["learning_starts"],
                gamma=z["gamma"], train_freq=z["train_freq"], gradient_steps=z["gradient_steps"], target_update_interval=z["target_update_interval"],
                exploration_fraction=z["exploration_fraction"], exploration_final_eps=z["exploration_final_eps"], policy_kwargs={"net_arch": z["net_arch"]},
                seed=0, device=device, verbose=0)  # fmt: skip
    t = time.perf_counter()
    model.learn(steps)
    dt = time.perf_counter() - t
    buf = model.replay_buffer
    per_row = sum(getattr(buf, k).nbytes for k in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")) / buf.buffer_size
    return {"env_steps_per_s": steps / dt, "updates": model._n_updates, "threads": torch.get_num_threads(), "bytes_per_transition": per_row}


def _child(impl: str, steps: int, threads: int, device: str) -> None:
    if impl == "sb3":
        out = _measure_sb3(steps, threads, device)
    else:
        out = _measure_dynarl(steps, threads, device, compile_="compile" in impl, precision="bf16" if "bf16" in impl else "fp32")
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def _run(impl: str, steps: int, threads: int, device: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", impl, str(steps), str(threads), device], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{impl} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
        return
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu", help="both sides on this torch device (cpu, cuda)")
    p.add_argument("--compile", action="store_true", help="also measure dynarl with learner.compile=true")
    p.add_argument("--bf16", action="store_true", help="also measure dynarl with learner.precision=bf16 learner.compile=true")
    args = p.parse_args()
    try:
        import stable_baselines3

        sb3 = f"stable-baselines3 {stable_baselines3.__version__}"
    except ImportError as e:
        raise SystemExit(f"stable-baselines3 is not importable ({e}); pip install stable-baselines3") from None
    runs: dict[str, list[dict]] = {"dynarl": [], "sb3": []} | ({"dynarl_compile": []} if args.compile else {}) | ({"dynarl_bf16_compile": []} if args.bf16 else {})
    for _ in range(args.repeats):
        for impl in runs:
            runs[impl].append(_run(impl, args.steps, args.threads, args.device))
    result = {"benchmark": "dqn_speed", "env": "CartPole-v1", "settings": {**ZOO, "steps": args.steps}, "threads": args.threads, "device": args.device, "sb3": sb3,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"}  # fmt: skip
    for impl, rs in runs.items():
        result[impl] = {k: round(statistics.median(r[k] for r in rs), 2) for k in rs[0]} | {"runs": len(rs)}
    for ours, key in (("dynarl", "speedup_vs_sb3"), ("dynarl_compile", "speedup_vs_sb3_compile"), ("dynarl_bf16_compile", "speedup_vs_sb3_bf16_compile")):
        if ours in runs:  # the median of the ratios of runs taken side by side
            result[key] = round(statistics.median(a["env_steps_per_s"] / b["env_steps_per_s"] for a, b in zip(runs[ours], runs["sb3"])), 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
