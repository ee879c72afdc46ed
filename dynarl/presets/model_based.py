"""Presets of the Dyna-style family (MBPO): the original MBPO settings per task, and CPU-sized small tasks.

MBPO settings from Janner et al. 2019 and the official configs (jannerm/mbpo examples/config): epoch 1,000
env steps, model fit every 250, 100k rollouts per fit, SAC 256x256 lr 3e-4 with 20 updates per step,
5% real data, 5,000 random steps. The DynaConfig defaults already hold the shared values; each preset
adds the per-task rollout schedule, G and SAC's target entropy.
"""

from __future__ import annotations

from dynarl.presets.common import Preset

_SOURCE = "Janner et al. 2019, official configs jannerm/mbpo examples/config/{}"
_MUJOCO_RUN = {"eval_every": 1_000, "eval_episodes": 5, "checkpoint_every": 5_000, "log_every": 1_000}


def _mbpo(task_dir: str, steps: int, schedule: tuple, target_entropy: float, **extra) -> Preset:
    overrides = {**_MUJOCO_RUN, "steps": steps, "rollout_schedule": schedule, "learner.target_entropy": target_entropy, **extra}
    return Preset(overrides, _SOURCE.format(task_dir))


PRESETS: dict[tuple[str, str], Preset] = {
    ("mbpo", "Hopper-v5"): _mbpo(
        "hopper/0.py (schedule [20, 100, 1, 15] as in the paper's appendix; the released config says 150)", 125_000, (20, 100, 1, 15), -1.0
    ),
    ("mbpo", "Walker2d-v5"): _mbpo("walker2d/0.py", 300_000, (20, 150, 1, 1), -3.0),
    ("mbpo", "HalfCheetah-v5"): _mbpo("halfcheetah/0.py", 400_000, (20, 150, 1, 1), -3.0, updates_per_step=40),
    ("mbpo", "Ant-v5"): _mbpo("ant/0.py", 300_000, (20, 100, 1, 25), -4.0),
    ("mbpo", "InvertedPendulum-v5"): _mbpo(
        "inverted_pendulum/0.py",
        20_000,
        (1, 15, 1, 1),
        -0.05,
        epoch_length=250,
        updates_per_step=10,
        learning_starts=500,
        eval_every=250,
        log_every=250,
    ),
    ("mbpo", "Pendulum-v1"): Preset(
        {
            "steps": 3_000,
            "eval_every": 500,
            "eval_episodes": 5,
            "checkpoint_every": 1_000,
            "log_every": 250,
            "learning_starts": 500,
            "epoch_length": 250,
            "rollout_batch_size": 10_000,
            "rollout_schedule": (1, 10, 1, 5),
            "updates_per_step": 10,
            "learner.actor_lr": 1e-3,
            "learner.critic_lr": 1e-3,
            "learner.alpha_lr": 1e-3,
        },
        "dynarl's CPU-sized MBPO for Pendulum-v1 (no official setting): SAC lr 1e-3 as RL Zoo's Pendulum SAC; "
        "epoch 250, 10k rollouts per fit, length 1 -> 5 over epochs 1 -> 10, G 10 (our measurement)",
    ),
}
