"""Presets of the decision-time planners (PETS, POPLIN-A, POPLIN-P)."""

from __future__ import annotations

from dynarl.presets.common import Preset

PRESETS: dict[tuple[str, str], Preset] = {}
