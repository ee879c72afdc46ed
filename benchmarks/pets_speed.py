"""PETS planning speed; prints one JSON line.

    python benchmarks/pets_speed.py [--task cartpole|halfcheetah] [--device auto|cpu|cuda] [--threads 1] [--steps 10] [--no-compile]

Settings per ``--task``:

- ``cartpole`` (default; mbrl-lib ``pets_cartpole``): 7 Gaussian members of 4x200 SiLU with 5 elites, CEM
  with population 350, 10% elites, 5 iterations, horizon 15, 20 particles, TS1, on dynarl's continuous
  cart-pole; mbrl-lib's PETS is timed beside it in the same run when it is importable (below);
- ``halfcheetah`` (the original PETS half-cheetah, reference.md): 5 Gaussian members of 4x200 SiLU, CEM
  with population 500, 10% elites, 5 iterations, horizon 30, 20 particles, TS-inf, on HalfCheetah-v5: 0.4
  TFLOP of model forward per env step, meant for a GPU (``--device cuda``); on one idle CPU core 3 s (bf16) to 9 s (fp32) per step.

The model is first fitted on one random trial so that its predictions (and the plans) are realistic.

Measured in the same run, on the same model, for three planner builds:

- ``fp32``: ``DynamicsModel.predict`` in float32, eager (the reference path);
- ``bf16``: :class:`dynarl.planning.fast_model.PlanningModel` (every layer in bfloat16, the thin input and
  output normalised in float32), eager;
- ``bf16_compiled``: the same with ``torch.compile`` (bias and SiLU fused).

Each runs ``--steps`` real env steps of one episode (plan + execute the first action) after a warm-up plan;
the builds (and mbrl-lib) take turns, one env step each, so that a drifting machine load slows all alike.
``seconds_per_env_step`` is the fastest build's; ``speedup_vs_fp32`` compares it with the fp32 reference
of this run.

mbrl-lib (cart-pole only): its own PETS (``mbrl.planning.TrajectoryOptimizerAgent`` with its CEM, its
``GaussianMLP`` ensemble, its ``ModelEnv`` and cart-pole reward and termination, all from its
``pets_cartpole`` configuration files) is fitted on one random trial of its cart-pole and timed over the
same number of env steps, in this run, on the same device, at the same ``--threads``.
``speedup_vs_mbrl_lib`` (the fastest build) and ``speedup_vs_mbrl_lib_fp32`` divide its median seconds per
env step by dynarl's; ``threads`` gives ``torch.get_num_threads()`` read inside each side's timed steps.
When mbrl-lib is not importable both speedups are null and ``mbrl_lib`` says why. mbrl-lib 0.2.0 pins
``hydra-core==1.0.3`` and ``gymnasium==0.26.3``, which do not install beside dynarl on Python 3.11; it runs
with the pins relaxed: ``pip install --no-deps mbrl==0.2.0 && pip install hydra-core==1.3.2 omegaconf==2.3.0
termcolor tqdm`` (its Hydra configs are instantiated with ``_recursive_: false``, Hydra 1.0's behaviour).

``planner_fraction_of_bare_forward`` is the planner's throughput (model rows evaluated per second,
everything included: sampling, normalising,
TS1 member assignment, variance, reward and termination) over that of a bare eager ensemble forward
(baddbmm + SiLU chain on the elites' weights in the planner's precision) of the same rows, timed right
after each planned step (the median of the per-step ratios, so both sides of a ratio share the machine's load).
``returns`` are the real returns of the timed steps (the plan's quality: same model, same start state).
``achieved_tflops`` is the fastest build's model FLOPs per second (2 x in x out per layer and row, the
layers' matmuls only) and ``fraction_of_matmul_peak`` divides it by a large square matmul in the same
precision timed on the same device in this run (``matmul_peak_tflops``; design.md section 5).
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

TASKS = {
    # mbrl-lib pets_cartpole (timed beside dynarl when mbrl-lib is importable)
    "cartpole": {"env": "dynarl/ContinuousCartPole-v0", "members": 7, "elites": 5, "population_size": 350, "horizon": 15,
                 "propagation": "ts1", "random_steps": 200, "mbrl_lib": True},
    # the original PETS half-cheetah (Chua et al. 2018): 5 members, population 500, horizon 30, TS-inf
    "halfcheetah": {"env": "HalfCheetah-v5", "members": 5, "elites": 5, "population_size": 500, "horizon": 30,
                    "propagation": "ts_inf", "random_steps": 1000, "mbrl_lib": False},
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}  # a build's precision -> the dtype of its matmuls
TORCH_DEFAULT_THREADS = torch.get_num_threads()  # before anything sets it: torch's own default in this process


def _setup(task: dict, seed: int, device: torch.device):
    from dynarl.envs import make_env
    from dynarl.models import DynamicsModel, DynamicsModelConfig, ModelTrainer, ModelTrainerConfig

    env = make_env(task["env"], model_obs=True)
    low, high = env.action_space.low, env.action_space.high
    rng = np.random.default_rng(seed)
    rows = []
    obs, _ = env.reset(seed=seed)
    while len(rows) < task["random_steps"]:  # one random trial's worth of data (episodes restart on termination)
        act = rng.uniform(low, high).astype(np.float32)
        nxt, _, term, trunc, _ = env.step(act)
        rows.append((obs, act, nxt))
        obs = env.reset()[0] if term or trunc else nxt
    o, a, n = (torch.as_tensor(np.array(x), dtype=torch.float32, device=device) for x in zip(*rows))
    torch.manual_seed(seed)
    model = DynamicsModel(DynamicsModelConfig(members=task["members"]), o.shape[1], a.shape[1], device)
    ModelTrainer(model, ModelTrainerConfig(num_elites=task["elites"], max_epochs=20, batch_size=32), seed=seed).fit(o, a, n)
    return env, model


def _controller(task: dict, env, model, precision: str, compile: bool, seed: int):
    from dynarl.envs import get_task
    from dynarl.models.model_env import ModelEnv
    from dynarl.planning.fast_model import PlanningModel
    from dynarl.planning.mpc import MPCController, OpenLoopActions, PlannerConfig

    cfg = PlannerConfig(population_size=task["population_size"], elite_fraction=0.1, num_iterations=5, horizon=task["horizon"], particles=20,
                        propagation=task["propagation"], precision=precision, compile=compile)
    plan_model = model if precision == "fp32" and not compile else PlanningModel(model, precision, compile)
    dev = model.device
    g = torch.Generator(device=dev).manual_seed(seed)
    menv = ModelEnv(plan_model, get_task(task["env"]), propagation=cfg.propagation, generator=g)
    low, high = (torch.as_tensor(b, device=dev) for b in (env.action_space.low, env.action_space.high))
    return MPCController(menv, OpenLoopActions(low, high, cfg.horizon), cfg, g), cfg


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _flops_per_row(model) -> int:
    """Multiply-adds x 2 of one row through the network (the weights are [members, in, out])."""
    return sum(2 * layer.weight.shape[1] * layer.weight.shape[2] for layer in model.net.layers)


def _run(env, ctrl, steps: int, seed: int, bare, flops_per_row: int, out: dict):
    """Time ``steps`` planned env steps, yielding after the warm-up plan and after each step (so that the
    sides take turns, see :func:`_interleave`); after each, time a bare forward of the same number of rows
    (``bare(rows) -> seconds``), so each ratio compares two timings taken under the same machine load.
    The figures go into ``out`` when the episode ends."""
    obs, _ = env.reset(seed=seed + 1)
    ctrl.reset()
    t = time.perf_counter()
    ctrl.act(torch.as_tensor(obs)).cpu()  # warm-up (and compilation)
    warmup = time.perf_counter() - t
    yield
    obs, _ = env.reset(seed=seed + 1)
    ctrl.reset()
    plan_s, rows, ret, per_step, fractions = 0.0, 0, 0.0, [], []
    for _ in range(steps):
        before = ctrl.rows_evaluated
        t = time.perf_counter()
        act = ctrl.act(torch.as_tensor(obs)).cpu().numpy()  # the copy to the host waits for the device
        dt = time.perf_counter() - t
        plan_s += dt
        obs, r, term, trunc, _ = env.step(act)
        per_step.append(time.perf_counter() - t)
        threads = torch.get_num_threads()
        step_rows = ctrl.rows_evaluated - before
        rows += step_rows
        fractions.append(bare(step_rows) / dt)  # planner rows/s over bare rows/s
        ret += r
        if term or trunc:
            break
        yield
    out.update({
        "seconds_per_env_step": statistics.median(per_step),
        "rows_per_s": rows / plan_s,
        "tflops": rows / plan_s * flops_per_row / 1e12,
        "tflop_per_env_step": rows / len(per_step) * flops_per_row / 1e12,
        "fraction_of_bare_forward": statistics.median(fractions),
        "warmup_s": warmup,
        "return": ret,
        "steps": len(per_step),
        "threads": threads,
    })


def _interleave(sides) -> None:
    """Run the sides' generators in turn, one step each, until all are done: each side's steps are spread
    over the same stretch of time, so a machine whose load drifts slows them alike."""
    active = list(sides)
    while active:
        for side in list(active):
            try:
                next(side)
            except StopIteration:
                active.remove(side)


def _mbrl_lib_missing() -> str | None:
    """Why mbrl-lib cannot be measured here, or None."""
    try:
        import mbrl  # noqa: F401
        import mbrl.env.cartpole_continuous  # noqa: F401
        import mbrl.models  # noqa: F401
        import mbrl.planning  # noqa: F401
        import mbrl.util.common  # noqa: F401
        import omegaconf  # noqa: F401
    except ImportError as e:  # not installed, or installed with its own pins (hydra-core 1.0.3) on Python 3.11
        return f"not measured: mbrl-lib is not importable ({type(e).__name__}: {e}); see this script's docstring to install it"
    return None


def _mbrl_lib(steps: int, seed: int, device: torch.device, out: dict):
    """mbrl-lib's PETS at its ``pets_cartpole`` settings, after a fit on one random trial, timed like
    :func:`_run` (plan + env step per step, median; a generator that yields after the warm-up and each step)."""
    from pathlib import Path

    import mbrl
    import mbrl.env.cartpole_continuous as cartpole_env
    import mbrl.env.reward_fns as reward_fns
    import mbrl.env.termination_fns as termination_fns
    import mbrl.models
    import mbrl.planning
    import mbrl.util.common
    import omegaconf

    conf = Path(mbrl.__file__).parent / "examples" / "conf"
    model_cfg = omegaconf.OmegaConf.load(conf / "dynamics_model" / "gaussian_mlp_ensemble.yaml")
    del model_cfg["in_size"], model_cfg["out_size"]  # filled in from the env
    model_cfg["_recursive_"] = False  # Hydra 1.0 semantics: GaussianMLP instantiates its activation itself
    agent_cfg = omegaconf.OmegaConf.load(conf / "algorithm" / "pets.yaml")
    agent_cfg.agent["_recursive_"] = False  # the agent fills in its optimizer's bounds before instantiating it
    cem = {"_target_": "mbrl.planning.CEMOptimizer", "num_iterations": "${overrides.cem_num_iters}", "elite_ratio": "${overrides.cem_elite_ratio}",
           "population_size": "${overrides.cem_population_size}", "alpha": "${overrides.cem_alpha}", "lower_bound": "???", "upper_bound": "???",
           "return_mean_elites": True, "device": "${device}", "clipped_normal": "${overrides.cem_clipped_normal}"}  # its conf/action_optimizer/cem.yaml
    cfg = omegaconf.OmegaConf.create({"seed": seed, "device": str(device), "debug_mode": False, "algorithm": agent_cfg, "dynamics_model": model_cfg,
                                      "overrides": omegaconf.OmegaConf.load(conf / "overrides" / "pets_cartpole.yaml"), "action_optimizer": cem})
    env = cartpole_env.CartPoleEnv()
    env.reset(seed=seed)
    env.action_space.seed(seed)
    torch.manual_seed(seed)
    obs_shape, act_shape = env.observation_space.shape, env.action_space.shape
    rng = np.random.default_rng(seed)
    model = mbrl.util.common.create_one_dim_tr_model(cfg, obs_shape, act_shape)
    buffer = mbrl.util.common.create_replay_buffer(cfg, obs_shape, act_shape, rng=rng, obs_type=np.double, action_type=np.double, reward_type=np.double)
    mbrl.util.common.rollout_agent_trajectories(env, cfg.algorithm.initial_exploration_steps, mbrl.planning.RandomAgent(env), {}, replay_buffer=buffer)
    generator = torch.Generator(device=device).manual_seed(seed)
    model_env = mbrl.models.ModelEnv(env, model, termination_fns.cartpole, reward_fns.cartpole, generator=generator)
    trainer = mbrl.models.ModelTrainer(model, optim_lr=cfg.overrides.model_lr, weight_decay=cfg.overrides.model_wd)
    mbrl.util.common.train_model_and_save_model_and_data(model, trainer, cfg.overrides, buffer)
    agent = mbrl.planning.create_trajectory_optim_agent_for_model(model_env, cfg.algorithm.agent, num_particles=cfg.algorithm.num_particles)
    obs, _ = env.reset(seed=seed + 1)
    agent.reset()
    t = time.perf_counter()
    agent.act(obs)  # warm-up
    warmup = time.perf_counter() - t
    yield
    obs, _ = env.reset(seed=seed + 1)
    agent.reset()
    per_step, ret = [], 0.0
    for _ in range(steps):
        t = time.perf_counter()
        obs, r, term, trunc, _ = env.step(agent.act(obs))
        per_step.append(time.perf_counter() - t)
        threads = torch.get_num_threads()
        ret += r
        if term or trunc:
            break
        yield
    optimizer = agent.optimizer.optimizer
    out.update({
        "version": mbrl.__version__,
        "seconds_per_env_step": statistics.median(per_step),
        "warmup_s": warmup,
        "return": float(ret),
        "steps": len(per_step),
        "threads": threads,
        "settings": {"members": int(len(model)), "elites": len(model.model.elite_models), "hidden": int(cfg.dynamics_model.hid_size), "layers": int(cfg.dynamics_model.num_layers),
                     "population_size": int(optimizer.population_size), "elites_per_iteration": int(optimizer.elite_num), "num_iterations": int(optimizer.num_iterations),
                     "horizon": int(cfg.overrides.planning_horizon), "particles": int(cfg.algorithm.num_particles), "propagation": str(cfg.dynamics_model.propagation_method)},
    })


def _bare_forward(model, precision: str, batch: int):
    """``seconds(rows)``: a bare eager ensemble forward (baddbmm + SiLU per layer) on the elites' weights in
    ``precision``, in calls of ``batch`` rows (the planner's rows per horizon step) until ``rows`` are done."""
    dtype = DTYPES[precision]
    elites = model.elite_idx
    ws = [layer.weight[elites].detach().to(dtype) for layer in model.net.layers]
    bs = [layer.bias[elites].detach().to(dtype) for layer in model.net.layers]
    x = torch.randn(elites.numel(), batch // elites.numel(), ws[0].shape[1], device=model.device).to(dtype)

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
        _sync(model.device)
        t = time.perf_counter()
        for _ in range(max(1, round(rows / batch))):
            forward()
        _sync(model.device)
        return time.perf_counter() - t

    return seconds


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", choices=sorted(TASKS), default="cartpole", help="cartpole: mbrl-lib's settings; halfcheetah: the original PETS settings")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads, on both sides (0: torch's default)")
    p.add_argument("--steps", type=int, default=10, help="timed env steps per build")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile build")
    args = p.parse_args()
    torch.set_num_threads(args.threads or TORCH_DEFAULT_THREADS)
    from dynarl.errors import ConfigError
    from dynarl.seeding import resolve_device

    try:
        device = resolve_device(args.device)
    except ConfigError as e:
        raise SystemExit(f"--device {args.device}: {e}") from None
    task = TASKS[args.task]
    from dynarl.envs import make_env

    _, model = _setup(task, args.seed, device)
    flops_per_row = _flops_per_row(model)
    builds = {"fp32": ("fp32", False), "bf16": ("bf16", False)}
    if not args.no_compile:
        builds["bf16_compiled"] = ("bf16", True)
    results, sides = {}, []
    for name, (precision, compile) in builds.items():
        env = make_env(task["env"], model_obs=True)  # one env per side: the sides take turns
        ctrl, cfg = _controller(task, env, model, precision, compile, args.seed)
        bare = _bare_forward(model, precision, cfg.population_size * cfg.particles)
        results[name] = {}
        sides.append(_run(env, ctrl, args.steps, args.seed, bare, flops_per_row, results[name]))
    theirs = _mbrl_lib_missing() if task["mbrl_lib"] else f"not measured: no mbrl-lib comparison is set up for --task {args.task}"
    if theirs is None:
        theirs = {}
        sides.append(_mbrl_lib(args.steps, args.seed, device, theirs))
    _interleave(sides)
    best = min(results, key=lambda k: results[k]["seconds_per_env_step"])
    from update_floor import peak_gflop_per_s

    peak = peak_gflop_per_s(DTYPES[builds[best][0]], device) / 1e3
    seconds = results[best]["seconds_per_env_step"]
    ref = theirs["seconds_per_env_step"] if isinstance(theirs, dict) else None
    print(
        json.dumps(
            {
                "benchmark": "pets_speed",
                "task": args.task,
                "env": task["env"],
                "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
                "seconds_per_env_step": round(seconds, 4),
                "best_build": best,
                "speedup_vs_fp32": round(results["fp32"]["seconds_per_env_step"] / seconds, 3),
                "speedup_vs_mbrl_lib": None if ref is None else round(ref / seconds, 3),
                "speedup_vs_mbrl_lib_fp32": None if ref is None else round(ref / results["fp32"]["seconds_per_env_step"], 3),
                "mbrl_lib_seconds_per_env_step": None if ref is None else round(ref, 4),
                "mbrl_lib": {k: round(v, 4) if isinstance(v, float) else v for k, v in theirs.items()} if isinstance(theirs, dict) else theirs,
                "threads": {"dynarl": results[best]["threads"], "mbrl_lib": theirs["threads"] if isinstance(theirs, dict) else None},
                "threads_requested": args.threads,
                "planner_fraction_of_bare_forward": round(results[best]["fraction_of_bare_forward"], 3),
                "achieved_tflops": round(results[best]["tflops"], 4),
                "matmul_peak_tflops": round(peak, 4),
                "fraction_of_matmul_peak": round(results[best]["tflops"] / peak, 3),
                "model_tflop_per_env_step": round(results[best]["tflop_per_env_step"], 3),
                "builds": {k: {kk: round(vv, 4) if isinstance(vv, float) else vv for kk, vv in v.items()} for k, v in results.items()},
                "settings": {"members": task["members"], "elites": task["elites"], "hidden": list(model.cfg.hidden_sizes), "population_size": cfg.population_size, "elite_fraction": cfg.elite_fraction, "num_iterations": cfg.num_iterations, "horizon": cfg.horizon, "particles": cfg.particles, "propagation": cfg.propagation},
                "cpu": platform.processor() or platform.machine(),
                "cpu_count": os.cpu_count(),
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
