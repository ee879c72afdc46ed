"""The speed benchmarks measure what their JSON says they measured (issue 17, item 12)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
HAVE_SB3 = importlib.util.find_spec("stable_baselines3") is not None


def _torch_default_threads(env: dict) -> int:
    proc = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], capture_output=True, text=True, env=env, check=True)
    return int(proc.stdout)


@pytest.mark.parametrize(("threads", "omp"), [(2, "1"), (0, "2")])
def test_ppo_speed_puts_the_requested_threads_in_force_on_both_sides(threads, omp):
    """``--threads 2`` used to run both sides at PPOConfig's one thread while the JSON said 2; ``--threads 0``
    means torch's default (here OMP_NUM_THREADS=2), not dynarl's PPO default of one."""
    env = {**os.environ, "OMP_NUM_THREADS": omp, "OMP_WAIT_POLICY": "PASSIVE"}  # idle threads sleep: 2 threads on busy cores cost no spinning
    expected = threads or _torch_default_threads(env)
    assert expected == 2  # OMP_NUM_THREADS=2 makes torch's default 2, so it differs from PPO's default of one
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "ppo_speed.py"), "--threads", str(threads), "--iterations", "1", "--n-steps", "8"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["threads_requested"] == threads
    assert out["dynarl_threads"] == expected
    assert out["dynarl_steps_per_s"] > 0
    # the same work per iteration on both sides: SB3's defaults, not dynarl's CartPole preset (batch 256, 20 epochs)
    assert out["dynarl_settings"]["batch_size"] == 64 and out["dynarl_settings"]["n_epochs"] == 10 and out["dynarl_settings"]["lr"] == 3e-4
    if HAVE_SB3:
        assert out["sb3_threads"] == expected
        assert out["speedup_vs_sb3"] > 0
    else:
        assert out["sb3_steps_per_s"] is None and "not importable" in out["sb3"]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pets_speed_says_when_mbrl_lib_cannot_be_measured(monkeypatch):
    """No mbrl-lib: pets_speed reports why instead of dividing by a stale constant (it used to divide by 2.3 s)."""
    pets_speed = _load("pets_speed")
    monkeypatch.setitem(sys.modules, "mbrl", None)  # as if it were not installed
    reason = pets_speed._mbrl_lib_missing()
    assert reason.startswith("not measured: mbrl-lib is not importable")
    assert all("reference_seconds_per_env_step" not in task for task in pets_speed.TASKS.values())


def test_update_floor_counts_every_matmul_of_an_update_forward_and_backward():
    """DQN at the CartPole preset (obs 4, [256, 256], 2 actions, batch 64), counted by hand: the online forward,
    the target forward (no graph), every layer's weight gradient, and the input gradients of the two upper layers
    (the observations need none): 3 x 2*64*(4*256 + 256*256 + 256*2) + 2*64*(256*256 + 256*2)."""
    update_floor = _load("update_floor")
    learner, batch = update_floor.build("dqn", "fp32")
    flops, floor_s, count = update_floor.update_floor(learner, batch)
    forward = 2 * 64 * (4 * 256 + 256 * 256 + 256 * 2)
    assert flops == 3 * forward + 2 * 64 * (256 * 256 + 256 * 2)
    assert count == 11 and floor_s > 0
    with update_floor.CountMatmulFlops() as counter:  # vector_seeds.py --floor's counter, over two updates
        learner.update(batch)
        learner.update(batch)
    assert counter.flops == 2 * flops
