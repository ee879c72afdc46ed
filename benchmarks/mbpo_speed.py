"""MBPO's cost per env step at the original settings, split into model training, rollouts and policy updates.

    python benchmarks/mbpo_speed.py [--tasks InvertedPendulum-v5 Hopper-v5] [--measure-steps 500] [--threads 1]

For each task: the preset (the original MBPO settings: 7x4x200 model, 5 elites, fit every 250 steps, 100k
rollouts per fit, SAC 256x256 with G updates per step, 5% real data), run through its random steps, then
timed over ``--measure-steps`` learning steps (at least one model fit and round of rollouts). It prints one
JSON line per task with ``seconds_per_env_step`` and its split, and, as the in-run reference, the time of
one bare ``SACLearner.update`` on a real-only batch beside the per-update time inside MBPO
(``policy_update_overhead`` = MBPO's per-update time / bare; 1.0 means the mixing costs nothing).
``--threads N`` is passed as ``torch_threads=N`` (0: torch's default, one per core or ``OMP_NUM_THREADS``);
``threads`` is ``torch.get_num_threads()`` read inside the timed window. mbrl-lib's MBPO is not timed in
this run (``mbrl_lib`` says so): reference.md's 0.17 s per env step on InvertedPendulum was measured on
another day under another load, so no ratio against it is printed.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from dynarl.algos.mbpo import MBPO


def bare_update_seconds(agent: MBPO, n: int = 50) -> float:
    for _ in range(5):
        agent.learner.update(agent.buffer.sample(agent.cfg.batch_size))
    start = time.perf_counter()
    for _ in range(n):
        agent.learner.update(agent.buffer.sample(agent.cfg.batch_size))
    return (time.perf_counter() - start) / n


def measure(task: str, measure_steps: int, threads: int, precision: str) -> dict:
    agent = MBPO(task, seed=0, torch_threads=threads, quiet=True, eval_every=10**9, log_every=10**9, **{"learner.precision": precision})
    cfg = agent.cfg
    agent.learn(cfg.learning_starts - 1)  # the random phase: no model, no updates
    phases0, updates0 = dict(agent.phase_seconds), agent.learner.num_updates
    start = time.perf_counter()
    agent.learn(cfg.learning_starts - 1 + measure_steps)
    threads_in_force = torch.get_num_threads()
    total = time.perf_counter() - start
    split = {k: (agent.phase_seconds[k] - phases0[k]) / measure_steps for k in phases0}
    updates = agent.learner.num_updates - updates0
    per_update = (agent.phase_seconds["policy_update"] - phases0["policy_update"]) / updates
    bare = bare_update_seconds(agent)
    return {
        "benchmark": "mbpo_speed",
        "task": task,
        "precision": precision,
        "threads_requested": threads,
        "threads": threads_in_force,
        "measured_env_steps": measure_steps,
        "model_fits": agent.model_fits,
        "rollout_batch_size": cfg.rollout_batch_size,
        "updates_per_step": cfg.updates_per_step,
        "seconds_per_env_step": round(total / measure_steps, 4),
        "model_train_seconds_per_env_step": round(split["model_train"], 4),
        "rollout_seconds_per_env_step": round(split["rollout"], 4),
        "policy_update_seconds_per_env_step": round(split["policy_update"], 4),
        "seconds_per_update_in_mbpo": round(per_update, 5),
        "seconds_per_bare_sac_update": round(bare, 5),
        "policy_update_overhead": round(per_update / bare, 3),
        "mbrl_lib": "not measured in this run (no in-run mbrl-lib MBPO timing is set up; a figure from another day is not comparable)",
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["InvertedPendulum-v5", "Hopper-v5"])
    parser.add_argument("--measure-steps", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    args = parser.parse_args()
    for task in args.tasks:
        print(json.dumps(measure(task, args.measure_steps, args.threads, args.precision)), flush=True)


if __name__ == "__main__":
    main()
