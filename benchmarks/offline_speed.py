"""CQL and IQL gradient updates per second, dynarl against d3rlpy, in the same run (obs 17, act 6, batch 256).

Both sides learn from the same random 100k-transition dataset (HalfCheetah's sizes), with their default networks
(two 256-unit hidden layers, twin critics) and their own minibatch sampling: dynarl's dataset source + learner
``update``, d3rlpy's ``fit`` (sampling from its replay buffer, logging off). Each measurement is a fresh
subprocess on ``--threads`` torch threads (1 by default), alternating A B A B; the median of each side is reported
and the ratio printed as ``speedup_vs_d3rlpy_cql`` / ``speedup_vs_d3rlpy_iql``.

d3rlpy needs its own environment (it pins gym); point ``--d3rlpy-python`` at that interpreter:

    python -m venv /tmp/d3venv && /tmp/d3venv/bin/pip install torch==2.13.0 d3rlpy
    python benchmarks/offline_speed.py --d3rlpy-python /tmp/d3venv/bin/python [--device cuda]

dynarl's side runs fp32 and eager by default; ``--precision bf16 --compile`` is its fastest CPU setting (the first
updates of each measurement's warm-up compile, outside the timed ones; d3rlpy runs fp32 and eager, its only mode).

On a GPU (``--device cuda``) both sides' dataset lives on the device; dynarl is timed to a sync after its last update.

``--floor`` (CPU) also counts the matmul FLOPs of one dynarl update and times a large square matmul on the same
threads (``update_floor.py``): ``{algo}_flops_bound_updates_per_s`` is the update rate if every matmul ran at that
rate, and ``ceiling_speedup_vs_d3rlpy_{algo}`` that bound over d3rlpy's measured rate, the most any implementation
of the same update at this precision could gain over d3rlpy here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

OBS, ACT, ROWS, BATCH = 17, 6, 100_000, 256


def _data():
    import numpy as np

    rng = np.random.default_rng(0)
    obs = rng.standard_normal((ROWS, OBS)).astype(np.float32)
    return {
        "obs": obs,
        "act": rng.uniform(-1, 1, (ROWS, ACT)).astype(np.float32),
        "reward": rng.standard_normal(ROWS).astype(np.float32),
        "next_obs": np.roll(obs, -1, axis=0),
        "terminated": np.zeros(ROWS, np.float32),
        "truncated": (np.arange(ROWS) % 1000 == 999).astype(np.float32),
    }


def worker_dynarl(algo: str, steps: int, warmup: int, precision: str, compile_: bool, device: str, floor: bool) -> str:
    import gymnasium as gym
    import torch

    from dynarl.learners.cql import CQLLearner, CQLLearnerConfig
    from dynarl.learners.iql import IQLLearner, IQLLearnerConfig
    from dynarl.process import keep_freed_memory
    from dynarl.sources.dataset import DatasetSource

    keep_freed_memory()  # as a run does when its agent is built (it moved neither update measurably here)
    torch.manual_seed(0)
    device = torch.device(device)
    source = DatasetSource(_data(), device)
    obs_space, act_space = gym.spaces.Box(-10, 10, (OBS,)), gym.spaces.Box(-1, 1, (ACT,))
    cfg_cls, learner_cls = (CQLLearnerConfig, CQLLearner) if algo == "cql" else (IQLLearnerConfig, IQLLearner)
    learner = learner_cls(cfg_cls(precision=precision, compile=compile_), obs_space, act_space, device)
    for _ in range(warmup):
        learner.update(source.sample(BATCH))
    start = time.perf_counter()
    for _ in range(steps):
        learner.update(source.sample(BATCH))
    learner.all_finite()  # one sync at the end, as the runner does at each log row
    rate = steps / (time.perf_counter() - start)
    if not floor:
        return str(rate)
    from update_floor import peak_gflop_per_s, update_floor

    flops, _, _ = update_floor(learner, source.sample(BATCH))
    peak = peak_gflop_per_s(torch.bfloat16 if precision == "bf16" else torch.float32) * 1e9
    return f"{rate} {peak / flops}"


def worker_d3rlpy(algo: str, steps: int, warmup: int, device: str) -> float:
    import d3rlpy
    import numpy as np

    d = _data()
    dataset = d3rlpy.dataset.MDPDataset(d["obs"], d["act"], d["reward"], d["terminated"], timeouts=d["truncated"])
    config = d3rlpy.algos.CQLConfig(batch_size=BATCH) if algo == "cql" else d3rlpy.algos.IQLConfig(batch_size=BATCH)
    agent = config.create(device=f"{device}:0")
    quiet = dict(logger_adapter=d3rlpy.logging.NoopAdapterFactory(), show_progress=False, save_interval=10**9)
    np.random.seed(0)
    agent.fit(dataset, n_steps=warmup, n_steps_per_epoch=warmup, **quiet)
    start = time.perf_counter()
    agent.fit(dataset, n_steps=steps, n_steps_per_epoch=steps, **quiet)
    return steps / (time.perf_counter() - start)


def _run(python: str, side: str, algo: str, args) -> list[float]:
    cmd = [python, __file__, "--worker", side, "--algo", algo, "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads), "--precision", args.precision, "--device", args.device]
    if args.compile:
        cmd.append("--compile")
    if args.floor and side == "dynarl":
        cmd.append("--floor")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{side} {algo} failed:\n{out.stderr[-2000:]}")
    return [float(v) for v in out.stdout.strip().splitlines()[-1].split()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", choices=("dynarl", "d3rlpy"))
    p.add_argument("--algo", choices=("cql", "iql"), default="cql")
    p.add_argument("--algos", default="iql,cql")
    p.add_argument("--steps", type=int, default=200, help="timed updates per measurement")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3, help="A B pairs per algorithm")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="dynarl's precision option")
    p.add_argument("--compile", action="store_true", help="dynarl's torch.compile option")
    p.add_argument("--d3rlpy-python", default=sys.executable, help="an interpreter with d3rlpy installed")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="both sides on this torch device")
    p.add_argument("--floor", action="store_true", help="also print the FLOP-bound update rate and the ceiling it puts on the speedup (CPU)")
    args = p.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        print(worker_dynarl(args.algo, args.steps, args.warmup, args.precision, args.compile, args.device, args.floor) if args.worker == "dynarl" else worker_d3rlpy(args.algo, args.steps, args.warmup, args.device))
        return
    results = {"device": args.device, "threads": args.threads, "steps": args.steps, "batch": BATCH, "obs": OBS, "act": ACT, "precision": args.precision, "compile": args.compile}
    for algo in args.algos.split(","):
        ours, theirs, bounds = [], [], []
        for _ in range(args.repeats):  # A B A B
            rate, *bound = _run(sys.executable, "dynarl", algo, args)
            ours.append(rate)
            bounds += bound
            theirs.append(_run(args.d3rlpy_python, "d3rlpy", algo, args)[0])
            print(f"{algo}: dynarl {ours[-1]:.1f} updates/s, d3rlpy {theirs[-1]:.1f} updates/s", file=sys.stderr, flush=True)
        a, b = statistics.median(ours), statistics.median(theirs)
        results.update({f"{algo}_dynarl_updates_per_s": round(a, 2), f"{algo}_d3rlpy_updates_per_s": round(b, 2), f"speedup_vs_d3rlpy_{algo}": round(a / b, 3)})
        if bounds:
            bound = statistics.median(bounds)
            results.update({f"{algo}_flops_bound_updates_per_s": round(bound, 2), f"ceiling_speedup_vs_d3rlpy_{algo}": round(bound / b, 3)})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
