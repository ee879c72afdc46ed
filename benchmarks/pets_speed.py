"""PETS planning speed at mbrl-lib's cart-pole settings; prints one JSON line.

    python benchmarks/pets_speed.py [--threads 1] [--steps 10] [--no-compile]

Settings (mbrl-lib ``pets_cartpole``): 7 Gaussian members of 4x200 SiLU with 5 elites, CEM with population
350, 10% elites, 5 iterations, horizon 15, 20 particles, TS1, on dynarl's continuous cart-pole. The model
is first fitted on one random trial so that its predictions (and the plans) are realistic.

Measured in the same run, on the same model, for three planner builds:

- ``fp32``: ``DynamicsModel.predict`` in float32, eager (the reference path);
- ``bf16``: :class:`dynarl.planning.fast_model.PlanningModel` (every layer in bfloat16, the thin input and
  output normalised in float32), eager;
- ``bf16_compiled``: the same with ``torch.compile`` (bias and SiLU fused).

Each runs ``--steps`` real env steps of one episode (plan + execute the first action) after a warm-up plan.
``seconds_per_env_step`` is the fastest build's; ``speedup_vs_fp32`` compares it with the fp32 reference
of this run; ``speedup_vs_mbrl_lib`` compares it with mbrl-lib's 2.3 s per env step measured on this
machine kind (2 cores; reference.md), not in this run. ``planner_fraction_of_bare_forward`` is the
planner's throughput (model rows evaluated per second, everything included: sampling, normalising,
TS1 member assignment, variance, reward and termination) over that of a bare eager ensemble forward
(baddbmm + SiLU chain on the elites' weights in the planner's precision) of the same rows, timed right
after each planned step (the median of the per-step ratios, so both sides of a ratio share the machine's load).
``returns`` are the real returns of the timed steps (the plan's quality: same model, same start state).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

MBRL_LIB_SECONDS_PER_STEP = 2.3  # reference.md: mbrl-lib PETS at these settings, this machine kind, 2 cores


def _setup(seed: int):
    from dynarl.envs import make_env
    from dynarl.models import DynamicsModel, DynamicsModelConfig, ModelTrainer, ModelTrainerConfig

    env = make_env("dynarl/ContinuousCartPole-v0", model_obs=True)
    rng = np.random.default_rng(seed)
    rows = []
    obs, _ = env.reset(seed=seed)
    while len(rows) < 200:  # one random trial's worth of data (episodes restart on termination)
        act = rng.uniform(-1, 1, 1).astype(np.float32)
        nxt, _, term, trunc, _ = env.step(act)
        rows.append((obs, act, nxt))
        obs = env.reset()[0] if term or trunc else nxt
    o, a, n = (torch.as_tensor(np.array(x), dtype=torch.float32) for x in zip(*rows))
    torch.manual_seed(seed)
    model = DynamicsModel(DynamicsModelConfig(members=7), 4, 1)
    ModelTrainer(model, ModelTrainerConfig(num_elites=5, max_epochs=20, batch_size=32), seed=seed).fit(o, a, n)
    return env, model


def _controller(model, precision: str, compile: bool, seed: int):
    from dynarl.envs import get_task
    from dynarl.models.model_env import ModelEnv
    from dynarl.planning.fast_model import PlanningModel
    from dynarl.planning.mpc import MPCController, OpenLoopActions, PlannerConfig

    cfg = PlannerConfig(population_size=350, elite_fraction=0.1, num_iterations=5, horizon=15, particles=20, propagation="ts1", precision=precision, compile=compile)
    plan_model = model if precision == "fp32" and not compile else PlanningModel(model, precision, compile)
    g = torch.Generator().manual_seed(seed)
    menv = ModelEnv(plan_model, get_task("dynarl/ContinuousCartPole-v0"), propagation="ts1", generator=g)
    return MPCController(menv, OpenLoopActions(torch.tensor([-1.0]), torch.tensor([1.0]), cfg.horizon), cfg, g), cfg


def _run(env, ctrl, steps: int, seed: int, bare) -> dict:
    """Time ``steps`` planned env steps; after each, time a bare forward of the same number of rows
    (``bare(rows) -> seconds``), so each ratio compares two timings taken under the same machine load."""
    obs, _ = env.reset(seed=seed + 1)
    ctrl.reset()
    t = time.perf_counter()
    ctrl.act(torch.as_tensor(obs))  # warm-up (and compilation)
    warmup = time.perf_counter() - t
    obs, _ = env.reset(seed=seed + 1)
    ctrl.reset()
    plan_s, rows, ret, per_step, fractions = 0.0, 0, 0.0, [], []
    for _ in range(steps):
        before = ctrl.rows_evaluated
        t = time.perf_counter()
        act = ctrl.act(torch.as_tensor(obs)).numpy()
        dt = time.perf_counter() - t
        plan_s += dt
        obs, r, term, trunc, _ = env.step(act)
        per_step.append(time.perf_counter() - t)
        step_rows = ctrl.rows_evaluated - before
        rows += step_rows
        fractions.append(bare(step_rows) / dt)  # planner rows/s over bare rows/s
        ret += r
        if term or trunc:
            break
    return {
        "seconds_per_env_step": statistics.median(per_step),
        "rows_per_s": rows / plan_s,
        "fraction_of_bare_forward": statistics.median(fractions),
        "warmup_s": warmup,
        "return": ret,
        "steps": len(per_step),
    }


def _bare_forward(model, precision: str, batch: int):
    """``seconds(rows)``: a bare eager ensemble forward (baddbmm + SiLU per layer) on the elites' weights in
    ``precision``, in calls of ``batch`` rows (the planner's rows per horizon step) until ``rows`` are done."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    elites = model.elite_idx
    ws = [layer.weight[elites].detach().to(dtype) for layer in model.net.layers]
    bs = [layer.bias[elites].detach().to(dtype) for layer in model.net.layers]
    x = torch.randn(elites.numel(), batch // elites.numel(), ws[0].shape[1]).to(dtype)

    @torch.no_grad()
    def forward():
        h = x
        for i, (w, b) in enumerate(zip(ws, bs)):
            h = torch.baddbmm(b, h, w)
            if i < len(ws) - 1:
                h = F.silu(h)
        return h

    def seconds(rows: int) -> float:
        forward()
        t = time.perf_counter()
        for _ in range(max(1, round(rows / batch))):
            forward()
        return time.perf_counter() - t

    return seconds


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (mbrl-lib's reference figure used 2 cores)")
    p.add_argument("--steps", type=int, default=10, help="timed env steps per build")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile build")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    env, model = _setup(args.seed)
    builds = [("fp32", "fp32", False), ("bf16", "bf16", False)] + ([] if args.no_compile else [("bf16_compiled", "bf16", True)])
    results = {}
    for name, precision, compile in builds:
        ctrl, cfg = _controller(model, precision, compile, args.seed)
        bare = _bare_forward(model, "fp32" if name == "fp32" else "bf16", cfg.population_size * cfg.particles)
        results[name] = _run(env, ctrl, args.steps, args.seed, bare)
    best = min(results, key=lambda k: results[k]["seconds_per_env_step"])
    print(
        json.dumps(
            {
                "benchmark": "pets_speed",
                "seconds_per_env_step": round(results[best]["seconds_per_env_step"], 4),
                "best_build": best,
                "speedup_vs_fp32": round(results["fp32"]["seconds_per_env_step"] / results[best]["seconds_per_env_step"], 3),
                "speedup_vs_mbrl_lib": round(MBRL_LIB_SECONDS_PER_STEP / results[best]["seconds_per_env_step"], 3),
                "mbrl_lib_seconds_per_env_step": MBRL_LIB_SECONDS_PER_STEP,
                "planner_fraction_of_bare_forward": round(results[best]["fraction_of_bare_forward"], 3),
                "builds": {k: {kk: round(vv, 4) if isinstance(vv, float) else vv for kk, vv in v.items()} for k, v in results.items()},
                "settings": {"members": 7, "elites": 5, "hidden": [200] * 4, "population_size": cfg.population_size, "elite_fraction": cfg.elite_fraction, "num_iterations": cfg.num_iterations, "horizon": cfg.horizon, "particles": cfg.particles, "propagation": cfg.propagation},
                "cpu": platform.processor() or platform.machine(),
                "cpu_count": os.cpu_count(),
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
