"""Presets of the search-based algorithms (MuZero) on small discrete tasks.

muzero-general's CartPole config (werner-duvaud/muzero-general games/cartpole.py: 50 simulations, discount
0.997, Dirichlet 0.25/0.25, unroll 10, td_steps 50, support 10, lr 0.02 decayed, weight decay 1e-4, reanalysed
values) and LightZero's (opendilab/LightZero cartpole_muzero_config.py: 25 simulations, 8 collector envs, unroll 5,
td_steps 5, lr 3e-3) are the anchors; the numbers below were measured here to fit the one-core budget of the
learning test (tests/test_muzero.py): 32 envs per search call and 25 simulations keep the search cheap, gamma 0.99
keeps CartPole's values (<= 100) inside the support of 10, the network's value bootstraps the targets
(reanalyse=network, muzero-general's use_last_model_value), and value_loss_weight 1 (the paper's equation 1)
learnt faster than 0.25 (seed 1 at 8k env steps: eval 79-102 against 29). With these settings seeds 0-3 reached
10-episode evaluation means of 411.7, 500.0, 262.3 and 500.0 after the 16k env steps, in about 80 s of one core each.

TicTacToe (two-player self-play, one search for both sides): small nets with scalar heads (values in [-1, 1] need
no support), gamma 1 and td_steps 9 (a whole game: the value target is the signed outcome), 16 games and 16
simulations per search call, temperature 1 throughout. Measured here (tests/test_muzero.py): after 3k moves (702
updates, about 9 s of one core) the prior's argmax (no search) won + drew against the random opponent in 35, 27,
33, 25 of 40 games for seeds 0-3, against 25, 21, 13, 13 for the untrained networks.
"""

from __future__ import annotations

from dynarl.presets.common import Preset

PRESETS: dict[tuple[str, str], Preset] = {
    ("muzero", "CartPole-v1"): Preset(
        {
            "steps": 16_000, "eval_every": 8_000, "eval_episodes": 5, "checkpoint_every": 4_000, "log_every": 1_000,
            "n_envs": 32, "num_simulations": 25, "learning_starts": 1_000, "train_ratio": 0.25, "batch_size": 128,
            "unroll_steps": 5, "td_steps": 30, "temperature_milestones": (1_500, 3_000), "reanalyse": "network",
            "learner.gamma": 0.99, "learner.lr": 0.01, "learner.value_loss_weight": 1.0,
        },  # fmt: skip
        "measured here (tests/test_muzero.py); structure from muzero-general games/cartpole.py and LightZero cartpole_muzero_config.py: 25 simulations, unroll 5, Dirichlet 0.25/0.25, support 10, weight decay 1e-4",
    ),
    ("muzero", "dynarl/TicTacToe-v0"): Preset(
        {
            "steps": 6_000, "eval_every": 3_000, "eval_episodes": 20, "checkpoint_every": 1_500, "log_every": 500,
            "n_envs": 16, "num_simulations": 16, "learning_starts": 200, "train_ratio": 0.25, "batch_size": 64, "buffer_size": 20_000,
            "unroll_steps": 3, "td_steps": 9, "temperatures": (1.0,), "temperature_milestones": (),
            "learner.gamma": 1.0, "learner.lr": 3e-3, "learner.hidden_sizes": (64,), "learner.latent_dim": 32,
            "learner.value_support": 0, "learner.reward_support": 0, "learner.value_loss_weight": 1.0,
        },  # fmt: skip
        "measured here (tests/test_muzero.py); search settings from AlphaZero's TicTacToe defaults scaled down, gamma 1 and a whole-game td_steps as for a board game's outcome",
    ),
}
