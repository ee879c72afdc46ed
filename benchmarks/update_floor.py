"""How close each learner's update is to this machine's matmul limits, and what they cap a speedup at.

For each learner it times ``update(batch)`` (median of blocks), then records every matmul the update runs, forward
and backward (``aten.mm``, ``addmm``, ``bmm``, ``baddbmm``, with shapes, strides and dtypes, through a torch
dispatch mode). From those it reports:

- ``matmul_gflop_per_update``: the update's matmul FLOPs. Any implementation of the same algorithm at the same
  network and batch sizes does at least these.
- ``floor_ms``: the same matmuls alone, each timed hot on fresh tensors of its layout: what the update would cost
  if everything else (Python, autograd, elementwise ops, Adam, sampling) were free.
- ``peak_gflop_per_s``: this core's rate on one large square matmul, and ``flops_bound_updates_per_s``, the
  updates per second if every matmul ran at that peak. No implementation at this precision on these threads can
  update faster, so ``flops_bound_updates_per_s / peer_updates_per_s`` caps any speedup over a peer library
  (``offline_speed.py --floor`` prints that ceiling beside the measured speedup).

    python benchmarks/update_floor.py [--learners dqn,sac,cql,iql] [--precision fp32|bf16] [--threads 1]

Shapes: DQN at RL Zoo's CartPole-v1 preset (obs 4, 2 actions, [256, 256], batch 64); SAC at Pendulum-v1
(obs 3, act 1, 256x256, batch 256); CQL and IQL as ``offline_speed.py`` (obs 17, act 6, their defaults, batch 256).
Prints one JSON line per learner.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import gymnasium as gym
import torch
from torch.utils._python_dispatch import TorchDispatchMode

BATCHES = {"dqn": 64, "sac": 256, "cql": 256, "iql": 256}
_MATMULS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default, torch.ops.aten.baddbmm.default}


class CountMatmulFlops(TorchDispatchMode):
    """Adds up the FLOPs of every matmul run inside it (no call list kept: for whole training runs)."""

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _MATMULS:
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            self.flops += _flops(func, [t.shape for t in tensors])
            self._seen(func, tensors, kwargs)
        return func(*args, **kwargs)

    def _seen(self, func, tensors: list[torch.Tensor], kwargs: dict) -> None:
        pass


class _RecordMatmuls(CountMatmulFlops):
    """Also notes each matmul's op, the layout of its tensor arguments and its scalar keyword arguments."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple] = []

    def _seen(self, func, tensors: list[torch.Tensor], kwargs: dict) -> None:
        self.calls.append((func, [(t.shape, t.stride(), t.dtype) for t in tensors], dict(kwargs)))


def _flops(func, shapes) -> int:
    if func in (torch.ops.aten.mm.default, torch.ops.aten.bmm.default):
        a, b = shapes
    else:  # addmm / baddbmm: (bias, a, b)
        a, b = shapes[1], shapes[2]
    batch = a[0] if len(a) == 3 else 1
    return 2 * batch * a[-2] * a[-1] * b[-1]


def _random_like_layout(shape, stride, dtype) -> torch.Tensor:
    """Random values viewed with the recorded strides (broadcast biases have stride 0)."""
    storage = 1 + sum((n - 1) * st for n, st in zip(shape, stride) if n > 0)
    return torch.randn(storage).to(dtype).as_strided(shape, stride)


def matmul_floor(calls, repeats: int = 7) -> float:
    """Seconds for the recorded matmuls alone: the sum over calls of each call's median time, repeated on fresh
    tensors of the same layout. Each call runs with its operands hot in cache, which the real update does not
    always have, so this is a lower bound on what the matmuls cost inside an update."""
    total = 0.0
    for func, layouts, kwargs in calls:
        tensors = [_random_like_layout(*layout) for layout in layouts]
        func(*tensors, **kwargs)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            func(*tensors, **kwargs)
            times.append(time.perf_counter() - start)
        total += statistics.median(times)
    return total


def update_floor(learner, batch) -> tuple[int, float, int]:
    """(matmul FLOPs, floor seconds, matmul count) of one ``learner.update(batch)``; the update is applied."""
    recorder = _RecordMatmuls()
    with recorder:
        learner.update(batch)
    return recorder.flops, matmul_floor(recorder.calls), len(recorder.calls)


