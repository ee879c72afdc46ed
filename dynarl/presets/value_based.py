"""Presets of DQN and Double DQN on the small discrete tasks, from RL Baselines3 Zoo's hyperparams/dqn.yml.

RL Zoo counts ``target_update_interval`` in env steps and copies the target during collection, so with
train_freq 256 / gradient_steps 128 (CartPole) the copy happens once per training round: every 128 learner
updates here. With train_freq 4 / gradient_steps -1 (one update per env step) its 250 env steps are 250
updates. ``exploration_fraction`` x n_timesteps gives ``epsilon_decay_steps``.
"""

from __future__ import annotations

from dynarl.presets.common import Preset

_ACROBOT_LIKE = {
    "steps": 100_000, "eval_every": 10_000, "checkpoint_every": 25_000, "log_every": 2_000,
    "learner.lr": 6.3e-4, "batch_size": 128, "buffer_size": 50_000, "learning_starts": 1, "learner.gamma": 0.99,
    "learner.target_update_interval": 250, "train_freq": 4, "updates_per_step": 4,
    "epsilon_decay_steps": 12_000, "epsilon_end": 0.1, "learner.hidden_sizes": (256, 256),
}  # fmt: skip

PRESETS: dict[tuple[str, str], Preset] = {}
for _algo in ("dqn", "double_dqn"):
    PRESETS[(_algo, "CartPole-v1")] = Preset(
        {
            "steps": 50_000, "eval_every": 5_000, "checkpoint_every": 10_000, "log_every": 1_000,
            "learner.lr": 2.3e-3, "batch_size": 64, "buffer_size": 100_000, "learning_starts": 1_000, "learner.gamma": 0.99,
            "learner.target_update_interval": 128, "train_freq": 256, "updates_per_step": 128,
            "epsilon_decay_steps": 8_000, "epsilon_end": 0.04, "learner.hidden_sizes": (256, 256),
        },  # fmt: skip
        "RL Baselines3 Zoo dqn.yml (CartPole-v1: lr 2.3e-3, batch 64, buffer 100k, starts 1k, target every 10 env steps, i.e. once per round, train_freq 256, 128 gradient steps, eps -> 0.04 over 16% of 50k, [256, 256])",
    )
    for _env in ("Acrobot-v1", "LunarLander-v3"):
        PRESETS[(_algo, _env)] = Preset(
            dict(_ACROBOT_LIKE),
            f"RL Baselines3 Zoo dqn.yml ({_env}: lr 6.3e-4, batch 128, buffer 50k, starts 0 (1 here), target every 250 env steps, i.e. 250 updates, train_freq 4 with one update per step, eps -> 0.1 over 12% of 100k, [256, 256])",
        )
