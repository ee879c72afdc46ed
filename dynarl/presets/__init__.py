"""Tuned hyper-parameters per (algorithm, task), each with its source. Used when the user gives none.

Each algorithm family keeps its presets in its own module (a ``PRESETS`` dict keyed by (algo, env)); offline
presets also hold per-dataset-level variants (``Preset.levels``), picked by the run's dataset id. User overrides
always win over a preset; ``dynarl list`` shows every preset and its source.
"""

from __future__ import annotations

import importlib

from dynarl.presets.common import MUJOCO_V5, Preset

FAMILIES = ("off_policy", "planning", "on_policy", "model_based", "value_based", "offline", "offline_model_based", "search")


def all_presets() -> dict[tuple[str, str], Preset]:
    merged: dict[tuple[str, str], Preset] = {}
    for family in FAMILIES:
        merged.update(importlib.import_module(f"dynarl.presets.{family}").PRESETS)
    return merged


def get_preset(algo: str, env: str, dataset: str = "") -> Preset | None:
    """The preset of ``algo`` on ``env``; for an offline run, the one of its ``dataset``'s level where the task has one."""
    preset = all_presets().get((algo, env))
    return preset.for_dataset(dataset) if preset is not None and dataset else preset


__all__ = ["MUJOCO_V5", "Preset", "all_presets", "get_preset"]
