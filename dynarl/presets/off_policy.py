"""Presets of the off-policy actor-critics (SAC, TD3, DDPG) on Pendulum-v1 and the MuJoCo v5 tasks."""

from __future__ import annotations

from dynarl.presets.common import MUJOCO_V5, Preset

_PENDULUM_RUN = {"steps": 20_000, "eval_every": 2_000, "checkpoint_every": 5_000, "log_every": 1_000}
_MUJOCO_RUN = {"steps": 1_000_000, "eval_every": 10_000, "eval_episodes": 10, "checkpoint_every": 50_000, "log_every": 5_000, "buffer_size": 1_000_000, "batch_size": 256}

PRESETS: dict[tuple[str, str], Preset] = {
    ("sac", "Pendulum-v1"): Preset(
        {**_PENDULUM_RUN, "learning_starts": 1_000, "learner.actor_lr": 1e-3, "learner.critic_lr": 1e-3, "learner.alpha_lr": 1e-3},
        "RL Baselines3 Zoo sac.yml (Pendulum-v1: lr 1e-3, 20k steps); learning_starts 1000 as in reference.md",
    ),
    ("td3", "Pendulum-v1"): Preset(
        {**_PENDULUM_RUN, "learning_starts": 1_000, "buffer_size": 200_000, "learner.gamma": 0.98, "learner.actor_lr": 1e-3, "learner.critic_lr": 1e-3, "learner.hidden_sizes": (400, 300), "learner.exploration_noise": 0.1},
        "RL Baselines3 Zoo td3.yml (Pendulum-v1: gamma 0.98, buffer 200k, lr 1e-3, [400, 300], noise 0.1); learning_starts lowered from 10k to 1k (our measurement)",
    ),
    ("ddpg", "Pendulum-v1"): Preset(
        {**_PENDULUM_RUN, "learning_starts": 1_000, "buffer_size": 200_000, "learner.gamma": 0.98, "learner.actor_lr": 1e-3, "learner.critic_lr": 1e-3, "learner.hidden_sizes": (400, 300), "learner.exploration_noise": 0.1},
        "RL Baselines3 Zoo ddpg.yml (Pendulum-v1: gamma 0.98, buffer 200k, lr 1e-3, [400, 300], noise 0.1); learning_starts lowered from 10k to 1k (our measurement)",
    ),
}
for _env in MUJOCO_V5:
    PRESETS[("sac", _env)] = Preset(
        {**_MUJOCO_RUN, "learning_starts": 10_000, "learner.actor_lr": 3e-4, "learner.critic_lr": 3e-4, "learner.alpha_lr": 3e-4, "learner.hidden_sizes": (256, 256)},
        "RL Baselines3 Zoo sac.yml for MuJoCo (learning_starts 10k, lr 3e-4, 256x256, 1M steps); Haarnoja et al. 2018",
    )
    PRESETS[("td3", _env)] = Preset(
        {**_MUJOCO_RUN, "learning_starts": 25_000, "learner.actor_lr": 3e-4, "learner.critic_lr": 3e-4, "learner.hidden_sizes": (256, 256), "learner.exploration_noise": 0.1, "learner.target_noise": 0.2, "learner.noise_clip": 0.5, "learner.policy_delay": 2},
        "Fujimoto et al. 2018, author code sfujim/TD3 (start 25k, lr 3e-4, 256x256, noise 0.1/0.2/0.5, delay 2)",
    )
    PRESETS[("ddpg", _env)] = Preset(
        {**_MUJOCO_RUN, "learning_starts": 10_000, "learner.actor_lr": 1e-3, "learner.critic_lr": 1e-3, "learner.hidden_sizes": (400, 300), "learner.exploration_noise": 0.1},
        "RL Baselines3 Zoo ddpg.yml for MuJoCo (learning_starts 10k, lr 1e-3, [400, 300], noise 0.1)",
    )

