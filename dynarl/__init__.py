"""dynarl: reinforcement learning built around learned world models."""

from __future__ import annotations

from pathlib import Path

from dynarl.algos import DDPG, SAC, TD3
from dynarl.envs import make_env
from dynarl.errors import CheckpointError, ConfigError, DynarlError, EnvError, TrainingDivergedError

__version__ = "0.1.0"


def load(path: str | Path, **run_overrides):
    """Load any dynarl agent saved with ``save(path)`` or written as a run checkpoint."""
    from dynarl.algos import get_algorithm
    from dynarl.run.checkpoint import read_header

    algo = read_header(path)["algo"]
    return get_algorithm(algo).load(path, **run_overrides)


__all__ = ["SAC", "TD3", "DDPG", "load", "make_env", "DynarlError", "ConfigError", "EnvError", "CheckpointError", "TrainingDivergedError"]
