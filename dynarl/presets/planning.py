"""Presets of the decision-time planners (PETS, POPLIN-A, POPLIN-P).

The algorithms' own defaults are the papers' sizes (7 Gaussian members of 4x200 SiLU with 5 elites,
population 500, 20 particles, horizon 25). The presets below are *CPU-sized*: smaller ensembles,
populations and horizons chosen so a run finishes in minutes on 2 CPU cores (our measurements; the
paper-sized settings are one ``key=value`` away, e.g. ``planner.population_size=500``).
"""

from __future__ import annotations

from dynarl.envs.cartpole import ENV_ID as CARTPOLE
from dynarl.presets.common import Preset

# a small ensemble trained to convergence on little data: 5 members of 3x64, batch 32, up to 100 epochs
_SMALL_MODEL = {
    "model.members": 5,
    "model.hidden_sizes": (64, 64, 64),
    "model.weight_decay": (0.0, 0.0, 0.0, 0.0),
    "trainer.num_elites": 5,
    "trainer.batch_size": 32,
    "trainer.max_epochs": 100,
}

_CARTPOLE = {
    **_SMALL_MODEL,
    "steps": 1_000,
    "eval_every": 500,
    "eval_episodes": 2,
    "checkpoint_every": 500,
    "log_every": 200,
    "planner.population_size": 200,
    "planner.particles": 5,
    "planner.horizon": 15,
    "planner.num_iterations": 3,
}
_CARTPOLE_SOURCE = "CPU-sized PETS for dynarl's continuous cart-pole (our measurement: ~200 after 2-3 trials); mbrl-lib pets_cartpole uses 7x4x200, pop 350, horizon 15, 20 particles"

_PENDULUM = {
    **_SMALL_MODEL,
    "steps": 2_000,
    "eval_every": 1_000,
    "eval_episodes": 3,
    "checkpoint_every": 1_000,
    "log_every": 200,
    "planner.population_size": 200,
    "planner.particles": 5,
    "planner.horizon": 25,
    "planner.num_iterations": 3,
}
_PENDULUM_SOURCE = "CPU-sized PETS for Pendulum-v1 (our measurement: about -200 after 5 trials, tests/test_pets.py); horizon 25 as PETS"

PRESETS: dict[tuple[str, str], Preset] = {
    ("pets", CARTPOLE): Preset(dict(_CARTPOLE), _CARTPOLE_SOURCE),
    ("pets", "Pendulum-v1"): Preset(dict(_PENDULUM), _PENDULUM_SOURCE),
}
for _algo in ("poplin_a", "poplin_p"):  # POPLIN runs PETS's loop: the same CPU-sized model and planner, not tuned apart
    PRESETS[(_algo, CARTPOLE)] = Preset(dict(_CARTPOLE), "PETS's CPU-sized cart-pole preset (model, planner, budget); BC policy 64x64 tanh as POPLIN")
    PRESETS[(_algo, "Pendulum-v1")] = Preset(dict(_PENDULUM), "PETS's CPU-sized Pendulum-v1 preset (model, planner, budget); BC policy 64x64 tanh as POPLIN")
