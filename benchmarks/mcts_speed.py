"""Batched tree search speed: tree-simulations/s of ``dynarl.planning.mcts.search`` at B = 1, 16, 64 trees
against the scalar reference search (``tests/mcts_reference.py``: one tree, Python objects, one node at a
time) in the same run, with the same small MuZero-like network as ``recurrent_fn`` in both.

    python benchmarks/mcts_speed.py [--threads 1] [--device cpu|cuda] [--simulations 50] [--repeats 5]

Network: dynamics g(s, a) = MLP(4 + 2 -> 64 -> 4 latent + 1 reward), prediction f(s) = MLP(4 -> 64 -> 2
logits + 1 value), 4-dim latent, 2 actions, pUCT with root noise. A tree-simulation is one simulation in
one tree, so a batched search of B trees does B x simulations of them. ``speedup_vs_scalar_b64`` is the
batched rate at B = 64 over the scalar rate (the network call included on both sides). ``network_share``
is the share of the search's wall time spent inside ``recurrent_fn`` (timed around each call; on CUDA with
a synchronize). Both sides run under ``torch.inference_mode``; the repeats interleave the sides and each
speed-up is the median of ratios of runs taken side by side. The batched search runs with its default
backend (compiled numba kernels on the CPU, tensor ops on CUDA); on the CPU the tensor backend is timed
beside it too (``batched_tensor_backend``; ``--no-tensor`` skips it). ``--device cuda`` also runs B = 1024; the scalar
reference always runs on the CPU. Prints
one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from mcts_reference import reference_search  # noqa: E402

from dynarl.planning.mcts import RootOutput, SearchConfig, StepOutput, search  # noqa: E402

LATENT, ACTIONS, HIDDEN, GAMMA = 4, 2, 64, 0.997


class MuZeroNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.dynamics = nn.Sequential(nn.Linear(LATENT + ACTIONS, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, LATENT + 1))
        self.prediction = nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, ACTIONS + 1))

    def predict(self, state):
        out = self.prediction(state)
        return out[:, :ACTIONS], out[:, ACTIONS]

    def recurrent_fn(self, state, action):
        out = self.dynamics(torch.cat([state, nn.functional.one_hot(action, ACTIONS).to(state.dtype)], 1))
        next_state, reward = torch.tanh(out[:, :LATENT]), out[:, LATENT]
        logits, value = self.predict(next_state)
        return StepOutput(reward=reward, discount=torch.full_like(reward, GAMMA), prior_logits=logits, value=value), next_state


class Timed:
    """recurrent_fn wrapped with a clock: the share of the search spent in the network."""

    def __init__(self, fn, device):
        self.fn, self.seconds, self.cuda = fn, 0.0, device.type == "cuda"

    def __call__(self, state, action):
        if self.cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = self.fn(state, action)
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - t
        return out


def _roots(net, B, device, generator):
    state = torch.randn(B, LATENT, generator=generator).to(device)  # a fixed batch of latent roots
    logits, value = net.predict(state)
    return RootOutput(prior_logits=logits, value=value, embedding=state)


def batched_once(net, root, B, config, device, noise_gen, backend="auto"):
    timed = Timed(net.recurrent_fn, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    result = search(root, timed, config, generator=noise_gen, backend=backend)
    int(result.visit_counts.sum())  # waits for the device
    dt = time.perf_counter() - t
    return B * config.num_simulations / dt, timed.seconds / dt


def scalar_once(net, root, config):
    """The scalar reference, tree after tree (same network, batch of one per call), on the CPU."""
    trees = root.value.shape[0]
    noise = torch.full((ACTIONS,), 1.0 / ACTIONS)
    timed = Timed(net.recurrent_fn, torch.device("cpu"))
    t = time.perf_counter()
    for b in range(trees):
        reference_search(root.prior_logits[b], float(root.value[b]), root.embedding[b : b + 1], timed, config, noise=noise)
    dt = time.perf_counter() - t
    return trees * config.num_simulations / dt, timed.seconds / dt


def _cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda also runs B=1024)")
    parser.add_argument("--simulations", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", default="1,16,64", help="batch sizes B (64 is needed for speedup_vs_scalar_b64); cuda adds 1024")
    parser.add_argument("--scalar-trees", type=int, default=4, help="trees searched one by one per scalar measurement")
    parser.add_argument("--no-tensor", action="store_true", help="on the CPU, skip the tensor backend (timed beside the default compiled one)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available here")
    config = SearchConfig(num_simulations=args.simulations, rule="puct", root_exploration_fraction=0.25, dirichlet_alpha=0.25)
    torch.manual_seed(0)
    net = MuZeroNet().eval()
    net_dev = MuZeroNet().to(device).eval()
    net_dev.load_state_dict(net.state_dict())
    sizes = [int(x) for x in args.sizes.split(",")] + ([1024] if device.type == "cuda" else [])
    backends = ["auto"] + (["tensor"] if device.type == "cpu" and not args.no_tensor else [])  # auto: compiled on the CPU, tensor elsewhere
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    with torch.inference_mode():  # both sides: pure inference
        scalar_root = _roots(net, args.scalar_trees, torch.device("cpu"), torch.Generator().manual_seed(123))
        roots = {B: _roots(net_dev, B, device, torch.Generator().manual_seed(B)) for B in sizes}
        noise_gen = torch.Generator(device=device).manual_seed(0)
        scalar_once(net, scalar_root, config)  # warm-up
        for backend in backends:
            for B in sizes:
                batched_once(net_dev, roots[B], B, config, device, noise_gen, backend)
        # repeats interleave the sides, so that a change of machine load hits all; speed-ups are medians of
        # the ratios of measurements taken side by side
        scalar_runs, runs = [], {(backend, B): [] for backend in backends for B in sizes}
        for _ in range(args.repeats):
            scalar_runs.append(scalar_once(net, scalar_root, config))
            for backend, B in runs:
                runs[backend, B].append(batched_once(net_dev, roots[B], B, config, device, noise_gen, backend))
    scalar = statistics.median(r for r, _ in scalar_runs)
    scalar_share = statistics.median(s for _, s in scalar_runs)
    print(f"scalar reference (cpu): {scalar:,.0f} tree-simulations/s, network share {scalar_share:.0%}")
    batched = {backend: {} for backend in backends}
    for (backend, B), timings in runs.items():
        rate = statistics.median(r for r, _ in timings)
        share = statistics.median(s for _, s in timings)
        speedup = statistics.median(r / sr for (r, _), (sr, _) in zip(timings, scalar_runs))
        batched[backend][str(B)] = {"tree_simulations_per_s": round(rate, 1), "searches_per_s": round(rate / B / args.simulations, 2), "network_share": round(share, 3),
                                    "speedup_vs_scalar": round(speedup, 2)}
        name = {"auto": "compiled" if device.type == "cpu" else "tensor"}.get(backend, backend)
        print(f"batched {name:8s} B={B:5d} ({device.type}): {rate:,.0f} tree-simulations/s, {rate / B / args.simulations:,.1f} searches/s, network share {share:.0%}, x{speedup:.1f} vs scalar")
    tensor = batched.pop("tensor", None)
    batched = batched["auto"]
    summary = {
        "benchmark": "mcts_speed", "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "threads": torch.get_num_threads(), "load_average_1min": load, "torch": torch.__version__, "simulations": args.simulations, "actions": ACTIONS,
        "latent": LATENT, "hidden": HIDDEN, "repeats": args.repeats, "scalar_tree_simulations_per_s": round(scalar, 1), "scalar_network_share": round(scalar_share, 3),
        "backend": "compiled" if device.type == "cpu" else "tensor", "batched": batched,
        "speedup_vs_scalar_b64": batched["64"]["speedup_vs_scalar"] if "64" in batched else None,
    }
    if tensor is not None:
        summary["batched_tensor_backend"] = tensor
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
