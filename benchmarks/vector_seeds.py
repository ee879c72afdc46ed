"""Vectorised seeds: total env-steps/s of S seeds trained as one batched agent in one process, against the
same S seeds run one after another in one process, and against 2 processes of S/2 sequential seeds side by
side on the same cores, in the same session. Prints one JSON line per algorithm with
``speedup_vs_sequential`` (goal >= 3) and ``speedup_vs_parallel``.

    python benchmarks/vector_seeds.py [--algos sac,dqn,ppo] [--seeds 8] [--steps 1500] [--learning-starts 500]
    python benchmarks/vector_seeds.py --algos sac --seeds 64 --device cuda --sequential-seeds 4   # a GPU row

Every measurement is a fresh process: the agents are built, then ``train_step`` runs until every seed has
``--steps`` env steps (the first ``--learning-starts`` of them uniformly random, then one update per step
for SAC; DQN at its CartPole preset: 128 updates every 256 steps; PPO at its CartPole preset, which has no
random phase); the clock covers the training loop only
(no evaluation, logging or checkpoints on any side). Torch threads: 1 per process for the sequential and
parallel sides; the vectorised side is measured with 1 thread (the cores one sequential process uses) and
with 2 threads (the cores the two parallel processes use). SAC uses Pendulum-v1 with the standard
256x256 networks and batch 256; DQN and PPO use their CartPole-v1 presets; MBPO its Pendulum-v1 preset (10 SAC
updates per step, stacked across seeds; each seed's ensemble fitted every 250 steps and rolled out, in turn).

``--floor`` adds what no implementation could beat here: one seed's run again, untimed, with the FLOPs of every
matmul it runs (acting and updates, forward and backward) counted, and this core's matmul rate on one large
square product (``update_floor.py``). ``flops_bound_steps_per_s`` is the env-steps/s if those matmuls ran at that
rate and nothing else cost anything; over the sequential rate it gives ``ceiling_speedup_vs_sequential``, the
most any batching of the seeds on one thread could show (every seed runs the same matmuls either way).

``--precision bf16`` runs every side's learner with bf16 autocast (``learner.precision=bf16``); ``--floor`` then
rates the matmuls at this core's bf16 peak. ``--compile`` gives every side's learner ``learner.compile=true`` (each
gradient one compiled graph; on the vectorised side the map over seeds runs inside it); every run's first
``learning_starts + COMPILE_WARMUP`` env steps, which compile, then stay off the clock on every side (not PPO's,
which has no compile option).

``--device cuda`` puts every side's networks and replay on the GPU. ``--sequential-seeds K`` times only the
first K seeds on the sequential and parallel sides: their figure is a rate (env steps / s), which K seeds
give as well as all of them, and 64 sequential runs would take most of a GPU lease.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

TASKS = {
    "sac": ("Pendulum-v1", {"learner.hidden_sizes": "[256,256]", "batch_size": "256"}),
    "td3": ("Pendulum-v1", {"learner.hidden_sizes": "[256,256]", "batch_size": "256"}),
    "dqn": ("CartPole-v1", {}),
    "ppo": ("CartPole-v1", {}),
    "mbpo": ("Pendulum-v1", {}),  # its Pendulum preset: SAC 256x256 with 10 updates per step, a 7x4x200 ensemble
}
ON_POLICY = {"ppo"}  # no learning_starts: every step's action comes from the policy
COMPILE_WARMUP = 256  # env steps after learning_starts kept off the clock with --compile: DQN's first 128-update round comes within 256


def _worker(mode: str, algo: str, seeds: list[int], steps: int, learning_starts: int, threads: int, device: str, precision: str, compile_: bool = False) -> dict:
    import torch

    from dynarl.algos import build_config, get_algorithm
    from dynarl.algos.seeds import SeedVector

    env, overrides = TASKS[algo]
    cls = get_algorithm(algo)
    if algo not in ON_POLICY:
        overrides = dict(overrides, learning_starts=str(learning_starts))
    if precision != "fp32":
        overrides = dict(overrides, **{"learner.precision": precision})
    warm = 0
    if compile_ and algo not in ON_POLICY and mode != "flops":  # the same matmuls either way; counted eager
        overrides = dict(overrides, **{"learner.compile": "true"})
        warm = learning_starts + COMPILE_WARMUP  # compiling: off the clock
    configs = [build_config(algo, env, dict(overrides, seed=str(s), torch_threads=str(threads), device=device, quiet="true")) for s in seeds]
    if mode == "flops":  # seed 0 alone, untimed, its matmul FLOPs counted
        from update_floor import CountMatmulFlops, peak_gflop_per_s

        agent = cls(config=configs[0])
        with CountMatmulFlops() as counter:
            while agent.steps() < steps:
                agent.train_step()
        agent.close()
        return {"flops_per_seed_step": counter.flops / agent.steps(), "peak_gflop_per_s": peak_gflop_per_s(torch.bfloat16 if precision == "bf16" else torch.float32, repeats=25)}
    if mode == "vector":
        vector = SeedVector.from_configs(cls, configs)
        while vector.steps() < warm:
            vector.train_step()
        t, start = time.perf_counter(), vector.steps()
        while vector.steps() < steps:
            vector.train_step()
        seconds = time.perf_counter() - t
        env_steps = (vector.steps() - start) * len(seeds)
        updates = vector.agents[0].learner.num_updates
    else:
        seconds, env_steps = 0.0, 0
        for cfg in configs:
            agent = cls(config=cfg)
            while agent.steps() < warm:
                agent.train_step()
            t, start = time.perf_counter(), agent.steps()
            while agent.steps() < steps:
                agent.train_step()
            seconds += time.perf_counter() - t
            env_steps += agent.steps() - start
            updates = agent.learner.num_updates
            agent.close()
    return {"seconds": seconds, "env_steps": env_steps, "updates_per_seed": updates, "threads": torch.get_num_threads()}


def _run(mode: str, algo: str, seeds: list[int], args, threads: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, __file__, "--worker", mode, "--algos", algo, "--seed-list", ",".join(map(str, seeds)), "--steps", str(args.steps),
           "--learning-starts", str(args.learning_starts), "--threads", str(threads), "--device", args.device, "--precision", args.precision] + ["--compile"] * args.compile
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed: {err.strip().splitlines()[-1] if err.strip() else proc.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def measure(algo: str, args) -> dict:
    from dynarl.algos import get_algorithm
    from dynarl.algos.seeds import supported_names, supports

    seeds = list(range(args.seeds))
    row = {"benchmark": "vector_seeds", "algo": algo, "env": TASKS.get(algo, ("?",))[0], "seeds": args.seeds, "steps_per_seed": args.steps, "learning_starts": args.learning_starts, "device": args.device, "precision": args.precision,
           "compile": args.compile and algo not in ON_POLICY}
    if algo not in TASKS or not supports(get_algorithm(algo)):
        return row | {"result": f"not measured: {algo.upper()} does not train with vectorised seeds yet (supported: {', '.join(supported_names())})"}
    vector_1 = _result(_run("vector", algo, seeds, args, 1))
    vector_2 = _result(_run("vector", algo, seeds, args, 2))
    timed = seeds[: args.sequential_seeds or len(seeds)]
    sequential = _result(_run("sequential", algo, timed, args, 1))
    half = len(timed) // 2
    procs = [_run("sequential", algo, timed[:half], args, 1), _run("sequential", algo, timed[half:], args, 1)]
    t = time.perf_counter()
    parallel = [_result(p) for p in procs]
    parallel_wall = time.perf_counter() - t  # both processes side by side: the slower one sets the time
    parallel_sps = sum(p["env_steps"] for p in parallel) / max(max(p["seconds"] for p in parallel), 1e-9)

    def sps(r: dict) -> float:
        return r["env_steps"] / r["seconds"]

    best = max(sps(vector_1), sps(vector_2))
    floor = {}
    if args.floor:
        counted = _result(_run("flops", algo, seeds[:1], args, 1))
        bound = counted["peak_gflop_per_s"] * 1e9 / counted["flops_per_seed_step"]
        floor = {"matmul_mflop_per_seed_step": round(counted["flops_per_seed_step"] / 1e6, 2), "peak_gflop_per_s": round(counted["peak_gflop_per_s"], 1),
                 "flops_bound_steps_per_s": round(bound, 1), "ceiling_speedup_vs_sequential": round(bound / sps(sequential), 2)}
    return row | {
        "updates_per_seed": vector_1["updates_per_seed"],
        "vector_1_thread_steps_per_s": round(sps(vector_1), 1),
        "vector_2_threads_steps_per_s": round(sps(vector_2), 1),
        "sequential_1_thread_steps_per_s": round(sps(sequential), 1),
        "parallel_2x_sequential_steps_per_s": round(parallel_sps, 1),
        "parallel_wall_seconds": round(parallel_wall, 1),
        "speedup_vs_sequential_same_core": round(sps(vector_1) / sps(sequential), 2),
        "speedup_vs_sequential": round(best / sps(sequential), 2),
        "speedup_vs_parallel": round(best / parallel_sps, 2),
        "sequential_seeds_timed": len(timed),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    } | floor


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algos", default="sac,dqn,ppo")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--steps", type=int, default=1500, help="env steps per seed")
    p.add_argument("--learning-starts", type=int, default=500)
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="the learners' precision, every side (bf16: autocast matmuls)")
    p.add_argument("--floor", action="store_true", help="also count the matmul FLOPs per seed-step and print the ceiling they put on the speedup")
    p.add_argument("--compile", action="store_true", help="learner.compile=true on every side (compiling steps off the clock)")
    p.add_argument("--worker", choices=("vector", "sequential", "flops"), help=argparse.SUPPRESS)
    p.add_argument("--seed-list", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--device", default="cpu", help="every side on this torch device (cpu, cuda)")
    p.add_argument("--sequential-seeds", type=int, default=0, help="time only this many seeds (even) on the sequential and parallel sides (0: all)")
    args = p.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.algos, [int(s) for s in args.seed_list.split(",")], args.steps, args.learning_starts, args.threads, args.device, args.precision, args.compile)))
        return
    if args.seeds < 2 or args.seeds % 2:
        p.error("--seeds must be an even number >= 2 (the parallel side splits them over 2 processes)")
    if args.floor and args.device != "cpu":
        p.error("--floor rates the matmuls at this CPU core's peak; run it with --device cpu")
    if args.sequential_seeds < 0 or args.sequential_seeds % 2 or args.sequential_seeds > args.seeds:
        p.error("--sequential-seeds must be an even number between 2 and --seeds (or 0: all seeds)")
    for algo in args.algos.split(","):
        print(json.dumps(measure(algo.strip(), args)), flush=True)


if __name__ == "__main__":
    main()
