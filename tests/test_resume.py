"""Reliability: a run killed with SIGKILL resumes exactly; same seed, same metrics; NaN stops cleanly."""

import csv
import signal
import subprocess
import sys
import time

import gymnasium as gym
import pytest
import torch
from conftest import TINY, run_cli
from safetensors.torch import load_file

import dynarl

STEPS = "2000"
TIMING = {"time/wall_seconds", "time/steps_per_second"}


def _metrics(run):
    with open(run / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def _final_tensors(run):
    last = sorted((run / "checkpoints").glob("step_*.safetensors"))[-1]
    assert last.name == f"step_{int(STEPS):09d}.safetensors"
    return load_file(last)


def _train_args(out):
    return ["train", "sac", "--env", "Pendulum-v1", "--steps", STEPS, "--seed", "7", "--out", str(out), *TINY]


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    proc = subprocess.Popen([sys.executable, "-m", "dynarl.cli", *_train_args(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    target = killed / "checkpoints" / "step_000001000.safetensors"
    deadline = time.time() + 300
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert target.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no checkpoint in time"
    time.sleep(0.3)  # let it run on past the checkpoint, mid-episode, before the kill
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "summary.json").exists()

    resumed = run_cli("resume", str(killed))
    assert resumed.returncode == 0, resumed.stderr
    straight = run_cli(*_train_args(whole))
    assert straight.returncode == 0, straight.stderr

    a, b = _final_tensors(killed), _final_tensors(whole)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # networks, optimisers, buffer, RNG states: bit-identical
    assert _metrics(killed) == _metrics(whole)


def test_a_compiled_run_resumed_from_a_checkpoint_equals_the_straight_run(tmp_path):
    """``learner.compile=true`` (each gradient one compiled graph, inductor's own random numbers): a run resumed from
    its step-400 checkpoint ends in the straight run's state, every tensor equal (networks, Adam, buffer, RNG)."""
    args = ["train", "sac", "--env", "Pendulum-v1", "--seed", "7", "learning_starts=200", "checkpoint_every=400", "eval_every=400", "eval_episodes=1",
            "batch_size=32", "learner.hidden_sizes=[32,32]", "learner.compile=true", "quiet=true"]  # fmt: skip
    for out, steps in ((tmp_path / "whole", "800"), (tmp_path / "part", "400")):
        done = run_cli(*args, "--steps", steps, "--out", str(out))
        assert done.returncode == 0, done.stderr
    resumed = run_cli("resume", str(tmp_path / "part"), "--steps", "800")
    assert resumed.returncode == 0, resumed.stderr
    a, b = (load_file(tmp_path / run / "checkpoints" / "step_000000800.safetensors") for run in ("whole", "part"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_same_seed_same_metrics_different_seed_differs(tmp_path):
    runs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        out = tmp_path / name
        proc = run_cli("train", "td3", "--steps", "1000", "--seed", str(seed), "--out", str(out), *TINY)
        assert proc.returncode == 0, proc.stderr
        runs.append(_metrics(out))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


class NaNRewardPendulum(gym.Wrapper):
    """A real Pendulum whose reward turns NaN after ``after`` steps (a broken reward signal)."""

    def __init__(self, after: int = 700):
        super().__init__(gym.make("Pendulum-v1"))
        self.after, self.t = after, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.t += 1
        return obs, (float("nan") if self.t > self.after else reward), terminated, truncated, info


gym.register("dynarl_test/NaNRewardPendulum-v0", entry_point=NaNRewardPendulum, max_episode_steps=200)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    agent = dynarl.SAC("dynarl_test/NaNRewardPendulum-v0", steps=2000, learning_starts=200, batch_size=32, eval_every=2000, eval_episodes=1, checkpoint_every=500, log_every=250, quiet=True, **{"learner.hidden_sizes": (32, 32)})
    with pytest.raises(dynarl.TrainingDivergedError, match="non-finite.*last good checkpoint is kept"):
        agent.learn(run_dir=tmp_path / "run")
    kept = sorted((tmp_path / "run" / "checkpoints").glob("step_*.safetensors"))
    assert [p.name for p in kept] == ["step_000000500.safetensors"]
    restored = dynarl.load(kept[0])
    assert restored.env_steps == 500 and restored.learner.all_finite()
