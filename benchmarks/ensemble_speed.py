"""Speed of the world-model ensemble; prints one JSON line.

    python benchmarks/ensemble_speed.py [--members 7] [--task HalfCheetah-v5] [--threads 1] [--device cpu]

Everything is measured in the same run, on the same shapes (PETS/MBPO network: 4x200 SiLU, Gaussian head):

- ``train_samples_per_s``: member-rows per second through a full training step (normalise, forward,
  NLL + per-layer L2 + bound penalty, backward, Adam), ``batch`` rows per member;
- ``rollout_rows_steps_per_s``: rows x steps per second of a TS1 ModelEnv rollout (``rows`` particles,
  ``horizon`` steps, the task's exact reward and termination functions), i.e. PETS's planning load;
- ``vectorised_vs_loop_ratio``: forward+backward time of M separately built nn.Linear/SiLU MLPs run in a
  Python loop, divided by that of the one-module ensemble (> 1: the ensemble is faster);
- ``gflops_fraction_of_bmm``: achieved GFLOP/s of the ensemble network's forward (bias, SiLU included,
  no autograd, ``rows / members`` rows per member) against a bare chain of ``torch.bmm`` of the same shapes.
  ``predict_fraction_of_bmm`` does the same for the full ``DynamicsModel.predict`` (normalisation,
  variance bounds, de-normalisation).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch
from torch import nn


def _time(fn, repeats: int, warmup: int = 3, sync=lambda: None) -> float:
    """Median seconds of ``fn`` over ``repeats`` timed blocks of a few calls each."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--members", type=int, default=7)
    p.add_argument("--hidden", type=int, nargs="+", default=[200, 200, 200, 200])
    p.add_argument("--task", default="HalfCheetah-v5")
    p.add_argument("--batch", type=int, default=256, help="training rows per member")
    p.add_argument("--rows", type=int, default=7000, help="rollout rows (population x particles)")
    p.add_argument("--horizon", type=int, default=15)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default, one per core or OMP_NUM_THREADS)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)

    from dynarl.envs import get_task, make_env
    from dynarl.models import DynamicsModel, DynamicsModelConfig
    from dynarl.models.model_env import ModelEnv

    env = make_env(args.task, model_obs=True)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    M, hidden = args.members, tuple(args.hidden)
    torch.manual_seed(0)
    cfg = DynamicsModelConfig(members=M, hidden_sizes=hidden, weight_decay=(2.5e-5,) + (5e-5,) * (len(hidden) - 1) + (1e-4,))
    model = DynamicsModel(cfg, obs_dim, act_dim, dev)
    model.fit_normalizers(torch.randn(1000, obs_dim, device=dev), torch.randn(1000, act_dim, device=dev), torch.randn(1000, obs_dim, device=dev))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)

    # ---- training step
    B = args.batch
    obs, act, nxt = (torch.randn(M, B, d, device=dev) for d in (obs_dim, act_dim, obs_dim))

    def train_step():
        total, _ = model.loss(obs, act, nxt)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

    t_train = _time(train_step, args.repeats, sync=sync)

    # ---- vectorised forward+backward vs a Python loop over separately built members
    in_dim, out_dim = obs_dim + act_dim, 2 * obs_dim
    dims = (in_dim, *hidden, out_dim)

    def member_mlp():
        layers = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers.append(nn.SiLU())
        return nn.Sequential(*layers).to(dev)

    loop_members = [member_mlp() for _ in range(M)]
    x = torch.randn(M, B, in_dim, device=dev)

    def vec_fb():
        model.net.zero_grad(set_to_none=True)
        model.net(x).square().mean().backward()

    def loop_fb():
        for mlp in loop_members:
            mlp.zero_grad(set_to_none=True)
        sum(mlp(x[m]).square().mean() for m, mlp in enumerate(loop_members)).backward()

    t_vec, t_loop = _time(vec_fb, args.repeats, sync=sync), _time(loop_fb, args.repeats, sync=sync)

    # ---- forward GFLOP/s against bare bmm of the same shapes
    rows_per_member = args.rows // M
    xf = torch.randn(M, rows_per_member, in_dim, device=dev)
    weights = [layer.weight.detach().clone() for layer in model.net.layers]
    flops = 2 * M * rows_per_member * sum(a * b for a, b in zip(dims[:-1], dims[1:]))

    def bare_bmm():
        h = xf
        for w in weights:
            h = torch.bmm(h, w)
        return h

    def ens_forward():
        with torch.no_grad():
            return model.net(xf)

    obs_f, act_f = xf[..., :obs_dim].contiguous(), xf[..., obs_dim:].contiguous()

    def predict():
        return model.predict(obs_f, act_f)

    t_bmm = _time(bare_bmm, args.repeats * 2, sync=sync)
    t_fwd = _time(ens_forward, args.repeats * 2, sync=sync)
    t_pred = _time(predict, args.repeats * 2, sync=sync)

    # ---- TS1 rollouts with the task's exact reward/termination (PETS planning load)
    task = get_task(args.task)
    menv = ModelEnv(model, task, propagation="ts1", seed=0)
    start = torch.randn(args.rows // 5, obs_dim, device=dev)
    actions = torch.rand(args.rows // 5, args.horizon, act_dim, device=dev) * 2 - 1

    def rollout():
        return menv.rollout(start, actions, particles=5)

    t_roll = _time(rollout, max(3, args.repeats // 4), warmup=1, sync=sync)
    rows = (args.rows // 5) * 5

    print(
        json.dumps(
            {
                "benchmark": "ensemble_speed",
                "train_samples_per_s": round(M * B / t_train, 1),
                "rollout_rows_steps_per_s": round(rows * args.horizon / t_roll, 1),
                "vectorised_vs_loop_ratio": round(t_loop / t_vec, 3),
                "gflops_fraction_of_bmm": round(t_bmm / t_fwd, 3),
                "predict_fraction_of_bmm": round(t_bmm / t_pred, 3),
                "ensemble_forward_gflops": round(flops / t_fwd / 1e9, 2),
                "bmm_gflops": round(flops / t_bmm / 1e9, 2),
                "train_step_ms": round(t_train * 1e3, 3),
                "members": M,
                "hidden": list(hidden),
                "task": args.task,
                "obs_dim": obs_dim,
                "act_dim": act_dim,
                "batch_per_member": B,
                "rollout_rows": rows,
                "horizon": args.horizon,
                "device": str(dev) if dev.type != "cuda" else torch.cuda.get_device_name(dev),
                "cpu": platform.processor() or platform.machine(),
                "cpu_count": os.cpu_count(),
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
