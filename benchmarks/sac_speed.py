"""SAC speed: env-steps/s, gradient updates/s and peak memory at 1 update per env step, (256, 256)
networks, batch 256, on Pendulum-v1 and HalfCheetah-v5; Stable-Baselines3 with the same settings in
the same run when it is importable. Prints one JSON line.

    python benchmarks/sac_speed.py [--measure-steps 3000] [--envs Pendulum-v1 HalfCheetah-v5] [--threads 1] [--repeats 1] [--no-bf16] [--compile] [--device cpu|cuda]

dynarl is measured in fp32 (the default) and with `learner.precision=bf16` (bfloat16 autocast of the
networks' matmuls; weights, optimiser and losses stay fp32), and with `--compile` also with `learner.compile=true`
(each loss's gradient as one compiled graph; its first COMPILE_WARMUP updates, which compile, run before the timed
window), in fp32 and, unless `--no-bf16`, in bf16.

Each measurement runs in its own process (so peak RSS is its own): `learning_starts` random steps
first, then the timed window of `measure-steps` env steps, each followed by one gradient update.

`--repeats R` measures each side R times, in turn (A B A B), and reports medians; the speedups are the
medians of the ratios of runs taken side by side. `--threads N` torch threads on every side (dynarl as `torch_threads=N`; 0: torch's default, one per core or
`OMP_NUM_THREADS`); each measurement's `threads` is `torch.get_num_threads()` read inside its timed window.
Without stable-baselines3 the SB3 fields are absent and `sb3` says why.
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

LEARNING_STARTS = 1_000
COMPILE_WARMUP = 20


def _measure_dynarl(env_id: str, steps: int, threads: int, device: str, precision: str = "fp32", compile_: bool = False) -> dict:
    import torch

    import dynarl

    start = LEARNING_STARTS + (COMPILE_WARMUP if compile_ else 0)  # the compiling updates stay out of the clock
    agent = dynarl.SAC(env_id, seed=0, steps=start + steps, learning_starts=LEARNING_STARTS, batch_size=256, buffer_size=100_000,
                       eval_every=10**9, log_every=10**9, checkpoint_every=10**9, quiet=True, torch_threads=threads, device=device,
                       **{"learner.hidden_sizes": (256, 256), "learner.actor_lr": 3e-4, "learner.critic_lr": 3e-4, "learner.precision": precision, "learner.compile": compile_})
    agent.learn(start)
    updates0 = agent.learner.num_updates
    t = time.perf_counter()
    agent.learn(start + steps)
    dt = time.perf_counter() - t
    return {"env_steps_per_s": steps / dt, "updates_per_s": (agent.learner.num_updates - updates0) / dt, "threads": torch.get_num_threads()}


def _measure_sb3(env_id: str, steps: int, threads: int, device: str) -> dict:
    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    if threads:
        torch.set_num_threads(threads)

    class Clock(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps == LEARNING_STARTS:
                self.t0 = time.perf_counter()
                self.n0 = self.model._n_updates
            self.threads = torch.get_num_threads()  # the last read falls inside the timed window
            return True

    clock = Clock()
    model = SAC("MlpPolicy", gym.make(env_id), learning_starts=LEARNING_STARTS, batch_size=256, buffer_size=100_000, train_freq=1, gradient_steps=1,
                learning_rate=3e-4, policy_kwargs={"net_arch": [256, 256]}, seed=0, device=device, verbose=0)
    model.learn(LEARNING_STARTS + steps, callback=clock)
    dt = time.perf_counter() - clock.t0
    return {"env_steps_per_s": steps / dt, "updates_per_s": (model._n_updates - clock.n0) / dt, "threads": clock.threads}


def _child(impl: str, env_id: str, steps: int, threads: int, device: str) -> None:
    if impl == "sb3":
        out = _measure_sb3(env_id, steps, threads, device)
    else:
        out = _measure_dynarl(env_id, steps, threads, device, precision="bf16" if "bf16" in impl else "fp32", compile_="compile" in impl)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def _run(impl: str, env_id: str, steps: int, threads: int, device: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", impl, env_id, str(steps), str(threads), device], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{impl} on {env_id} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _medians(runs: list[dict]) -> dict:
    """Each figure's median over the runs of one side; ``threads`` as one count, or the counts seen."""
    out = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "threads"}
    counts = sorted({r["threads"] for r in runs})
    out["threads"] = counts[0] if len(counts) == 1 else counts
    out["runs"] = len(runs)
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
        return
    p = argparse.ArgumentParser()
    p.add_argument("--measure-steps", type=int, default=3_000)
    p.add_argument("--envs", nargs="+", default=["Pendulum-v1", "HalfCheetah-v5"])
    p.add_argument("--threads", type=int, default=1, help="torch threads for every measurement (0: torch's default)")
    p.add_argument("--no-bf16", dest="bf16", action="store_false", help="skip the learner.precision=bf16 measurement")
    p.add_argument("--repeats", type=int, default=1, help="measurements of each side, taken in turn; medians reported")
    p.add_argument("--compile", action="store_true", help="also measure dynarl with learner.compile=true")
    p.add_argument("--device", default="cpu", help="every side on this torch device (cpu, cuda)")
    args = p.parse_args()
    try:
        import stable_baselines3

        have_sb3, sb3 = True, f"stable-baselines3 {stable_baselines3.__version__}"
    except ImportError as e:
        have_sb3, sb3 = False, f"not measured: stable-baselines3 is not importable ({e}); pip install stable-baselines3"
    result = {"benchmark": "sac_speed", "settings": {"updates_per_step": 1, "hidden": [256, 256], "batch": 256, "learning_starts": LEARNING_STARTS, "measured_steps": args.measure_steps},
              "threads_requested": args.threads, "device": args.device, "sb3": sb3, "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "envs": {}}
    impls = ["dynarl"] + ["sb3"] * have_sb3 + ["dynarl_bf16"] * args.bf16 + ["dynarl_compile"] * args.compile + ["dynarl_bf16_compile"] * (args.bf16 and args.compile)
    for env_id in args.envs:
        runs: dict[str, list[dict]] = {impl: [] for impl in impls}
        for _ in range(args.repeats):  # in turn, A B C A B C: a drifting machine load slows every side alike
            for impl in impls:
                runs[impl].append(_run(impl, env_id, args.measure_steps, args.threads, args.device))
        row = {impl: _medians(rs) for impl, rs in runs.items()}
        for ours, key in (("dynarl", "speedup_vs_sb3"), ("dynarl_bf16", "speedup_vs_sb3_bf16"), ("dynarl_compile", "speedup_vs_sb3_compile"),
                          ("dynarl_bf16_compile", "speedup_vs_sb3_bf16_compile")):
            if have_sb3 and ours in runs:  # the median of the ratios of runs taken side by side
                row[key] = round(statistics.median(a["env_steps_per_s"] / b["env_steps_per_s"] for a, b in zip(runs[ours], runs["sb3"])), 2)
        result["envs"][env_id] = row
    if have_sb3:
        # the headline is the worst task: fp32, then bf16 autocast (learner.precision=bf16)
        result["speedup_vs_sb3"] = round(min(r["speedup_vs_sb3"] for r in result["envs"].values()), 2)
        if args.bf16:
            result["speedup_vs_sb3_bf16"] = round(min(r["speedup_vs_sb3_bf16"] for r in result["envs"].values()), 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
