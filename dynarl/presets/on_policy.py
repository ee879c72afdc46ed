"""Presets of the on-policy policy-gradient family (PPO, A2C, TRPO, REINFORCE, SLBO)."""

from __future__ import annotations

from dynarl.presets.common import MUJOCO_V5, Preset

_CARTPOLE_RUN = {"eval_every": 10_000, "eval_episodes": 10, "checkpoint_every": 50_000, "log_every": 5_000}
_RUN_200K = {"steps": 200_000, "eval_every": 10_000, "eval_episodes": 10, "checkpoint_every": 50_000, "log_every": 10_000}

PRESETS: dict[tuple[str, str], Preset] = {
    ("ppo", "CartPole-v1"): Preset(
        {**_CARTPOLE_RUN, "steps": 100_000, "n_envs": 8, "n_steps": 32, "learner.batch_size": 256, "learner.gae_lambda": 0.8, "learner.gamma": 0.98, "learner.n_epochs": 20, "learner.lr": 1e-3, "learner.clip_range": 0.2, "learner.ent_coef": 0.0},
        "RL Baselines3 Zoo ppo.yml (CartPole-v1: 8 envs, n_steps 32, batch 256, lambda 0.8, gamma 0.98, 20 epochs, lr 1e-3, clip 0.2); the Zoo's linear lr/clip schedules kept constant",
    ),
    ("a2c", "CartPole-v1"): Preset(
        {**_CARTPOLE_RUN, "steps": 200_000, "n_envs": 8, "n_steps": 5, "learner.ent_coef": 0.0},
        "RL Baselines3 Zoo a2c.yml (CartPole-v1: 8 envs, ent_coef 0) on SB3's A2C defaults (n_steps 5, RMSprop lr 7e-4, lambda 1)",
    ),
    ("trpo", "CartPole-v1"): Preset(
        {**_CARTPOLE_RUN, "steps": 100_000, "n_envs": 8, "n_steps": 256},
        "Schulman et al. 2015 / SB3-contrib TRPO defaults (max_kl 0.01, 10 CG iterations, damping 0.1, 10 x 0.8 backtracking, lambda 0.95); 8 x 256 steps per update (our measurement)",
    ),
    ("reinforce", "CartPole-v1"): Preset(
        {**_CARTPOLE_RUN, "steps": 200_000, "n_envs": 4, "n_steps": 500, "learner.lr": 3e-3},
        "our measurement: 4 envs x 500 steps per update (whole episodes for Monte-Carlo returns), Adam lr 3e-3, learned baseline",
    ),
    ("ppo", "Pendulum-v1"): Preset(
        {**_RUN_200K, "n_envs": 4, "n_steps": 1024, "learner.gamma": 0.9, "learner.gae_lambda": 0.95, "learner.n_epochs": 10, "learner.lr": 1e-3, "learner.clip_range": 0.2, "learner.ent_coef": 0.0},
        "RL Baselines3 Zoo ppo.yml (Pendulum-v1: 4 envs, n_steps 1024, gamma 0.9, lambda 0.95, 10 epochs, lr 1e-3, clip 0.2) without gSDE",
    ),
    ("slbo", "Pendulum-v1"): Preset(
        {"steps": 10_000, "eval_every": 2_000, "eval_episodes": 10, "checkpoint_every": 2_000, "log_every": 1_000, "n_collect": 1_000, "n_inner": 5, "n_model": 100, "n_policy": 4, "H": 2, "model_hidden_sizes": (200, 200), "model_envs": 10, "model_horizon": 200, "learner.gamma": 0.9},
        "SLBO's code (facebookresearch/slbo: H 2, n_model 100, model batch 128, Adam 1e-3, L2 1e-5, OU noise 0.15/0.3, TRPO 2x32, max_kl 0.01) scaled down for CPU: n_inner 5 (SLBO 20), n_policy 4 (40), 2x200 model (2x500), 10 x 200 model samples per TRPO step (8 x 500); gamma 0.9 as RL Zoo's Pendulum settings (our measurement)",
    ),
    ("trpo", "Pendulum-v1"): Preset(
        {"steps": 100_000, "eval_every": 2_000, "eval_episodes": 10, "checkpoint_every": 10_000, "log_every": 2_000, "n_envs": 1, "n_steps": 1_000, "learner.gamma": 0.9, "learner.hidden_sizes": (32, 32), "learner.ent_coef": 0.005, "learner.vf_iters": 5},
        "the TRPO learner SLBO drives (SLBO's code: 2x32 policy, entropy 0.005, 5 value epochs), on the real env, one update per 1,000 real steps (SLBO's n_collect); gamma 0.9 as RL Zoo's Pendulum settings",
    ),
}
for _env in MUJOCO_V5:
    PRESETS[("ppo", _env)] = Preset(
        {**_RUN_200K, "steps": 1_000_000, "n_envs": 1, "n_steps": 2048, "normalize_obs": True, "normalize_reward": True, "learner.batch_size": 64, "learner.n_epochs": 10, "learner.lr": 3e-4, "learner.gamma": 0.99, "learner.gae_lambda": 0.95, "learner.clip_range": 0.2},
        "Schulman et al. 2017 MuJoCo settings as in RL Baselines3 Zoo ppo.yml (normalize: true; n_steps 2048, batch 64, 10 epochs, lr 3e-4, lambda 0.95, clip 0.2, 1M steps)",
    )
    PRESETS[("trpo", _env)] = Preset(
        {**_RUN_200K, "steps": 1_000_000, "n_envs": 1, "n_steps": 1024, "normalize_obs": True, "learner.gamma": 0.99, "learner.gae_lambda": 0.95},
        "Schulman et al. 2015 / SB3-contrib TRPO defaults with observation normalisation (RL Baselines3 Zoo trpo.yml: normalize true)",
    )
