"""dynarl: reinforcement learning built around learned world models.

Every algorithm in ``dynarl list`` is importable from here by its class name (``dynarl.SAC``,
``dynarl.PETS``, ``dynarl.DQN`` ...).
"""

from __future__ import annotations

from pathlib import Path

from dynarl import algos
from dynarl._version import __version__ as __version__
from dynarl.algos import *  # noqa: F403  (the algorithm classes, listed in dynarl.algos.__all__)
from dynarl.algos.seeds import SeedVector
from dynarl.envs import make_env
from dynarl.errors import CheckpointError, ConfigError, DynarlError, EnvError, TrainingDivergedError
from dynarl.run import runner as _runner  # noqa: F401  (binds Algorithm.learn and run-folder loading to the runner)
from dynarl.run import seeds as _seeds  # noqa: F401  (binds SeedVector.learn to the seeds runner)
from dynarl.run.callbacks import Callback, StopOnRewardThreshold


def load(path: str | Path, **run_overrides):
    """Load any dynarl agent: what ``save(path)`` wrote (with or without ``.safetensors``), a checkpoint
    file, or a run folder (its newest checkpoint that verifies). ``policy_only=True`` builds only what acting
    needs (an offline agent then reads no dataset); such an agent cannot be trained."""
    from dynarl.checkpoint import read_header
    from dynarl.run.rundir import RunDir

    algo = RunDir.open(path).algo() if Path(path).is_dir() else read_header(path)["algo"]
    return algos.get_algorithm(algo).load(path, **run_overrides)


__all__ = [*algos.__all__, "load", "make_env", "SeedVector", "Callback", "StopOnRewardThreshold", "DynarlError", "ConfigError", "EnvError", "CheckpointError", "TrainingDivergedError"]
