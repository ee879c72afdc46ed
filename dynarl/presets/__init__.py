"""Tuned hyper-parameters per (algorithm, task), each with its source. Used when the user gives none.

Each algorithm family keeps its presets in its own module (a ``PRESETS`` dict keyed by (algo, env)).
User overrides always win over a preset; ``dynarl list`` shows every preset and its source.
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


def get_preset(algo: str, env: str) -> Preset | None:
    return all_presets().get((algo, env))


__all__ = ["MUJOCO_V5", "Preset", "all_presets", "get_preset"]
