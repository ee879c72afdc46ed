"""dynarl: reinforcement learning built around learned world models.

Every algorithm in ``dynarl list`` is importable from here by its class name (``dynarl.SAC``,
``dynarl.PETS``, ``dynarl.PPO`` ...); algorithm modules are imported on first use.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from dynarl.algos.registry import ALGORITHMS
from dynarl.envs import make_env
from dynarl.errors import CheckpointError, ConfigError, DynarlError, EnvError, TrainingDivergedError

__version__ = "0.1.0"

_CLASSES = {spec.split(":")[1]: spec for spec in ALGORITHMS.values()}


def __getattr__(name: str):
    if name in _CLASSES:
        module, cls = _CLASSES[name].split(":")
        return getattr(importlib.import_module(module), cls)
    raise AttributeError(f"module 'dynarl' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_CLASSES))


def load(path: str | Path, **run_overrides):
    """Load any dynarl agent: what ``save(path)`` wrote (with or without ``.safetensors``), a checkpoint
    file, or a run folder (its newest checkpoint that verifies)."""
    from dynarl.algos import get_algorithm
    from dynarl.checkpoint import read_header
    from dynarl.run.rundir import RunDir

    algo = RunDir.open(path).algo() if Path(path).is_dir() else read_header(path)["algo"]
    return get_algorithm(algo).load(path, **run_overrides)


__all__ = [*_CLASSES, "load", "make_env", "DynarlError", "ConfigError", "EnvError", "CheckpointError", "TrainingDivergedError"]