def peak_gflop_per_s(dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", repeats: int = 5) -> float:
    """The best rate of ``repeats`` large square matmuls in ``dtype`` on ``device`` (these threads), for scale:
    1024 x 1024 on the CPU, 8192 x 8192 on a GPU (timed to a sync)."""
    device = torch.device(device)
    size = 8192 if device.type == "cuda" else 1024
    a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def _batch(obs_space, act_space, n: int):
    from dynarl.data.batch import Batch

    obs = torch.randn(n, *obs_space.shape)
    if isinstance(act_space, gym.spaces.Discrete):
        act = torch.randint(act_space.n, (n,))
    else:
        act = torch.rand(n, *act_space.shape) * 2 - 1
    return Batch(obs=obs, act=act, reward=torch.randn(n), next_obs=obs + 0.1 * torch.randn_like(obs), terminated=(torch.rand(n) < 0.05).float(), truncated=torch.zeros(n))


def build(name: str, precision: str):
    """The learner and a batch at the shapes named in the module docstring."""
    device = torch.device("cpu")
    if name == "dqn":
        from dynarl.learners.dqn import DQNLearner, DQNLearnerConfig

        obs_space, act_space = gym.spaces.Box(-5, 5, (4,)), gym.spaces.Discrete(2)
        learner = DQNLearner(DQNLearnerConfig(hidden_sizes=(256, 256), lr=2.3e-3, precision=precision), obs_space, act_space, device)
    elif name == "sac":
        from dynarl.learners.sac import SACLearner, SACLearnerConfig

        obs_space, act_space = gym.spaces.Box(-8, 8, (3,)), gym.spaces.Box(-1, 1, (1,))
        learner = SACLearner(SACLearnerConfig(precision=precision), obs_space, act_space, device)
    else:
        from dynarl.learners.cql import CQLLearner, CQLLearnerConfig
        from dynarl.learners.iql import IQLLearner, IQLLearnerConfig

        obs_space, act_space = gym.spaces.Box(-10, 10, (17,)), gym.spaces.Box(-1, 1, (6,))
        cfg_cls, learner_cls = (CQLLearnerConfig, CQLLearner) if name == "cql" else (IQLLearnerConfig, IQLLearner)
        learner = learner_cls(cfg_cls(precision=precision), obs_space, act_space, device)
    return learner, _batch(obs_space, act_space, BATCHES[name])


def measure(name: str, precision: str, updates: int, blocks: int) -> dict:
    torch.manual_seed(0)
    learner, batch = build(name, precision)
    for _ in range(10):
        learner.update(batch)
    block_times = []
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(updates):
            learner.update(batch)
        block_times.append((time.perf_counter() - start) / updates)
    update_s = statistics.median(block_times)
    flops, floor_s, count = update_floor(learner, batch)
    peak = peak_gflop_per_s(torch.bfloat16 if precision == "bf16" else torch.float32) * 1e9
    return {
        "learner": name,
        "precision": precision,
        "threads": torch.get_num_threads(),
        "batch": BATCHES[name],
        "matmuls_per_update": count,
        "matmul_gflop_per_update": round(flops / 1e9, 4),
        "update_ms": round(update_s * 1e3, 3),
        "floor_ms": round(floor_s * 1e3, 3),
        "updates_per_s": round(1 / update_s, 2),
        "floor_updates_per_s": round(1 / floor_s, 2),
        "matmul_share": round(floor_s / update_s, 3),
        "floor_gflop_per_s": round(flops / floor_s / 1e9, 1),
        "peak_gflop_per_s": round(peak / 1e9, 1),
        "flops_bound_updates_per_s": round(peak / flops, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--learners", default="dqn,sac,cql,iql")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--updates", type=int, default=0, help="updates per timed block (0: about 2 s per block)")
    p.add_argument("--blocks", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.learners.split(","):
        updates = args.updates or {"dqn": 1000, "sac": 200, "cql": 20, "iql": 200}[name]
        print(json.dumps(measure(name, args.precision, updates, args.blocks)), flush=True)


if __name__ == "__main__":
    main()
